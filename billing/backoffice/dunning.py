"""
Dunning actions (issue 14): retry a failed invoice now, email the customer a link to update their card, pause
collection, cancel (support.subscription_cancel). Each one: permission checked here (403 + audit entry), the change
made at Stripe outside any transaction, the mirror refreshed, one audit entry.
"""
import logging

from django.conf import settings
from django.db import transaction
from djstripe import models as djstripe_models

from accounts.models import Team
from billing.emails import send_team_email
from billing.models import AuditEntry
from billing.services.mirror import mirror_store
from billing.stripe_gateway import checkout as checkout_gateway
from billing.stripe_gateway import credit_notes as invoice_gateway
from billing_site.errors import ApplicationError, BillingError, NotFoundError
from billing_site.money import format_money

from .audit import StaffContext, audit_record, staff_require

logger = logging.getLogger("billing.backoffice")


def _team_invoice(team: Team, invoice_id: str) -> djstripe_models.Invoice:
    invoice = djstripe_models.Invoice.objects.filter(id=invoice_id, customer__subscriber=team).first()
    if invoice is None:
        raise NotFoundError("invoice_not_found", "This team has no such invoice.")
    return invoice


def _team_subscription(team: Team, subscription_id: str) -> djstripe_models.Subscription:
    subscription = djstripe_models.Subscription.objects.filter(id=subscription_id, customer__subscriber=team).first()
    if subscription is None:
        raise NotFoundError("subscription_not_found", "This team has no such subscription.")
    return subscription


def _invoice_state(data: dict) -> dict:
    return {key: data.get(key) for key in ("status", "amount_remaining", "attempt_count", "next_payment_attempt")}


def invoice_payment_retry(*, staff: StaffContext, team: Team, invoice_id: str) -> dict:
    """
    Try to collect an open invoice now with the customer's default card. The idempotency key names the invoice and
    the attempt count Stripe reported before the click, so a double submit makes one attempt and a later retry
    (after another failure) a new one. A decline is audited as failed and shown to staff.
    """
    staff_require(staff=staff, permission="billing.retry_invoice_payment", attempted="invoice_payment_retry",
                  target_type="stripe.invoice", target_id=invoice_id, team=team)
    _team_invoice(team, invoice_id)
    current = invoice_gateway.invoice_retrieve(invoice_id=invoice_id)  # the mirror may lag the last attempt
    mirror_store(kind="invoice", data=current)
    if current.get("status") != "open":
        raise ApplicationError("invoice_not_open",
                               f"This invoice is {current.get('status')}: only an open invoice can be paid.",
                               http_status=409)
    before = _invoice_state(current)
    try:
        data = invoice_gateway.invoice_pay(
            invoice_id=invoice_id, idempotency_key=f"invoice_retry:{invoice_id}:{int(current.get('attempt_count') or 0)}")
    except BillingError as error:
        after = invoice_gateway.invoice_retrieve(invoice_id=invoice_id)
        mirror_store(kind="invoice", data=after)
        with transaction.atomic():
            audit_record(staff=staff, action=AuditEntry.Action.INVOICE_PAYMENT_RETRIED, target_type="stripe.invoice",
                         target_id=invoice_id, team=team, before=before,
                         after=_invoice_state(after) | {"error": error.code}, outcome=AuditEntry.Outcome.FAILED)
        raise ApplicationError(error.code, f"The payment failed again: {error.user_message}", http_status=402) \
            from error
    mirror_store(kind="invoice", data=data)
    subscription_id = data.get("parent", {}).get("subscription_details", {}).get("subscription") if isinstance(
        data.get("parent"), dict) else None
    subscription_id = subscription_id or data.get("subscription")
    if isinstance(subscription_id, str):
        try:  # past_due -> active happens at Stripe when the invoice is paid: refresh the mirror now
            from billing.services.mirror import mirror_refresh

            mirror_refresh(kind="subscription", object_id=subscription_id)
        except BillingError:
            logger.warning("subscription %s not refreshed after invoice %s was paid", subscription_id, invoice_id)
    with transaction.atomic():
        audit_record(staff=staff, action=AuditEntry.Action.INVOICE_PAYMENT_RETRIED, target_type="stripe.invoice",
                     target_id=invoice_id, team=team, before=before, after=_invoice_state(data))
    return data


def payment_update_email_send(*, staff: StaffContext, team: Team, subscription_id: str, action_token: str) -> str:
    """Email the team's billing address a Customer Portal link to update the card. Returns the address."""
    staff_require(staff=staff, permission="billing.send_payment_update_email", attempted="payment_update_email_send",
                  target_type="stripe.subscription", target_id=subscription_id, team=team)
    if not action_token or len(action_token) > 64:
        raise ApplicationError("invalid_action_token", "This form expired; open it again.")
    subscription = _team_subscription(team, subscription_id)
    data = subscription.stripe_data or {}
    invoice = djstripe_models.Invoice.objects.filter(id=data.get("latest_invoice") or "").first()
    invoice_data = (invoice.stripe_data if invoice else None) or {}
    session = checkout_gateway.portal_session_create(
        customer_id=subscription.customer_id, return_url=f"{settings.SITE_URL}/billing/",
        idempotency_key=f"dunning_portal:{subscription_id}:{action_token}")
    amount = (format_money(int(invoice_data.get("amount_remaining") or 0), invoice_data.get("currency") or "usd")
              if invoice_data else "")
    send_team_email(team=team, template="payment_update_request", context={
        "portal_url": session.get("url") or "", "billing_url": f"{settings.SITE_URL}/billing/", "amount": amount,
        "hosted_invoice_url": invoice_data.get("hosted_invoice_url") or ""})
    with transaction.atomic():
        audit_record(staff=staff, action=AuditEntry.Action.PAYMENT_UPDATE_EMAIL_SENT,
                     target_type="stripe.subscription", target_id=subscription_id, team=team,
                     after={"to": team.billing_email, "invoice": invoice.id if invoice else None})
    return team.billing_email


def subscription_pause(*, staff: StaffContext, team: Team, subscription_id: str, note: str = "") -> dict:
    """Pause payment collection (Stripe voids new invoices) while the customer sorts out their card. Finance only."""
    staff_require(staff=staff, permission="billing.pause_subscription", attempted="subscription_pause",
                  target_type="stripe.subscription", target_id=subscription_id, team=team)
    subscription = _team_subscription(team, subscription_id)
    before = {"status": subscription.stripe_data.get("status"),
              "pause_collection": subscription.stripe_data.get("pause_collection")}
    data = invoice_gateway.subscription_pause_collection(
        subscription_id=subscription_id,
        idempotency_key=f"subscription_pause:{subscription_id}:{subscription.stripe_data.get('latest_invoice')}")
    mirror_store(kind="subscription", data=data)
    with transaction.atomic():
        audit_record(staff=staff, action=AuditEntry.Action.SUBSCRIPTION_PAUSED, target_type="stripe.subscription",
                     target_id=subscription_id, team=team, before=before,
                     after={"status": data.get("status"), "pause_collection": data.get("pause_collection")},
                     reason=note)
    return data
