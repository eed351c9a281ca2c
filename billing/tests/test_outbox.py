"""
The email outbox (billing.emails, issue 11): every email is an OutboundEmail row written with the work that wants it.
A request that sends an email answers as usual while the broker is down (the row waits, pending) and the sweep sends
it once the broker is back, exactly once; a send task run twice sends once; SMTP failures are retried with backoff
and parked, and staff re-send parked rows (permission-checked, audited); sent rows are pruned after the retention.
"""
import smtplib
from datetime import timedelta

import pytest
from django.core import mail
from django.core.mail.backends import locmem
from django.db import transaction
from django.utils import timezone

from accounts.tests.factories import make_team_with_owner
from billing import emails
from billing.backoffice.audit import StaffContext
from billing.backoffice.support import outbound_emails_resend
from billing.models import AuditEntry, OutboundEmail
from billing.tasks import outbound_email_send_task, send_staff_email_task, send_team_email_task
from billing_site import celery as celery_module
from billing_site.errors import PermissionDeniedError

from billing.tests.backoffice_fixtures import *  # noqa: F401,F403
from billing.tests.factories import StaffUserFactory

Status = OutboundEmail.Status
CONTEXT = {"amount": "$9.00", "hosted_invoice_url": ""}


class Broker:
    """The broker as the web process sees it: `down()` makes sending the email task fail as Redis does when gone."""

    def __init__(self):
        self.patch = pytest.MonkeyPatch()
        self.refused = 0

    def down(self) -> None:
        def refuse(*args, **kwargs):
            self.refused += 1
            raise ConnectionRefusedError("[Errno 111] Connection refused")

        self.patch.setattr(outbound_email_send_task, "apply_async", refuse)

    def up(self) -> None:
        self.patch.undo()
        celery_module._broker_down_until = 0.0  # task_send's short "marked down" window after a failure


@pytest.fixture
def broker():
    celery_module._broker_down_until = 0.0
    controller = Broker()
    yield controller
    controller.up()


class Smtp:
    """The mail server: `down()` makes every send raise as smtplib does when the server drops the connection."""

    def __init__(self, monkeypatch):
        self.monkeypatch = monkeypatch
        self.tries = 0

    def down(self) -> None:
        def refuse(backend, messages):
            self.tries += 1
            raise smtplib.SMTPServerDisconnected("Connection unexpectedly closed")

        self.monkeypatch.setattr(locmem.EmailBackend, "send_messages", refuse)

    def up(self) -> None:
        self.monkeypatch.undo()


@pytest.fixture
def smtp(monkeypatch, settings):
    settings.EMAIL_BACKEND = "django.core.mail.backends.locmem.EmailBackend"
    return Smtp(monkeypatch)


def queued(callbacks_fixture, call, **kwargs):
    """Run `call` as production does: its on-commit callbacks (the send task) run when it returns."""
    with callbacks_fixture(execute=True):
        return call(**kwargs)


def make_due(row_id: int) -> None:
    """Time passes: the row's retry time (or lease end) is now."""
    OutboundEmail.objects.filter(pk=row_id).update(next_attempt_at=timezone.now() - timedelta(seconds=1))


@pytest.mark.django_db
def test_a_request_that_emails_answers_while_the_broker_is_down_and_the_sweep_sends_it_once_after(
        past_due_team, support_user, bo_stripe, broker, client, settings, django_capture_on_commit_callbacks):
    team, sub, _invoice, _sdk = past_due_team
    client.force_login(support_user)
    broker.down()
    with django_capture_on_commit_callbacks(execute=True):
        answer = client.post(f"/admin/billing/dunningsubscription/{sub.id}/do/email/",
                             {"action_token": "tok-outage"})
    # The staff action committed (portal link made, audited) and answers as usual: no 500 from the dead broker.
    assert answer.status_code == 302, answer.content[:500]
    assert AuditEntry.objects.filter(action="dunning.payment_update_email", team=team).count() == 1
    (row,) = OutboundEmail.objects.all()
    assert (row.status, row.attempts, row.template, row.team_id) == (Status.PENDING, 0, "payment_update_request",
                                                                     team.pk)
    assert row.recipients == [team.billing_email]
    assert broker.refused == 1 and mail.outbox == []

    # Within the grace the sweep leaves it to its own message; the broker still down, it tries and stops.
    assert emails.outbound_emails_enqueue_due() == 0
    settings.BILLING_EMAIL_PENDING_GRACE_SECONDS = 0
    assert emails.outbound_emails_enqueue_due() == 0 and broker.refused == 2

    broker.up()
    assert emails.outbound_emails_enqueue_due() == 1
    row.refresh_from_db()
    assert (row.status, row.attempts) == (Status.SENT, 1) and row.sent_at is not None
    assert len(mail.outbox) == 1 and mail.outbox[0].to == [team.billing_email]
    assert "/billing/" in mail.outbox[0].body
    # Later sweeps, and a late copy of the task, send nothing more.
    assert emails.outbound_emails_enqueue_due() == 0
    assert outbound_email_send_task.apply(args=(row.pk,)).get() == Status.SENT
    assert len(mail.outbox) == 1


@pytest.mark.django_db
def test_the_send_task_run_twice_sends_once_and_a_leased_row_is_left_to_its_sender(
        smtp, django_capture_on_commit_callbacks):
    team, _owner = make_team_with_owner(billing_email="ap@example.com")
    with django_capture_on_commit_callbacks(execute=False) as callbacks:
        emails.send_team_email(team=team, template="payment_failed", context=CONTEXT)
    assert len(callbacks) == 1 and mail.outbox == []
    (row,) = OutboundEmail.objects.all()

    # Another run holds the lease (it is sending right now): this copy does nothing.
    OutboundEmail.objects.filter(pk=row.pk).update(status=Status.SENDING, attempts=1,
                                                   next_attempt_at=timezone.now() + timedelta(seconds=60))
    assert outbound_email_send_task.apply(args=(row.pk,)).get() == Status.SENDING
    assert mail.outbox == []
    # That worker died: once the lease ends the sweep takes the row over.
    make_due(row.pk)
    assert emails.outbound_emails_enqueue_due() == 1
    assert outbound_email_send_task.apply(args=(row.pk,)).get() == Status.SENT  # a second copy
    row.refresh_from_db()
    assert (row.status, row.attempts) == (Status.SENT, 2)
    assert len(mail.outbox) == 1 and mail.outbox[0].subject == "Your payment of $9.00 failed"
    # Every attempt of one row carries the same Message-ID (a resent copy is recognisably the same email).
    assert mail.outbox[0].extra_headers["Message-ID"] == emails.outbound_email_message_id(row)


@pytest.mark.django_db
def test_smtp_failures_retry_with_backoff_then_park_and_staff_resend_is_permission_checked_and_audited(
        smtp, settings, support_user, django_capture_on_commit_callbacks):
    settings.BILLING_EMAIL_MAX_ATTEMPTS = 3
    settings.BILLING_EMAIL_RETRY_BASE_SECONDS = 30
    team, _owner = make_team_with_owner(billing_email="ap@example.com")
    smtp.down()
    before = timezone.now()
    queued(django_capture_on_commit_callbacks, emails.send_team_email, team=team, template="payment_failed",
           context=CONTEXT)
    row = OutboundEmail.objects.get()
    assert (row.status, row.attempts) == (Status.FAILED, 1) and "SMTPServerDisconnected" in row.last_error
    assert before + timedelta(seconds=29) < row.next_attempt_at < timezone.now() + timedelta(seconds=31)
    assert emails.outbound_emails_enqueue_due() == 0  # not due yet

    make_due(row.pk)
    assert emails.outbound_emails_enqueue_due() == 1
    row.refresh_from_db()
    assert (row.status, row.attempts) == (Status.FAILED, 2)
    assert timezone.now() + timedelta(seconds=59) < row.next_attempt_at < timezone.now() + timedelta(seconds=61)

    make_due(row.pk)
    assert emails.outbound_emails_enqueue_due() == 1
    row.refresh_from_db()
    assert (row.status, row.attempts, row.next_attempt_at) == (Status.PARKED, 3, None)
    assert smtp.tries == 3 and mail.outbox == []
    assert emails.outbound_emails_enqueue_due() == 0  # parked rows wait for a person

    # Staff see it in the outbox admin with its error.
    from django.test import Client

    browser = Client()
    browser.force_login(support_user)
    page = browser.get("/admin/billing/outboundemail/?status=parked")
    assert page.status_code == 200 and b"payment_failed" in page.content and b"SMTPServerDisconnected" in page.content
    assert browser.get(f"/admin/billing/outboundemail/{row.pk}/change/").status_code == 200
    home = browser.get("/admin/").content.decode()
    assert 'id="parked-emails"' in home and f"/admin/billing/outboundemail/{row.pk}/change/" in home

    # Without the permission: refused and audited; the row stays parked.
    viewer = StaffUserFactory()
    with pytest.raises(PermissionDeniedError):
        outbound_emails_resend(staff=StaffContext(user=viewer), email_ids=[row.pk])
    assert AuditEntry.objects.filter(action="permission.denied", actor=viewer).count() == 1

    smtp.up()
    with django_capture_on_commit_callbacks(execute=True):
        answer = browser.post("/admin/billing/outboundemail/", {
            "action": "resend_selected", "_selected_action": [str(row.pk)]})
    assert answer.status_code == 302
    row.refresh_from_db()
    assert (row.status, row.attempts) == (Status.SENT, 1) and len(mail.outbox) == 1
    entry = AuditEntry.objects.get(action="email.resent")
    assert entry.actor == support_user and entry.team == team and entry.target_id == str(row.pk)
    assert entry.before["status"] == "parked" and entry.after == {"result": "re-sent"}
    # A sent row is never sent again, whoever asks.
    assert outbound_emails_resend(staff=StaffContext(user=support_user), email_ids=[row.pk]) == {
        row.pk: "left alone (sent)"}
    assert len(mail.outbox) == 1


@pytest.mark.django_db
def test_nothing_is_written_or_sent_when_the_callers_transaction_rolls_back(smtp, django_capture_on_commit_callbacks):
    team, _owner = make_team_with_owner()
    with django_capture_on_commit_callbacks(execute=True) as callbacks:
        with pytest.raises(RuntimeError), transaction.atomic():
            emails.send_staff_email(subject="Dispute opened", body="dp_1")
            raise RuntimeError("rolled back")
    assert callbacks == [] and not OutboundEmail.objects.exists() and mail.outbox == []


@pytest.mark.django_db
def test_staff_email_goes_to_the_staff_addresses(smtp, settings, django_capture_on_commit_callbacks):
    settings.BILLING_STAFF_EMAILS = ["finance@example.com", "ops@example.com"]
    queued(django_capture_on_commit_callbacks, emails.send_staff_email, subject="Dispute opened: dp_1",
           body="Dispute dp_1 on charge ch_1\n")
    row = OutboundEmail.objects.get()
    assert (row.kind, row.team_id, row.status) == (OutboundEmail.Kind.STAFF, None, Status.SENT)
    assert [(m.subject, m.to) for m in mail.outbox] == [("Dispute opened: dp_1",
                                                         ["finance@example.com", "ops@example.com"])]


@pytest.mark.django_db
def test_a_receipt_is_queued_once_per_payment_whoever_asks(django_capture_on_commit_callbacks):
    from billing import receipts  # noqa: F401  (registers the receipt builders and their dedupe keys)

    team, _owner = make_team_with_owner()
    with django_capture_on_commit_callbacks(execute=False) as callbacks:
        # Checkout's completion and the payment intent's success both name the credit pack's payment.
        receipts.receipt_email_queue(team=team, payment_intent_id="pi_once")
        receipts.receipt_email_queue(team=team, payment_intent_id="pi_once")
        receipts.receipt_email_queue(team=team, payment_intent_id="pi_other")
        receipts.refund_receipt_email_queue(team=team, charge_id="ch_1", refund_ids=["re_2", "re_1"], refunded_now=5)
        receipts.refund_receipt_email_queue(team=team, charge_id="ch_1", refund_ids=["re_1", "re_2"], refunded_now=5)
        # A caller's own key works for any template.
        emails.send_team_email(team=team, template="payment_failed", context=CONTEXT, dedupe_key="notice:1")
        emails.send_team_email(team=team, template="payment_failed", context=CONTEXT, dedupe_key="notice:1")
    assert sorted(OutboundEmail.objects.values_list("dedupe_key", flat=True)) == [
        "notice:1", "receipt:pi_once", "receipt:pi_other", "refund_receipt:re_1,re_2"]
    assert len(callbacks) == 4


@pytest.mark.django_db
def test_a_receipt_whose_payment_cannot_be_found_is_retried_not_dropped(
        smtp, settings, bo_stripe, django_capture_on_commit_callbacks):
    from billing import receipts

    team, _owner = make_team_with_owner()
    queued(django_capture_on_commit_callbacks, receipts.refund_receipt_email_queue, team=team, charge_id="ch_missing",
           refund_ids=[], refunded_now=100)
    row = OutboundEmail.objects.get()
    assert row.status == Status.FAILED and row.next_attempt_at is not None and mail.outbox == []
    assert row.last_error.strip()


@pytest.mark.django_db
def test_context_is_bounded_and_json(settings):
    team, _owner = make_team_with_owner()
    settings.BILLING_EMAIL_CONTEXT_MAX_BYTES = 100
    with pytest.raises(ValueError, match="BILLING_EMAIL_CONTEXT_MAX_BYTES"):
        emails.send_team_email(team=team, template="payment_failed", context={"blob": "x" * 200})
    with pytest.raises(TypeError):
        emails.send_team_email(team=team, template="payment_failed", context={"when": timezone.now()})
    assert not OutboundEmail.objects.exists()


@pytest.mark.django_db
def test_messages_queued_by_the_previous_release_are_sent_through_the_outbox(smtp):
    team, _owner = make_team_with_owner(billing_email="ap@example.com")
    with pytest.MonkeyPatch.context() as patch:
        # The row's own send goes through on_commit: outside a test transaction it would run at once.
        patch.setattr(transaction, "on_commit", lambda func, using=None, robust=False: func())
        send_team_email_task.apply(args=(team.pk, "payment_failed", CONTEXT)).get()
        send_staff_email_task.apply(args=("Dispute opened", "dp_1")).get()
    assert sorted(OutboundEmail.objects.values_list("kind", "status")) == [("staff", "sent"), ("team", "sent")]
    assert len(mail.outbox) == 2


@pytest.mark.django_db
def test_retention_deletes_old_sent_rows_only(settings):
    settings.BILLING_EMAIL_RETENTION_DAYS = 30
    team, _owner = make_team_with_owner()
    old = timezone.now() - timedelta(days=31)
    rows = {status: OutboundEmail.objects.create(team=team, template="payment_failed", status=status, created_at=old)
            for status in (Status.SENT, Status.PARKED, Status.FAILED, Status.PENDING)}
    recent = OutboundEmail.objects.create(team=team, template="payment_failed", status=Status.SENT)
    assert emails.outbound_emails_prune() == 1
    assert not OutboundEmail.objects.filter(pk=rows[Status.SENT].pk).exists()
    assert OutboundEmail.objects.count() == 4 and OutboundEmail.objects.filter(pk=recent.pk).exists()


def test_the_sweep_and_the_retention_are_periodic_jobs(settings):
    # Beat sends them in production; `run_scheduler` (make run, no broker) runs the same table in-process.
    jobs = {entry["task"]: entry for entry in settings.CELERY_BEAT_SCHEDULE.values()}
    assert jobs["billing.tasks.outbound_emails_send_due_task"]["schedule"] == settings.BILLING_EMAIL_SWEEP_SECONDS
    assert "billing.tasks.outbound_emails_prune_task" in jobs


@pytest.mark.django_db
def test_metrics_export_the_outbox_backlog(settings):
    from billing_site.health import BACKLOG, _backlog_update

    team, _owner = make_team_with_owner()
    for status, count in ((Status.PENDING, 2), (Status.SENDING, 1), (Status.FAILED, 1), (Status.PARKED, 3),
                          (Status.SENT, 4)):
        for _ in range(count):
            OutboundEmail.objects.create(team=team, template="payment_failed", status=status)
    _backlog_update()
    values = {kind: BACKLOG.labels(kind=kind)._value.get() for kind in ("emails_pending", "emails_failed",
                                                                        "emails_parked")}
    assert values == {"emails_pending": 3, "emails_failed": 1, "emails_parked": 3}


@pytest.mark.postgres
@pytest.mark.django_db(transaction=True)
def test_two_workers_sending_one_row_at_once_send_it_once(smtp, monkeypatch):
    import threading
    import time
    from concurrent.futures import ThreadPoolExecutor

    from django.db import connection

    team, _owner = make_team_with_owner(billing_email="ap@example.com")
    row = OutboundEmail.objects.create(team=team, template="payment_failed", context=CONTEXT,
                                       recipients=["ap@example.com"])
    real_send = locmem.EmailBackend.send_messages

    def slow_smtp(backend, messages):
        time.sleep(0.3)  # the second worker arrives while the first is talking to the mail server
        return real_send(backend, messages)

    monkeypatch.setattr(locmem.EmailBackend, "send_messages", slow_smtp)
    barrier = threading.Barrier(2)

    def worker(_):
        barrier.wait()
        try:
            return emails.outbound_email_send(outbound_email_id=row.pk)
        finally:
            connection.close()

    with ThreadPoolExecutor(2) as pool:
        results = sorted(pool.map(worker, range(2)))
    assert results == [Status.SENDING, Status.SENT]  # the loser found the row leased and left it
    row.refresh_from_db()
    assert (row.status, row.attempts) == (Status.SENT, 1) and len(mail.outbox) == 1


@pytest.mark.django_db
def test_a_send_whose_worker_keeps_dying_is_parked_after_the_last_attempt(smtp, settings):
    settings.BILLING_EMAIL_MAX_ATTEMPTS = 2
    team, _owner = make_team_with_owner()
    row = OutboundEmail.objects.create(team=team, template="payment_failed", context=CONTEXT, status=Status.SENDING,
                                       attempts=2, next_attempt_at=timezone.now() - timedelta(seconds=1))
    assert emails.outbound_emails_enqueue_due() == 1
    row.refresh_from_db()
    assert (row.status, row.attempts, row.next_attempt_at) == (Status.PARKED, 2, None)
    assert "did not finish within its lease" in row.last_error and mail.outbox == []
