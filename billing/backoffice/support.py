"""
Support actions from the Customer 360 page. Each one: permission checked here (403 + audit entry when missing), the
change made through Stripe or the owning app's service, the mirror refreshed, one audit entry in the same transaction.
"""
import logging
from datetime import timedelta

from django.conf import settings
from django.db import transaction
from django.utils import timezone
from djstripe import models as djstripe_models

from accounts.models import Team
from billing.extensions import credit_ledger
from billing.models import AuditEntry
from billing.stripe_gateway import backoffice as gateway
from billing.stripe_gateway import subscriptions as subscriptions_gateway
from billing.stripe_gateway.sync import object_retrieve
from billing_site.errors import ApplicationError, NotFoundError

from .audit import StaffContext, audit_record, staff_require
from billing.services.mirror import mirror_store

logger = logging.getLogger("billing.backoffice")


def _reference(action_token: str) -> str:
    # The form's one-time token: a double submit carries the same token and the ledger keeps one entry.
    if not action_token or len(action_token) > 64:
        raise ApplicationError("invalid_action_token", "This form expired; open it again.")
    return f"staff:{action_token}"


def team_credits_grant(*, staff: StaffContext, team: Team, amount: int, note: str, action_token: str):
    """Grant credits. Support may grant up to BACKOFFICE_SUPPORT_CREDIT_LIMIT at once; above needs Finance."""
    staff_require(staff=staff, permission="billing.grant_credits", attempted="team_credits_grant",
                  target_type="team", target_id=team.pk, team=team)
    if amount <= 0:
        raise ApplicationError("amount_not_positive", "Grant at least one credit.")
    if amount > settings.BACKOFFICE_SUPPORT_CREDIT_LIMIT:
        staff_require(staff=staff, permission="billing.grant_credits_unlimited",
                      attempted=f"team_credits_grant above {settings.BACKOFFICE_SUPPORT_CREDIT_LIMIT}",
                      target_type="team", target_id=team.pk, team=team)
    if not note.strip():
        raise ApplicationError("reason_required", "Say why (the customer never sees it).")
    ledger = credit_ledger()
    with transaction.atomic():
        before = ledger.balance(team=team)
        entry = ledger.grant(team=team, amount=amount, reason="staff_grant", reference=_reference(action_token),
                             created_by=staff.user, note=note)
        audit_record(staff=staff, action=AuditEntry.Action.CREDITS_GRANTED, target_type="team", target_id=team.pk,
                     team=team, before={"credits_balance": before},
                     after={"credits_balance": ledger.balance(team=team), "granted": amount,
                            "ledger_entry": getattr(entry, "pk", None)}, reason=note)
    return entry


def team_credits_remove(*, staff: StaffContext, team: Team, amount: int, note: str, action_token: str):
    staff_require(staff=staff, permission="billing.remove_credits", attempted="team_credits_remove",
                  target_type="team", target_id=team.pk, team=team)
    if amount <= 0:
        raise ApplicationError("amount_not_positive", "Remove at least one credit.")
    if not note.strip():
        raise ApplicationError("reason_required", "Say why (the customer never sees it).")
    ledger = credit_ledger()
    with transaction.atomic():
        before = ledger.balance(team=team)
        # Never below zero: the ledger refuses (InsufficientCreditsError is shown on the form).
        entry = ledger.remove(team=team, amount=amount, reason="staff_removal", reference=_reference(action_token),
                              created_by=staff.user, note=note)
        audit_record(staff=staff, action=AuditEntry.Action.CREDITS_REMOVED, target_type="team", target_id=team.pk,
                     team=team, before={"credits_balance": before},
                     after={"credits_balance": ledger.balance(team=team), "removed": amount,
                            "ledger_entry": getattr(entry, "pk", None)}, reason=note)
    return entry


def team_stripe_customer(*, team: Team) -> djstripe_models.Customer | None:
    return djstripe_models.Customer.objects.filter(subscriber=team).order_by("-created").first()


def team_resync(*, staff: StaffContext, team: Team) -> dict:
    """Fetch the team's customer, subscriptions, invoices, charges and payment intents from Stripe into the mirror."""
    staff_require(staff=staff, permission="billing.resync_customer", attempted="team_resync", target_type="team",
                  target_id=team.pk, team=team)
    customer = team_stripe_customer(team=team)
    if customer is None:
        raise NotFoundError("no_stripe_customer", "This team has no Stripe customer yet.")
    counts = {"customer": 1}
    mirror_store(kind="customer", data=object_retrieve(object_type="customer", object_id=customer.id))
    for kind in ("subscription", "invoice", "payment_intent", "charge"):
        rows = gateway.customer_objects_list(kind=kind, customer_id=customer.id, limit=100)
        for data in rows:
            mirror_store(kind=kind, data=data)
        counts[kind] = len(rows)
    with transaction.atomic():
        audit_record(staff=staff, action=AuditEntry.Action.CUSTOMER_RESYNCED, target_type="stripe.customer",
                     target_id=customer.id, team=team, after={"synced": counts})
    return counts


def _team_subscription(team: Team, subscription_id: str) -> djstripe_models.Subscription:
    subscription = djstripe_models.Subscription.objects.filter(id=subscription_id,
                                                               customer__subscriber=team).first()
    if subscription is None:
        raise NotFoundError("subscription_not_found", "This team has no such subscription.")
    return subscription


def _subscription_state(data: dict) -> dict:
    return {k: data.get(k) for k in ("status", "cancel_at_period_end", "canceled_at", "trial_end", "cancel_at")}


def subscription_cancel(*, staff: StaffContext, team: Team, subscription_id: str, at_period_end: bool,
                        note: str = "") -> dict:
    """Cancel at period end (Support) or immediately (Finance: it ends service the customer paid for)."""
    permission = ("billing.cancel_subscription_at_period_end" if at_period_end
                  else "billing.cancel_subscription_now")
    staff_require(staff=staff, permission=permission, attempted="subscription_cancel", target_type="stripe.subscription",
                  target_id=subscription_id, team=team)
    subscription = _team_subscription(team, subscription_id)
    before = _subscription_state(subscription.stripe_data)
    if at_period_end:
        data = gateway.subscription_set_cancel_at_period_end(
            subscription_id=subscription_id, idempotency_key=f"subscription_cancel_at_period_end:{subscription_id}:"
            f"{subscription.stripe_data.get('current_period_end') or subscription.stripe_data.get('created')}")
        action = AuditEntry.Action.SUBSCRIPTION_CANCEL_AT_PERIOD_END
    else:
        # A subscription is canceled once, so its id is the whole idempotency key.
        data = subscriptions_gateway.subscription_cancel(
            subscription_id=subscription_id, idempotency_key=f"subscription_cancel_now:{subscription_id}")
        action = AuditEntry.Action.SUBSCRIPTION_CANCELED_NOW
    mirror_store(kind="subscription", data=data)
    with transaction.atomic():
        audit_record(staff=staff, action=action, target_type="stripe.subscription", target_id=subscription_id,
                     team=team, before=before, after=_subscription_state(data), reason=note)
    return data


def subscription_trial_extend(*, staff: StaffContext, team: Team, subscription_id: str, days: int,
                              note: str = "") -> dict:
    staff_require(staff=staff, permission="billing.extend_trial", attempted="subscription_trial_extend",
                  target_type="stripe.subscription", target_id=subscription_id, team=team)
    if not 1 <= days <= settings.BACKOFFICE_MAX_TRIAL_EXTENSION_DAYS:
        raise ApplicationError("invalid_days",
                               f"Extend by 1 to {settings.BACKOFFICE_MAX_TRIAL_EXTENSION_DAYS} days.")
    subscription = _team_subscription(team, subscription_id)
    before = _subscription_state(subscription.stripe_data)
    if subscription.stripe_data.get("status") != "trialing":
        raise ApplicationError("not_trialing", "Only a subscription in its trial can have the trial extended.")
    base = max(int(before.get("trial_end") or 0), int(timezone.now().timestamp()))
    new_end = base + int(timedelta(days=days).total_seconds())  # unix seconds
    data = gateway.subscription_set_trial_end(subscription_id=subscription_id, trial_end=new_end,
                                              idempotency_key=f"trial_extend:{subscription_id}:{new_end}")
    mirror_store(kind="subscription", data=data)
    with transaction.atomic():
        audit_record(staff=staff, action=AuditEntry.Action.TRIAL_EXTENDED, target_type="stripe.subscription",
                     target_id=subscription_id, team=team, before=before, after=_subscription_state(data),
                     reason=note)
    return data


def receipt_resend(*, staff: StaffContext, team: Team, charge_id: str, action_token: str) -> dict:
    """Stripe emails a receipt again when a charge's receipt_email is set: send it to the team's billing email."""
    staff_require(staff=staff, permission="billing.resend_receipt", attempted="receipt_resend",
                  target_type="stripe.charge", target_id=charge_id, team=team)
    if not djstripe_models.Charge.objects.filter(id=charge_id, customer__subscriber=team).exists():
        raise NotFoundError("charge_not_found", "This team has no such payment.")
    data = gateway.charge_resend_receipt(charge_id=charge_id, receipt_email=team.billing_email,
                                         idempotency_key=f"receipt_resend:{charge_id}:{_reference(action_token)}")
    mirror_store(kind="charge", data=data)
    with transaction.atomic():
        audit_record(staff=staff, action=AuditEntry.Action.RECEIPT_RESENT, target_type="stripe.charge",
                     target_id=charge_id, team=team, after={"receipt_email": team.billing_email})
    return data


def webhook_events_replay(*, staff: StaffContext, event_ids: list[str], team: Team | None = None) -> dict:
    """Replay stored webhook events through the billing core's pipeline (`webhook_event_replay`), one by one."""
    staff_require(staff=staff, permission="billing.replay_webhooks", attempted="webhook_events_replay",
                  target_type="webhook_event", target_id=",".join(event_ids)[:255], team=team)
    from billing.services import webhook_event_replay

    results = {}
    for event_id in event_ids:
        try:
            outcome = webhook_event_replay(event_id=event_id)
            results[event_id] = str(getattr(outcome, "status", outcome) or "replayed")
            audit_outcome = AuditEntry.Outcome.DONE
        except ApplicationError as error:
            results[event_id] = f"error: {error.user_message}"
            audit_outcome = AuditEntry.Outcome.FAILED
        with transaction.atomic():
            audit_record(staff=staff, action=AuditEntry.Action.WEBHOOK_REPLAYED, target_type="webhook_event",
                         target_id=event_id, team=team, after={"result": results[event_id]}, outcome=audit_outcome)
    return results


def outbound_emails_resend(*, staff: StaffContext, email_ids: list[int]) -> dict[int, str]:
    """
    Staff re-send of parked (or failed) outbox emails (`billing.emails.outbound_email_requeue`): attempts restart and
    the send task goes after commit. A sent or sending row is left alone: it is never sent twice. One audit entry
    per row, with what it was.
    """
    from billing.emails import outbound_email_requeue
    from billing.models import OutboundEmail

    staff_require(staff=staff, permission="billing.resend_outbound_email", attempted="outbound_emails_resend",
                  target_type="outbound_email", target_id=",".join(map(str, email_ids))[:255])
    rows = {row.pk: row for row in OutboundEmail.objects.filter(pk__in=email_ids).select_related("team")}
    results: dict[int, str] = {}
    for email_id in email_ids:
        row = rows.get(email_id)
        if row is None:
            results[email_id] = "not found"
            continue
        with transaction.atomic():
            requeued = outbound_email_requeue(outbound_email_id=row.pk)
            results[email_id] = "re-sent" if requeued else f"left alone ({row.status})"
            audit_record(staff=staff, action=AuditEntry.Action.EMAIL_RESENT, target_type="outbound_email",
                         target_id=row.pk, team=row.team,
                         before={"status": row.status, "attempts": row.attempts, "template": row.template or row.kind},
                         after={"result": results[email_id]},
                         outcome=AuditEntry.Outcome.DONE if requeued else AuditEntry.Outcome.FAILED)
    return results
