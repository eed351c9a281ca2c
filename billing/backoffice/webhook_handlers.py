"""
The back office's reactions to Stripe events (listed in `billing.webhooks.registry`; the pipeline calls them once per
event, and again on replay, so each one is safe to run twice). Event data may be older than the object, so the
refund is re-retrieved from Stripe before its state is applied.
"""
import logging

from billing.models import RefundRequest
from billing.services.mirror import mirror_refresh
from billing.stripe_gateway import refunds as refund_gateway
from billing_site.errors import BillingError

from billing.stripe_gateway import credit_notes as credit_note_gateway

from .credit_notes import credit_note_mirror_store
from .refunds import refund_request_apply_stripe_refund, refund_requests_close_for_dispute

logger = logging.getLogger("billing.backoffice")


def _current_refund(snapshot: dict) -> dict:
    try:
        return refund_gateway.refund_retrieve(refund_id=snapshot["id"])
    except BillingError as error:
        if error.code == "stripe_resource_missing":
            return snapshot
        raise  # Stripe unreachable: the pipeline retries the event later


def refund_requests_on_refund_event(*, event: dict) -> None:
    snapshot = event["data"]["object"]
    meta_id = str((snapshot.get("metadata") or {}).get("refund_request_id") or "")
    ours = RefundRequest.objects.filter(stripe_refund_id=snapshot["id"]).exists() or (
        meta_id.isdigit() and RefundRequest.objects.filter(pk=int(meta_id)).exists())
    if not ours:
        return  # a refund made elsewhere (Stripe dashboard): no request of ours to move, no Stripe call
    refund_request_apply_stripe_refund(refund=_current_refund(snapshot))


def refund_requests_on_charge_refunded(*, event: dict) -> None:
    charge = event["data"]["object"]
    open_requests = RefundRequest.objects.filter(stripe_charge_id=charge["id"],
                                                 status__in=RefundRequest.OPEN_STATUSES)
    if not open_requests.exists():
        return
    # The charge's embedded refund list is capped at 10: ask Stripe for all of them.
    for refund in refund_gateway.refunds_for_charge(charge_id=charge["id"]):
        refund_request_apply_stripe_refund(refund=refund)
    try:
        mirror_refresh(kind="charge", object_id=charge["id"])
    except BillingError:
        logger.warning("charge %s mirror not refreshed after charge.refunded", charge["id"])


def refund_requests_on_dispute(*, event: dict) -> None:
    """A disputed charge cannot be refunded: close the requests that have not reached Stripe (audited)."""
    dispute = event["data"]["object"]
    charge_id = dispute.get("charge")
    if isinstance(charge_id, dict):
        charge_id = charge_id.get("id")
    if charge_id:
        refund_requests_close_for_dispute(charge_id=charge_id, dispute_id=dispute.get("id", ""))


def credit_note_on_event(*, event: dict) -> None:
    """credit_note.created/updated/voided: mirror the note as Stripe has it now (a void may follow the created)."""
    snapshot = event["data"]["object"]
    try:
        current = credit_note_gateway.credit_note_retrieve(credit_note_id=snapshot["id"])
    except BillingError as error:
        if error.code != "stripe_resource_missing":
            raise  # Stripe unreachable: the pipeline retries the event later
        current = snapshot
    credit_note_mirror_store(data=current)
