"""
Credit notes for invoice refunds (issue 14). Refunding a subscription invoice's payment from the back office is a
refund request like any other (same form, same four eyes, same STARTED/DONE markers, same idempotency key), executed
as a Stripe credit note on the invoice: the note refunds the card (`refund_amount`, Stripe makes the Refund) or
credits the customer's Stripe balance (`credit_amount`). The note is mirrored in `CreditNote`, from the gateway's
answer here and from `credit_note.*` webhooks (webhook_handlers.py).
"""
import logging
from datetime import UTC, datetime

from django.db import transaction
from django.utils import timezone

from billing.models import AuditEntry, CreditNote, RefundRequest
from billing.stripe_gateway import credit_notes as credit_note_gateway
from billing.stripe_gateway import refunds as refund_gateway

from .audit import StaffContext, audit_record

logger = logging.getLogger("billing.backoffice")

# Refund reasons that have a credit note reason of the same meaning; "requested by customer" has none (sent empty).
CREDIT_NOTE_REASONS = {"duplicate": "duplicate", "fraudulent": "fraudulent"}


def _refund_id(note: dict) -> str:
    for entry in note.get("refunds") or []:
        refund = entry.get("refund")
        return refund.get("id", "") if isinstance(refund, dict) else (refund or "")
    return ""


def credit_note_mirror_store(*, data: dict, refund_request_id: int | None = None) -> CreditNote:
    """Write (or refresh) the mirror row of a Stripe credit note dict. Safe to run twice, in any order."""
    from djstripe import models as djstripe_models

    invoice_id = data.get("invoice")
    invoice_id = invoice_id.get("id") if isinstance(invoice_id, dict) else (invoice_id or "")
    customer_id = data.get("customer")
    customer_id = customer_id.get("id") if isinstance(customer_id, dict) else (customer_id or "")
    meta_id = str((data.get("metadata") or {}).get("refund_request_id") or "")
    if refund_request_id is None and meta_id.isdigit() and RefundRequest.objects.filter(pk=int(meta_id)).exists():
        refund_request_id = int(meta_id)
    team_id = (djstripe_models.Customer.objects.filter(id=customer_id).values_list("subscriber_id", flat=True)
               .first()) if customer_id else None
    refund_minor = sum(int(r.get("amount_refunded") or 0) for r in data.get("refunds") or [])
    post = int(data.get("post_payment_amount") or 0)
    out_of_band = int(data.get("out_of_band_amount") or 0)
    defaults = {
        "stripe_invoice_id": invoice_id, "stripe_customer_id": customer_id, "team_id": team_id,
        "number": data.get("number") or "", "status": data.get("status") or CreditNote.Status.ISSUED,
        "reason": data.get("reason") or "", "currency": (data.get("currency") or "").lower(),
        "total_minor": int(data.get("total") or 0), "refund_minor": refund_minor,
        # What the note gave the customer's balance: the post-payment part neither refunded nor settled elsewhere.
        "credit_minor": max(0, post - refund_minor - out_of_band) if data.get("customer_balance_transaction") else 0,
        "out_of_band_minor": out_of_band, "stripe_refund_id": _refund_id(data), "memo": data.get("memo") or "",
        "pdf_url": data.get("pdf") or "",
        "stripe_created": datetime.fromtimestamp(int(data.get("created") or 0), tz=UTC),
        "stripe_data": data, "updated": timezone.now(),
    }
    if refund_request_id is not None:
        defaults["refund_request_id"] = refund_request_id
    note, _ = CreditNote.objects.update_or_create(stripe_id=data["id"], defaults=defaults)
    return note


def credit_note_find_at_stripe(*, refund_request: RefundRequest) -> dict | None:
    """The note a request already made (its answer was lost with the worker), found by its metadata."""
    for note in credit_note_gateway.credit_notes_for_invoice(invoice_id=refund_request.stripe_invoice_id):
        if (note.get("metadata") or {}).get("refund_request_id") == str(refund_request.pk):
            return note
    return None


def credit_note_issue(*, refund_request: RefundRequest, idempotency_key: str, look_up_first: bool) -> dict:
    """Create the request's credit note at Stripe (outside any transaction). Returns the note's dict."""
    note = credit_note_find_at_stripe(refund_request=refund_request) if look_up_first else None
    if note is None:
        note = credit_note_gateway.credit_note_create(
            invoice_id=refund_request.stripe_invoice_id, amount_minor=refund_request.amount_minor,
            reason=CREDIT_NOTE_REASONS.get(refund_request.reason, ""), to_balance=refund_request.credit_to_balance,
            idempotency_key=idempotency_key, memo=f"Refund request #{refund_request.pk}",
            metadata={"refund_request_id": str(refund_request.pk), "team_id": str(refund_request.team_id or "")})
    return note


def credit_note_apply(*, refund_request_id: int, note: dict) -> RefundRequest:
    """
    Record Stripe's credit note on its request (the DONE marker is the note id). A note that refunded the card hands
    over to the refund path (the request follows the Refund's state, webhooks included); a balance credit is final.
    """
    from .refunds import _complete_locked, _snapshot, refund_request_apply_stripe_refund

    credit_note_mirror_store(data=note, refund_request_id=refund_request_id)
    refund_id = _refund_id(note)
    with transaction.atomic():
        refund_request = RefundRequest.objects.select_for_update().get(pk=refund_request_id)
        if refund_request.stripe_credit_note_id and refund_request.stripe_credit_note_id != note["id"]:
            logger.error("refund request %s already has credit note %s, ignoring %s", refund_request.pk,
                         refund_request.stripe_credit_note_id, note["id"])
            return refund_request
        first_answer = not refund_request.stripe_credit_note_id
        before = _snapshot(refund_request)
        refund_request.stripe_credit_note_id = note["id"]
        update = ["stripe_credit_note_id", "updated"]
        if first_answer and not refund_id:
            refund_request.execution_finished_at = timezone.now()  # DONE: nothing more will come from Stripe
            update.append("execution_finished_at")
        refund_request.save(update_fields=update)
        if first_answer:
            audit_record(staff=StaffContext.system(), action=AuditEntry.Action.CREDIT_NOTE_ISSUED,
                         target_type="refund_request", target_id=refund_request.pk, team=refund_request.team,
                         before=before, after=_snapshot(refund_request) | {
                             "credit_note": note["id"], "invoice": refund_request.stripe_invoice_id,
                             "total_minor": int(note.get("total") or 0), "refund": refund_id,
                             "to_balance": refund_request.credit_to_balance})
        if not refund_id and refund_request.status == RefundRequest.Status.PROCESSING:
            _complete_locked(refund_request)
    if refund_id:
        refund_request = refund_request_apply_stripe_refund(
            refund=refund_gateway.refund_retrieve(refund_id=refund_id), refund_request_id=refund_request_id)
    return refund_request
