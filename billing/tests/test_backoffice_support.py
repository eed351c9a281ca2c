"""Support actions (each through a service, permission-checked, audited), credit claw-back, replay, reconciliation."""
import pytest
from django.core.management import call_command
from django.urls import reverse
from djstripe import models as djstripe_models

from billing.backoffice import refunds as refund_services
from billing.backoffice import support
from billing.backoffice.audit import StaffContext
from billing.models import AuditEntry, ReconciliationDrift, RefundRequest, WebhookEvent
from billing.extensions import credit_ledger
from billing_site.errors import PermissionDeniedError

from .backoffice_fixtures import *  # noqa: F401,F403
from .backoffice_fixtures import make_payment, make_subscription
from .factories import RefundRequestFactory, WebhookEventFactory

pytestmark = pytest.mark.django_db(transaction=True)


def credits_balance(*, team) -> int:
    # billing's tests reach credits the way billing's code does: through the ledger usage registers.
    return credit_ledger().balance(team=team)


def staff(user):
    return StaffContext(user=user, request_id="req-support")


def test_grant_credits_limit_for_support_and_double_submit(paying_team, support_user, finance_user, settings):
    team, _owner, _charge = paying_team
    settings.BACKOFFICE_SUPPORT_CREDIT_LIMIT = 100
    start = credits_balance(team=team)
    support.team_credits_grant(staff=staff(support_user), team=team, amount=50, note="goodwill", action_token="t1")
    support.team_credits_grant(staff=staff(support_user), team=team, amount=50, note="goodwill", action_token="t1")
    assert credits_balance(team=team) == start + 50  # the same form submitted twice grants once
    with pytest.raises(PermissionDeniedError):
        support.team_credits_grant(staff=staff(support_user), team=team, amount=500, note="big", action_token="t2")
    assert AuditEntry.objects.filter(actor=support_user, action="permission.denied").count() == 1
    support.team_credits_grant(staff=staff(finance_user), team=team, amount=500, note="contract", action_token="t3")
    assert credits_balance(team=team) == start + 550
    granted = AuditEntry.objects.filter(action="credits.granted", team=team).order_by("id")
    assert [e.after["granted"] for e in granted] == [50, 50, 500]
    assert granted.last().before["credits_balance"] == start + 50 and granted.last().after["credits_balance"] == \
        start + 550


def test_remove_credits_never_below_zero(paying_team, support_user):
    from billing_site.errors import ApplicationError

    team, _owner, _charge = paying_team
    balance = credits_balance(team=team)
    with pytest.raises(ApplicationError):
        support.team_credits_remove(staff=staff(support_user), team=team, amount=balance + 1, note="x",
                                    action_token="r1")
    support.team_credits_remove(staff=staff(support_user), team=team, amount=balance, note="abuse", action_token="r2")
    assert credits_balance(team=team) == 0
    assert AuditEntry.objects.filter(action="credits.removed", team=team).count() == 1


def test_grant_credits_through_the_page(client, paying_team, support_user):
    team, _owner, _charge = paying_team
    client.force_login(support_user)
    url = reverse("admin:billing_customeraccount_action", args=[team.pk, "grant_credits"])
    token = client.get(url).context["form"].initial["action_token"]
    before = credits_balance(team=team)
    response = client.post(url, {"amount": "7", "note": "sorry for the outage", "action_token": token})
    assert response.status_code == 302
    assert credits_balance(team=team) == before + 7


def test_cancel_subscription_now_is_finance_only(paying_team, support_user, finance_user, bo_stripe):
    team, _owner, charge = paying_team
    subscription, _invoice = make_subscription(charge.customer_id, trial_days=None)
    with pytest.raises(PermissionDeniedError):
        support.subscription_cancel(staff=staff(support_user), team=team, subscription_id=subscription.id,
                                    at_period_end=False)
    assert bo_stripe.store.get(subscription.id, "subscription")["status"] == "active"
    support.subscription_cancel(staff=staff(support_user), team=team, subscription_id=subscription.id,
                                at_period_end=True)
    assert bo_stripe.store.get(subscription.id, "subscription")["cancel_at_period_end"] is True
    support.subscription_cancel(staff=staff(finance_user), team=team, subscription_id=subscription.id,
                                at_period_end=False, note="chargeback risk")
    assert bo_stripe.store.get(subscription.id, "subscription")["status"] == "canceled"
    subscription.refresh_from_db()
    assert subscription.stripe_data["status"] == "canceled"
    entry = AuditEntry.objects.filter(action="subscription.canceled_now").get()
    assert entry.before["status"] == "active" and entry.after["status"] == "canceled"


def test_extend_trial_resync_and_resend_receipt(paying_team, support_user, bo_stripe):
    team, _owner, charge = paying_team
    subscription, _invoice = make_subscription(charge.customer_id, trial_days=7)
    old_end = subscription.stripe_data["trial_end"]
    support.subscription_trial_extend(staff=staff(support_user), team=team, subscription_id=subscription.id, days=5)
    assert bo_stripe.store.get(subscription.id, "subscription")["trial_end"] == old_end + 5 * 86400
    djstripe_models.Charge.objects.filter(pk=charge.pk).delete()
    counts = support.team_resync(staff=staff(support_user), team=team)
    assert counts["charge"] == 1 and djstripe_models.Charge.objects.filter(id=charge.id).exists()
    support.receipt_resend(staff=staff(support_user), team=team, charge_id=charge.id, action_token="rcpt1")
    assert bo_stripe.store.get(charge.id, "charge")["receipt_email"] == team.billing_email
    actions = set(AuditEntry.objects.filter(team=team).values_list("action", flat=True))
    assert {"subscription.trial_extended", "customer.resynced", "receipt.resent"} <= actions


def test_refunded_credit_pack_claws_back_unused_credits(paying_team, finance_user, bo_stripe):
    team, _owner, _charge = paying_team
    pack = make_payment(_charge.customer_id, amount_minor=3900)  # 50 credits for $39
    credit_ledger().grant(team=team, amount=50, reason="purchase", reference=pack.payment_intent_id)
    # Half refund: 25 credits back out.
    rr = refund_services.refund_request_create(staff=staff(finance_user), charge_id=pack.id, amount_minor=1950,
                                               currency="usd", reason="requested_by_customer")
    rr.refresh_from_db()
    assert rr.status == RefundRequest.Status.SUCCEEDED and rr.credits_clawed_back == 25
    # The customer spends all but 5 credits; refunding the rest claws back what is left, never below zero.
    credit_ledger().remove(team=team, amount=credits_balance(team=team) - 5, reason="usage", reference="spent")
    rr2 = refund_services.refund_request_create(staff=staff(finance_user), charge_id=pack.id, amount_minor=1950,
                                                currency="usd", reason="requested_by_customer")
    rr2.refresh_from_db()
    assert rr2.credits_clawed_back == 5
    assert credits_balance(team=team) == 0
    entry = credit_ledger().ledger(team=team).get(reason="refund_clawback", reference=f"refund_request:{rr2.pk}")
    assert entry.metadata["shortfall"] == 20
    assert AuditEntry.objects.filter(action="credits.clawed_back", team=team).count() == 2


def test_replay_of_a_parked_event(paying_team, support_user, finance_user, bo_stripe, monkeypatch):
    """A refund.updated event parked while Stripe was down: replay finishes the request."""
    team, _owner, charge = paying_team
    real_create = refund_services.refund_gateway.refund_create
    monkeypatch.setattr(refund_services.refund_gateway, "refund_create",
                        lambda **kw: {**real_create(**kw), "status": "pending"})
    rr = refund_services.refund_request_create(staff=staff(finance_user), charge_id=charge.id, amount_minor=500,
                                               currency="usd", reason="requested_by_customer")
    rr.refresh_from_db()
    assert rr.status == RefundRequest.Status.PROCESSING
    refund = bo_stripe.store.get(rr.stripe_refund_id, "refund")
    event = WebhookEventFactory(stripe_event_id="evt_parked_1", type="refund.updated", obj=dict(refund),
                                status=WebhookEvent.Status.PARKED)
    results = support.webhook_events_replay(staff=staff(support_user), event_ids=[event.stripe_event_id], team=team)
    assert results == {"evt_parked_1": "processed"}
    event.refresh_from_db()
    rr.refresh_from_db()
    assert event.status == WebhookEvent.Status.PROCESSED
    assert rr.status == RefundRequest.Status.SUCCEEDED
    assert AuditEntry.objects.filter(action="webhook.replayed", target_id="evt_parked_1", actor=support_user).exists()


def test_reconciliation_detects_and_repairs_injected_drift(admin_client, paying_team, finance_user, bo_stripe,
                                                           capsys):
    team, _owner, charge = paying_team
    # A refund made at Stripe that never reached the mirror (lost webhook): the mirror still says 0 refunded.
    from billing.stripe_gateway.refunds import refund_create

    refund_create(charge_id=charge.id, amount_minor=700, reason="duplicate", idempotency_key="outside:1")
    # And a refund request stuck in processing.
    stuck = RefundRequestFactory(team=team, stripe_charge_id=charge.id, requested_by=finance_user,
                                 status=RefundRequest.Status.PROCESSING)
    RefundRequest.objects.filter(pk=stuck.pk).update(updated="2000-01-01T00:00:00Z")
    call_command("reconcile")
    out = capsys.readouterr().out
    assert "charge" in out and "drifting" in out
    drift = ReconciliationDrift.objects.get(kind="charge_refunded", object_id=charge.id)
    assert (drift.local_value, drift.stripe_value, drift.team) == ("0", "700", team)
    assert ReconciliationDrift.objects.filter(kind="refund_stuck", object_id=str(stuck.pk)).exists()
    page = admin_client.get(reverse("admin:billing_reconciliationdrift_changelist"))
    assert charge.id in page.content.decode()
    admin_client.post(reverse("admin:billing_reconciliationdrift_repair", args=[drift.pk]))
    drift.refresh_from_db()
    assert drift.status == ReconciliationDrift.Status.REPAIRED
    assert djstripe_models.Charge.objects.get(id=charge.id).stripe_data["amount_refunded"] == 700
    assert AuditEntry.objects.filter(action="reconciliation.repaired", target_id=charge.id).exists()
    call_command("reconcile", since="2000-01-01")
    assert not ReconciliationDrift.objects.filter(kind="charge_refunded", status="open").exists()


def test_stuck_refund_with_a_lost_webhook_is_repaired_from_stripe(admin_client, paying_team, finance_user,
                                                                  bo_stripe, monkeypatch):
    from billing.backoffice.tasks import reconcile_task

    _team, _owner, charge = paying_team
    real_create = refund_services.refund_gateway.refund_create
    monkeypatch.setattr(refund_services.refund_gateway, "refund_create",
                        lambda **kw: {**real_create(**kw), "status": "pending"})
    rr = refund_services.refund_request_create(staff=staff(finance_user), charge_id=charge.id, amount_minor=800,
                                               currency="usd", reason="requested_by_customer")
    RefundRequest.objects.filter(pk=rr.pk).update(updated="2000-01-01T00:00:00Z")
    reconcile_task.delay()  # the scheduled run (eager in tests)
    drift = ReconciliationDrift.objects.get(kind="refund_stuck", object_id=str(rr.pk))
    admin_client.post(reverse("admin:billing_reconciliationdrift_repair", args=[drift.pk]))
    rr.refresh_from_db()
    assert rr.status == RefundRequest.Status.SUCCEEDED
    assert len([r for r in bo_stripe.store.all("refund") if r["charge"] == charge.id]) == 1
