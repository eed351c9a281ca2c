"""Refund workflow (DESIGN invariant 2) against the emulator over real HTTP."""
import threading

import pytest
from django.core import mail
from django.db import connection

from billing.backoffice import refunds as services
from billing.backoffice.audit import StaffContext
from billing.models import AuditEntry, RefundRequest
from billing.webhooks.registry import handlers_for
from billing_site.errors import PermissionDeniedError

from .backoffice_fixtures import *  # noqa: F401,F403
from .backoffice_fixtures import emulator_refunds, make_payment, refund_posts

pytestmark = pytest.mark.django_db(transaction=True)
Status = RefundRequest.Status


def staff(user):
    return StaffContext(user=user, request_id="req-test", ip_address="127.0.0.1")


def test_below_threshold_by_finance_is_approved_and_refunded_at_once(paying_team, finance_user, bo_stripe):
    team, _owner, charge = paying_team
    rr = services.refund_request_create(staff=staff(finance_user), charge_id=charge.id, amount_minor=2500,
                                        currency="usd", reason="requested_by_customer", note="customer asked")
    rr.refresh_from_db()
    assert rr.status == Status.SUCCEEDED
    assert rr.approved_by == finance_user
    assert rr.stripe_refund_id.startswith("re_")
    assert rr.execution_started_at and rr.execution_finished_at
    refunds = emulator_refunds(bo_stripe, charge.id)
    assert [r["amount"] for r in refunds] == [2500]
    assert refunds[0]["metadata"]["refund_request_id"] == str(rr.pk)
    assert refund_posts(bo_stripe) == 1
    actions = list(AuditEntry.objects.filter(target_type="refund_request", target_id=str(rr.pk))
                   .order_by("id").values_list("action", flat=True))
    assert actions == ["refund.requested", "refund.approved", "refund.sent", "refund.succeeded"]
    # The customer's email comes from the billing core's charge.refunded handler (one email per refund, also for
    # refunds made elsewhere); ours on the same event only moves requests, so the customer gets exactly one.
    assert mail.outbox == []
    event = next(e for e in bo_stripe.store.all("event") if e["type"] == "charge.refunded")
    for handler in handlers_for("charge.refunded"):
        handler(event=event)
    assert len(mail.outbox) == 1 and mail.outbox[0].to == [team.billing_email]
    assert "$25.00" in mail.outbox[0].subject + mail.outbox[0].body


def test_support_request_waits_then_finance_approves(paying_team, support_user, finance_user, bo_stripe):
    _team, _owner, charge = paying_team
    rr = services.refund_request_create(staff=staff(support_user), charge_id=charge.id, amount_minor=9900,
                                        currency="usd", reason="duplicate")
    assert rr.status == Status.REQUESTED
    assert refund_posts(bo_stripe) == 0
    services.refund_request_approve(staff=staff(finance_user), refund_request_id=rr.pk)
    rr.refresh_from_db()
    assert rr.status == Status.SUCCEEDED and rr.approved_by == finance_user
    assert [r["amount"] for r in emulator_refunds(bo_stripe, charge.id)] == [9900]


def test_above_threshold_needs_a_second_person(bo_stripe, finance_user, finance_user2, settings):
    from accounts.tests.factories import make_team_with_owner

    from .backoffice_fixtures import make_customer

    settings.REFUND_APPROVAL_THRESHOLD = 5000
    team, _ = make_team_with_owner()
    charge = make_payment(make_customer(team).id, amount_minor=20000)
    rr = services.refund_request_create(staff=staff(finance_user), charge_id=charge.id, amount_minor=6000,
                                        currency="usd", reason="requested_by_customer")
    assert rr.status == Status.REQUESTED  # above the threshold: not approved at once, even by Finance
    with pytest.raises(PermissionDeniedError) as denied:
        services.refund_request_approve(staff=staff(finance_user), refund_request_id=rr.pk)
    assert denied.value.code == "four_eyes"
    assert AuditEntry.objects.filter(action="permission.denied", target_id=str(rr.pk), actor=finance_user).exists()
    assert refund_posts(bo_stripe) == 0
    services.refund_request_approve(staff=staff(finance_user2), refund_request_id=rr.pk)
    rr.refresh_from_db()
    assert rr.status == Status.SUCCEEDED and rr.approved_by == finance_user2
    assert refund_posts(bo_stripe) == 1


def test_support_cannot_approve_and_the_attempt_is_audited(paying_team, support_user, finance_user):
    _team, _owner, charge = paying_team
    rr = services.refund_request_create(staff=staff(finance_user), charge_id=charge.id, amount_minor=60000 // 10,
                                        currency="usd", reason="duplicate")
    RefundRequest.objects.filter(pk=rr.pk).update(status=Status.REQUESTED)  # as if above the threshold
    with pytest.raises(PermissionDeniedError):
        services.refund_request_approve(staff=staff(support_user), refund_request_id=rr.pk)
    entry = AuditEntry.objects.filter(actor=support_user).latest("id")
    assert entry.action == "permission.denied" and entry.after["permission"] == "billing.approve_refund"


@pytest.mark.parametrize(
    ("amount", "currency", "code"),
    [(0, "usd", "amount_not_positive"), (-100, "usd", "amount_not_positive"),
     (9901, "usd", "amount_above_refundable"), (1000, "brl", "currency_mismatch")],
)
def test_bad_amounts_are_refused_before_stripe(paying_team, finance_user, bo_stripe, amount, currency, code):
    _team, _owner, charge = paying_team
    with pytest.raises(services.RefundInputError) as error:
        services.refund_request_create(staff=staff(finance_user), charge_id=charge.id, amount_minor=amount,
                                       currency=currency, reason="requested_by_customer")
    assert error.value.code == code
    assert RefundRequest.objects.count() == 0
    assert refund_posts(bo_stripe) == 0


def test_disputed_and_failed_charges_are_refused(paying_team, finance_user, bo_stripe):
    team, _owner, charge = paying_team
    disputed = make_payment(charge.customer_id, payment_method="pm_card_createDispute")
    with pytest.raises(services.RefundInputError) as error:
        services.refund_request_create(staff=staff(finance_user), charge_id=disputed.id, amount_minor=100,
                                       currency="usd", reason="fraudulent")
    assert error.value.code == "charge_disputed"
    failed = bo_stripe.store.all("charge")
    failed_charge = next((c for c in failed if c["status"] == "failed"), None)
    if failed_charge is None:  # make one: a declined card leaves a failed charge behind
        from billing_site.errors import BillingError

        with pytest.raises(BillingError):
            make_payment(charge.customer_id, payment_method="pm_card_chargeDeclined")
        failed_charge = next(c for c in bo_stripe.store.all("charge") if c["status"] == "failed")
    with pytest.raises(services.RefundInputError) as error:
        services.refund_request_create(staff=staff(finance_user), charge_id=failed_charge["id"], amount_minor=100,
                                       currency="usd", reason="requested_by_customer")
    assert error.value.code == "charge_not_refundable"
    assert refund_posts(bo_stripe) == 0


def test_partial_refunds_never_exceed_the_charge(paying_team, finance_user, bo_stripe):
    _team, _owner, charge = paying_team
    services.refund_request_create(staff=staff(finance_user), charge_id=charge.id, amount_minor=5000, currency="usd",
                                   reason="requested_by_customer")
    facts = services.charge_refund_facts(charge=services.charge_for_refund(charge_id=charge.id))
    assert facts.refundable_minor == 4900
    with pytest.raises(services.RefundInputError):
        services.refund_request_create(staff=staff(finance_user), charge_id=charge.id, amount_minor=4901,
                                       currency="usd", reason="requested_by_customer")
    services.refund_request_create(staff=staff(finance_user), charge_id=charge.id, amount_minor=4900, currency="usd",
                                   reason="requested_by_customer")
    assert sum(r["amount"] for r in emulator_refunds(bo_stripe, charge.id)) == 9900


def test_stripe_failure_leaves_the_request_failed_and_retryable(paying_team, support_user, finance_user, bo_stripe,
                                                                 monkeypatch):
    _team, _owner, charge = paying_team
    rr = services.refund_request_create(staff=staff(support_user), charge_id=charge.id, amount_minor=3000,
                                        currency="usd", reason="requested_by_customer")
    # Every POST /v1/refunds answers 500 (past the SDK's own network retries and the task's retries).
    bo_stripe.control("POST", "/_emulator/faults", {"path_prefix": "/v1/refunds", "method": "POST",
                                                    "status": "500", "count": "-1"})
    monkeypatch.setattr("billing.backoffice.tasks.REFUND_MAX_RETRIES", 0)
    services.refund_request_approve(staff=staff(finance_user), refund_request_id=rr.pk)
    rr.refresh_from_db()
    assert rr.status == Status.FAILED
    assert rr.last_error_code == "stripe_unavailable" and rr.last_error
    assert emulator_refunds(bo_stripe, charge.id) == []
    bo_stripe.control("DELETE", "/_emulator/faults")
    services.refund_request_retry(staff=staff(finance_user), refund_request_id=rr.pk)
    rr.refresh_from_db()
    assert rr.status == Status.SUCCEEDED and rr.attempts == 2
    assert [r["amount"] for r in emulator_refunds(bo_stripe, charge.id)] == [3000]


def test_resuming_a_started_request_never_refunds_twice(paying_team, finance_user, bo_stripe):
    """A worker died after Stripe refunded but before DONE: running the task again adopts the refund."""
    _team, _owner, charge = paying_team
    rr = services.refund_request_create(staff=staff(finance_user), charge_id=charge.id, amount_minor=1000,
                                        currency="usd", reason="requested_by_customer")
    rr.refresh_from_db()
    # Forget the answer, as if the DONE transaction never committed.
    RefundRequest.objects.filter(pk=rr.pk).update(status=Status.PROCESSING, stripe_refund_id=None,
                                                  stripe_refund_status="", execution_finished_at=None)
    services.refund_request_execute(refund_request_id=rr.pk)
    services.refund_request_execute(refund_request_id=rr.pk)
    rr.refresh_from_db()
    assert rr.status == Status.SUCCEEDED
    assert len(emulator_refunds(bo_stripe, charge.id)) == 1


def test_webhook_moves_processing_to_succeeded(paying_team, finance_user, bo_stripe, monkeypatch):
    _team, _owner, charge = paying_team
    # Stop after STARTED+DONE with a refund Stripe still reports as pending: only the webhook may finish it.
    real_create = services.refund_gateway.refund_create

    def pending_create(**kwargs):
        refund = real_create(**kwargs)
        return {**refund, "status": "pending"}

    monkeypatch.setattr(services.refund_gateway, "refund_create", pending_create)
    rr = services.refund_request_create(staff=staff(finance_user), charge_id=charge.id, amount_minor=1500,
                                        currency="usd", reason="requested_by_customer")
    rr.refresh_from_db()
    assert rr.status == Status.PROCESSING and rr.stripe_refund_status == "pending"
    refund = emulator_refunds(bo_stripe, charge.id)[0]
    event = {"id": "evt_test_refund_updated", "type": "refund.updated", "data": {"object": refund}}
    for handler in handlers_for("refund.updated"):
        handler(event=event)
    for handler in handlers_for("refund.updated"):  # a replay changes nothing
        handler(event=event)
    rr.refresh_from_db()
    assert rr.status == Status.SUCCEEDED
    assert AuditEntry.objects.filter(action="refund.succeeded", target_id=str(rr.pk)).count() == 1


def test_refund_failed_webhook_marks_the_request_failed(paying_team, finance_user, bo_stripe):
    _team, _owner, charge = paying_team
    rr = services.refund_request_create(staff=staff(finance_user), charge_id=charge.id, amount_minor=1500,
                                        currency="usd", reason="requested_by_customer")
    rr.refresh_from_db()
    refund = bo_stripe.store.get(rr.stripe_refund_id, "refund")
    with bo_stripe.store.lock:
        refund["status"] = "failed"
        refund["failure_reason"] = "expired_or_canceled_card"
    for handler in handlers_for("refund.failed"):
        handler(event={"id": "evt_x", "type": "refund.failed", "data": {"object": dict(refund)}})
    rr.refresh_from_db()
    assert rr.status == Status.FAILED and "expired_or_canceled_card" in rr.last_error


@pytest.mark.postgres
def test_two_approvals_racing_make_one_stripe_refund(paying_team, support_user, finance_user, finance_user2,
                                                     bo_stripe):
    _team, _owner, charge = paying_team
    rr = services.refund_request_create(staff=staff(support_user), charge_id=charge.id, amount_minor=9900,
                                        currency="usd", reason="requested_by_customer")
    barrier = threading.Barrier(2)
    outcomes = []

    def approve(user):
        try:
            barrier.wait(timeout=10)
            services.refund_request_approve(staff=staff(user), refund_request_id=rr.pk)
            outcomes.append("approved")
        except Exception as error:  # noqa: BLE001 - the loser's error is the point of the test
            outcomes.append(getattr(error, "code", repr(error)))
        finally:
            connection.close()

    threads = [threading.Thread(target=approve, args=(u,)) for u in (finance_user, finance_user2)]
    for t in threads:
        t.start()
    for t in threads:
        t.join(timeout=60)
    assert sorted(outcomes) == ["approved", "refund_request_not_pending"]
    assert len(emulator_refunds(bo_stripe, charge.id)) == 1
    assert refund_posts(bo_stripe) == 1


@pytest.mark.postgres
def test_two_requests_racing_never_exceed_the_paid_amount(paying_team, finance_user, finance_user2, bo_stripe):
    _team, _owner, charge = paying_team
    barrier = threading.Barrier(2)
    outcomes = []

    def request_refund(user):
        try:
            barrier.wait(timeout=10)
            services.refund_request_create(staff=staff(user), charge_id=charge.id, amount_minor=6000,
                                           currency="usd", reason="requested_by_customer")
            outcomes.append("created")
        except Exception as error:  # noqa: BLE001
            outcomes.append(getattr(error, "code", repr(error)))
        finally:
            connection.close()

    threads = [threading.Thread(target=request_refund, args=(u,)) for u in (finance_user, finance_user2)]
    for t in threads:
        t.start()
    for t in threads:
        t.join(timeout=60)
    assert sorted(outcomes) == ["amount_above_refundable", "created"]
    refunds = emulator_refunds(bo_stripe, charge.id)
    assert sum(r["amount"] for r in refunds) == 6000 <= 9900


def test_dispute_closes_pending_requests(paying_team, support_user, bo_stripe):
    _team, _owner, charge = paying_team
    rr = services.refund_request_create(staff=staff(support_user), charge_id=charge.id, amount_minor=1000,
                                        currency="usd", reason="requested_by_customer")
    with bo_stripe.store.lock:
        bo_stripe.store.get(charge.id, "charge")["disputed"] = True
    for handler in handlers_for("charge.dispute.created"):
        handler(event={"id": "evt_dp", "type": "charge.dispute.created",
                       "data": {"object": {"id": "dp_1", "object": "dispute", "charge": charge.id}}})
    rr.refresh_from_db()
    assert rr.status == Status.CANCELED and "dp_1" in rr.decision_note
    assert refund_posts(bo_stripe) == 0



def test_only_requests_older_than_the_resume_age_are_resumed(paying_team, finance_user, bo_stripe, settings):
    """The periodic task resumes a request processing for BACKOFFICE_REFUND_RESUME_AFTER_MINUTES, not a live one."""
    from datetime import timedelta

    from django.utils import timezone

    from billing.backoffice.tasks import refund_requests_resume_stuck_task

    from .factories import RefundRequestFactory

    team, _owner, charge = paying_team
    settings.BACKOFFICE_REFUND_RESUME_AFTER_MINUTES = 15
    live, lost = RefundRequestFactory.create_batch(2, team=team, stripe_charge_id=charge.id, amount_minor=100,
                                                   requested_by=finance_user, status=Status.PROCESSING)
    RefundRequest.objects.filter(pk=live.pk).update(updated=timezone.now() - timedelta(minutes=10))
    RefundRequest.objects.filter(pk=lost.pk).update(updated=timezone.now() - timedelta(minutes=20))

    assert refund_requests_resume_stuck_task() == 1

    live.refresh_from_db()
    lost.refresh_from_db()
    assert (live.status, lost.status) == (Status.PROCESSING, Status.SUCCEEDED)
    assert [r["amount"] for r in emulator_refunds(bo_stripe, charge.id)] == [100]
    settings.BACKOFFICE_REFUND_RESUME_AFTER_MINUTES = 5
    assert list(services.refund_requests_stuck().values_list("pk", flat=True)) == [live.pk]
