"""
Credit notes and the dunning calls of the back office. Every write carries an idempotency key built by the caller
from its own row (a refund request's key, `refund_request:<id>`, doubles as its credit note's key).
"""
from ._core import client, stripe_operation, to_dict, write_options


@stripe_operation("credit_note_create")
def credit_note_create(*, invoice_id: str, amount_minor: int, reason: str, to_balance: bool, idempotency_key: str,
                       memo: str = "", metadata: dict[str, str] | None = None) -> dict:
    """
    Credit `amount_minor` (minor units of the invoice's currency) of a paid invoice: refunded to the card
    (`refund_amount`) or credited to the customer's Stripe balance (`credit_amount`), never split.
    """
    params = {"invoice": invoice_id, "amount": int(amount_minor), "metadata": metadata or {},
              ("credit_amount" if to_balance else "refund_amount"): int(amount_minor)}
    if reason:  # Stripe's credit note reasons: duplicate, fraudulent, order_change, product_unsatisfactory
        params["reason"] = reason
    if memo:
        params["memo"] = memo[:500]
    return to_dict(client().v1.credit_notes.create(params=params, options=write_options(idempotency_key)))


@stripe_operation("credit_note_retrieve")
def credit_note_retrieve(*, credit_note_id: str) -> dict:
    return to_dict(client().v1.credit_notes.retrieve(credit_note_id))


@stripe_operation("credit_notes_for_invoice")
def credit_notes_for_invoice(*, invoice_id: str) -> list[dict]:
    """Every credit note of an invoice: used to find a note whose answer we never stored (a worker died)."""
    page = client().v1.credit_notes.list(params={"invoice": invoice_id, "limit": 100})
    return [to_dict(note) for note in page.auto_paging_iter()]


@stripe_operation("invoice_retrieve")
def invoice_retrieve(*, invoice_id: str) -> dict:
    return to_dict(client().v1.invoices.retrieve(invoice_id))


@stripe_operation("invoice_pay")
def invoice_pay(*, invoice_id: str, idempotency_key: str) -> dict:
    """Attempt payment of an open invoice now, with the customer's default payment method (dunning's "retry now")."""
    return to_dict(client().v1.invoices.pay(invoice_id, params={}, options=write_options(idempotency_key)))


@stripe_operation("subscription_pause_collection")
def subscription_pause_collection(*, subscription_id: str, idempotency_key: str) -> dict:
    """Stop collecting payment (new invoices are voided) while the customer sorts out their card."""
    return to_dict(client().v1.subscriptions.update(
        subscription_id, params={"pause_collection": {"behavior": "void"}}, options=write_options(idempotency_key)))
