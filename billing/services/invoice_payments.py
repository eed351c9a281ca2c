"""
Which invoice a payment intent paid (see `models.InvoicePaymentLink`): recorded from Stripe's InvoicePayment objects,
read by the payment history (`selectors.team_payments`) to recognise subscription payments.
"""
import logging

from django.db import IntegrityError, transaction

from ..models import InvoicePaymentLink

logger = logging.getLogger(__name__)


def _id(value) -> str:
    return (value.get("id") if isinstance(value, dict) else value) or ""


def invoice_payment_link_record(*, invoice_payment: dict) -> InvoicePaymentLink | None:
    """
    Keep the link an InvoicePayment states (`invoice` and `payment.payment_intent`); safe to run twice. Payments
    that are not payment intents (out of band) link nothing.
    """
    intent_id = _id((invoice_payment.get("payment") or {}).get("payment_intent"))
    invoice_id = _id(invoice_payment.get("invoice"))
    if not intent_id or not invoice_id:
        return None
    return invoice_payment_link_store(payment_intent_id=intent_id, invoice_id=invoice_id,
                                      invoice_payment_id=invoice_payment.get("id") or "")


def invoice_payment_link_store(*, payment_intent_id: str, invoice_id: str,
                               invoice_payment_id: str = "") -> InvoicePaymentLink:
    try:
        with transaction.atomic():
            link, created = InvoicePaymentLink.objects.get_or_create(
                payment_intent_id=payment_intent_id,
                defaults={"invoice_id": invoice_id, "invoice_payment_id": invoice_payment_id})
    except IntegrityError:  # stored concurrently by the same event's replay
        return InvoicePaymentLink.objects.get(payment_intent_id=payment_intent_id)
    if created:
        logger.info("payment intent %s paid invoice %s", payment_intent_id, invoice_id)
    return link


def payment_intent_invoice_id(*, payment_intent_id: str) -> str:
    """
    The invoice a payment intent paid, "" for a one-time payment: the recorded link when there is one, else one
    read of Stripe's invoice payments, whose answer is recorded so the next reader (receipt, refund form, history)
    needs none.
    """
    from ..stripe_gateway.invoice_payments import invoice_id_for_payment_intent

    if not payment_intent_id:
        return ""
    recorded = InvoicePaymentLink.objects.filter(payment_intent_id=payment_intent_id).values_list(
        "invoice_id", flat=True).first()
    if recorded:
        return recorded
    invoice_id = invoice_id_for_payment_intent(payment_intent_id=payment_intent_id) or ""
    if invoice_id:
        invoice_payment_link_store(payment_intent_id=payment_intent_id, invoice_id=invoice_id)
    return invoice_id
