"""Invoice payments (API 2025-03 and later): which invoice a payment intent paid, now that neither the charge nor
the payment intent names its invoice. Read only (receipts of subscription payments, issue 13)."""
from ._core import client, stripe_operation, to_dict


@stripe_operation("invoice_payment_list_for_intent")
def invoice_id_for_payment_intent(*, payment_intent_id: str) -> str | None:
    """The invoice a payment intent paid, or None for a payment that belongs to no invoice."""
    page = to_dict(client().v1.invoice_payments.list(params={
        "payment": {"type": "payment_intent", "payment_intent": payment_intent_id}, "limit": 1}))
    for payment in page.get("data") or []:
        invoice = payment.get("invoice")
        return invoice.get("id") if isinstance(invoice, dict) else invoice
    return None


@stripe_operation("invoice_payment_list_for_invoice")
def payment_intent_id_for_invoice(*, invoice_id: str) -> str | None:
    """The payment intent that paid an invoice (its `paid` invoice payment), or None while nothing has paid it."""
    page = to_dict(client().v1.invoice_payments.list(params={"invoice": invoice_id, "status": "paid", "limit": 1}))
    for payment in page.get("data") or []:
        intent = (payment.get("payment") or {}).get("payment_intent")
        return intent.get("id") if isinstance(intent, dict) else intent
    return None
