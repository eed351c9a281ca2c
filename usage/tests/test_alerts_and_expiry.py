"""
Alerts to the team at 80 %, 100 % and when credits run out, once per period, sent like every team email
(billing.emails: billing address, the outbox after commit, retried); optional credit expiry.
"""
from datetime import timedelta

import pytest
from django.core import mail
from django.db import transaction
from django.utils import timezone

from billing import emails
from usage import selectors, services, tasks
from usage.models import CreditLedgerEntry, UsageAlert
from usage.periods import period_for
from usage.tests.factories import credits_granted, usage_stored

pytestmark = pytest.mark.django_db
Reason = CreditLedgerEntry.Reason


@pytest.fixture
def committed(django_capture_on_commit_callbacks):
    """Run a call as in production: its on-commit callbacks (the emails) run when it returns."""

    def run(call, *args, **kwargs):
        with django_capture_on_commit_callbacks(execute=True):
            return call(*args, **kwargs)

    return run


def test_quota_alerts_are_sent_once_each_per_period(team_and_owner, set_plan, committed):
    team, owner = team_and_owner
    set_plan(team, "pro", included=100)
    usage_stored(team, 79, key="a")
    assert committed(tasks.usage_alerts_task) == 0 and mail.outbox == []
    usage_stored(team, 1, key="b")
    assert committed(tasks.usage_alerts_task) == 1
    assert committed(tasks.usage_alerts_task) == 0
    assert len(mail.outbox) == 1 and mail.outbox[0].to == [owner.email]
    assert "80%" in mail.outbox[0].subject and "80 of the 100" in mail.outbox[0].body
    usage_stored(team, 500, key="c")
    assert committed(tasks.usage_alerts_task) == 1
    assert committed(tasks.usage_alerts_task) == 0
    assert len(mail.outbox) == 2 and "used up" in mail.outbox[1].subject
    assert "billed per unit" in mail.outbox[1].body
    assert set(UsageAlert.objects.values_list("kind", flat=True)) == {"quota_80", "quota_100"}
    # A new period has its own alerts.
    next_period = period_for(period_for().end)
    assert committed(services.usage_alert_send, team=team, kind=UsageAlert.Kind.QUOTA_80, metric="api_call",
                     period_start=next_period.start, context={"used": 1, "included": 1, "threshold": 80})
    assert len(mail.outbox) == 3


def test_alert_email_in_the_owners_language(team_and_owner, set_plan, committed):
    team, owner = team_and_owner
    owner.language = "pt-br"
    owner.save()
    set_plan(team, "free", included=10)
    usage_stored(team, 10, key="a")
    assert committed(tasks.usage_alerts_task) == 2  # 80 % and 100 % crossed at once
    assert {m.to[0] for m in mail.outbox} == {owner.email}


def test_credits_exhausted_alert_once_per_period(team_and_owner, django_capture_on_commit_callbacks):
    team, owner = team_and_owner
    with django_capture_on_commit_callbacks(execute=True):
        services.credits_remove(team=team, amount=2, reason=Reason.USAGE, reference="c1")
    assert mail.outbox == []
    with django_capture_on_commit_callbacks(execute=True):
        services.credits_remove(team=team, amount=1, reason=Reason.USAGE, reference="c2")
    assert len(mail.outbox) == 1 and "no credits left" in mail.outbox[0].subject
    credits_granted(team, 1, reference="cs_1")
    with django_capture_on_commit_callbacks(execute=True):
        services.credits_remove(team=team, amount=1, reason=Reason.USAGE, reference="c3")
    assert len(mail.outbox) == 1
    assert UsageAlert.objects.filter(kind="credits_exhausted").count() == 1


def test_alert_email_goes_after_commit_to_the_billing_address_once(set_plan, django_capture_on_commit_callbacks):
    from accounts.tests.factories import make_team_with_owner

    team, owner = make_team_with_owner(billing_email="finance@example.com")
    set_plan(team, "pro", included=10)
    usage_stored(team, 8, key="a")
    with django_capture_on_commit_callbacks(execute=False) as callbacks:
        assert len(services.usage_alerts_check(team=team)) == 1
    assert mail.outbox == []  # nothing leaves before the transaction commits
    assert len(callbacks) == 1
    callbacks[0]()
    assert len(mail.outbox) == 1
    assert mail.outbox[0].to == ["finance@example.com"]  # billing's rule, not the owner's address
    assert mail.outbox[0].subject == f"{team.name}: 80% of this month's included API calls used"
    assert "8 of the 10 API calls" in mail.outbox[0].body
    assert UsageAlert.objects.get(team=team).sent_to == "finance@example.com"


def test_no_alert_email_when_the_transaction_rolls_back(team_and_owner, set_plan, committed):
    team, owner = team_and_owner
    set_plan(team, "pro", included=10)
    usage_stored(team, 8, key="a")

    def check_then_fail():
        with transaction.atomic():
            assert len(services.usage_alerts_check(team=team)) == 1
            raise RuntimeError("the caller's transaction fails after the alert")

    with pytest.raises(RuntimeError):
        committed(check_then_fail)
    assert mail.outbox == [] and not UsageAlert.objects.exists()
    # Nothing was recorded, so the next run sends it.
    assert len(committed(services.usage_alerts_check, team=team)) == 1
    assert len(mail.outbox) == 1


def test_failed_email_is_retried_later(team_and_owner, set_plan, monkeypatch, committed, settings):
    from django.core.mail.backends import locmem

    settings.BILLING_EMAIL_RETRY_BASE_SECONDS = 0  # the retry is due at once

    team, owner = team_and_owner
    set_plan(team, "pro", included=10)
    usage_stored(team, 8, key="a")
    attempts = []
    real_send = locmem.EmailBackend.send_messages

    def smtp_down_once(backend, messages):
        attempts.append(messages[0].to)
        if len(attempts) == 1:
            raise OSError("SMTP down")
        return real_send(backend, messages)

    monkeypatch.setattr(locmem.EmailBackend, "send_messages", smtp_down_once)
    assert len(committed(services.usage_alerts_check, team=team)) == 1
    assert attempts == [[owner.email]] and mail.outbox == []
    # The outbox row waits for its retry time; the email sweep sends it then: two attempts, one email, one alert.
    assert committed(emails.outbound_emails_enqueue_due) == 1
    assert attempts == [[owner.email], [owner.email]]
    assert len(mail.outbox) == 1 and "80%" in mail.outbox[0].subject
    assert UsageAlert.objects.count() == 1
    assert committed(services.usage_alerts_check, team=team) == []


def test_credit_expiry_is_off_by_default_and_expires_only_old_unspent_purchases(team_and_owner, settings):
    team, owner = team_and_owner
    old = credits_granted(team, 10, reference="cs_old")
    CreditLedgerEntry.objects.filter(pk=old.pk).update(created=timezone.now() - timedelta(days=400))
    credits_granted(team, 5, reference="cs_new")
    services.credits_remove(team=team, amount=4, reason=Reason.USAGE, reference="u1")
    assert services.credits_expire(team=team) is None  # USAGE_CREDIT_EXPIRY_DAYS unset
    settings.USAGE_CREDIT_EXPIRY_DAYS = 365
    # Oldest first: the 4 spent came out of the old purchase (the signup grant is newer here), 6 of it remain.
    entry = services.credits_expire(team=team)
    assert entry.delta == -6 and entry.reason == Reason.EXPIRY
    assert selectors.credits_balance(team=team) == 3 + 5 + 10 - 4 - 6
    # Nothing old is left unspent: a second run (or the daily task) expires nothing more.
    assert services.credits_expire(team=team) is None
    assert tasks.usage_credits_expire_task() == 0
    assert selectors.credits_balance(team=team) == 8
