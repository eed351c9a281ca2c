"""Credit notes through the SDK: refund to the card, credit to the customer balance, pre-payment credit on an
open invoice, preview and lines, void, and what Stripe refuses."""
from __future__ import annotations

from typing import Any

import pytest
import stripe

from .shape_makers_billing import _customer_with_card, _price


def _paid_invoice(client: stripe.StripeClient, amount: int = 3000, quantity: int = 1) -> tuple[Any, Any]:
    cus = _customer_with_card(client)
    sub = client.v1.subscriptions.create(params={"customer": cus.id, "items": [
        {"price": _price(client, amount=amount).id, "quantity": quantity}]})
    inv = client.v1.invoices.retrieve(sub.latest_invoice)
    assert (inv.status, inv.amount_paid) == ("paid", amount * quantity)
    return cus, inv


def _open_invoice(client: stripe.StripeClient, amount: int = 5000) -> tuple[Any, Any]:
    cus = client.v1.customers.create(params={"email": "cn-open@example.com"})
    client.v1.invoice_items.create(params={"customer": cus.id, "amount": amount, "currency": "usd",
                                           "description": "Consulting"})
    inv = client.v1.invoices.create(params={"customer": cus.id, "collection_method": "send_invoice",
                                            "days_until_due": 30, "pending_invoice_items_behavior": "include"})
    inv = client.v1.invoices.finalize_invoice(inv.id)
    assert (inv.status, inv.amount_remaining) == ("open", amount)
    return cus, inv


def _charge_of(client: stripe.StripeClient, inv: Any) -> Any:
    payments = client.v1.invoice_payments.list(params={"invoice": inv.id}).data
    pi = client.v1.payment_intents.retrieve(payments[0].payment.payment_intent)
    return client.v1.charges.retrieve(pi.latest_charge)


def test_credit_note_refunds_the_card(client: stripe.StripeClient) -> None:
    cus, inv = _paid_invoice(client, amount=3000)
    charge = _charge_of(client, inv)
    line = inv.lines.data[0]
    cn = client.v1.credit_notes.create(params={
        "invoice": inv.id, "lines": [{"type": "invoice_line_item", "invoice_line_item": line.id, "amount": 1200}],
        "refund_amount": 1200, "reason": "product_unsatisfactory", "memo": "Sorry"})
    assert (cn.status, cn.type, cn.total, cn.pre_payment_amount, cn.post_payment_amount) == (
        "issued", "post_payment", 1200, 0, 1200)
    assert cn.number == f"{inv.number}-CN-01" and cn.customer == cus.id and cn.memo == "Sorry"
    assert len(cn.refunds) == 1 and cn.refunds[0].amount_refunded == 1200
    refund = client.v1.refunds.retrieve(cn.refunds[0].refund)
    assert (refund.amount, refund.charge, refund.status) == (1200, charge.id, "succeeded")
    charge = client.v1.charges.retrieve(charge.id)
    assert (charge.amount_refunded, charge.refunded) == (1200, False)
    inv = client.v1.invoices.retrieve(inv.id)
    assert (inv.post_payment_credit_notes_amount, inv.amount_paid, inv.status) == (1200, 3000, "paid")
    assert client.v1.customers.retrieve(cus.id).balance == 0
    types = [e.type for e in client.v1.events.list(params={"limit": 10}).data]
    assert types.index("credit_note.created") < types.index("refund.created")  # newest first: refund came first
    # the rest of the line can still be credited, not more
    with pytest.raises(stripe.InvalidRequestError) as exc:
        client.v1.credit_notes.create(params={"invoice": inv.id, "refund_amount": 1801, "lines": [
            {"type": "invoice_line_item", "invoice_line_item": line.id, "amount": 1801}]})
    assert exc.value.param == "lines[0][amount]"
    with pytest.raises(stripe.InvalidRequestError):  # a refund cannot be taken back
        client.v1.credit_notes.void_credit_note(cn.id)


def test_credit_note_to_the_customer_balance_and_void(client: stripe.StripeClient) -> None:
    cus, inv = _paid_invoice(client, amount=1000, quantity=3)
    cn = client.v1.credit_notes.create(params={
        "invoice": inv.id, "credit_amount": 1000,
        "lines": [{"type": "invoice_line_item", "invoice_line_item": inv.lines.data[0].id, "quantity": 1}]})
    assert (cn.total, cn.lines.data[0].amount, cn.lines.data[0].quantity) == (1000, 1000, 1)
    assert client.v1.customers.retrieve(cus.id).balance == -1000
    txn = client.v1.customers.balance_transactions.retrieve(cus.id, cn.customer_balance_transaction)
    assert (txn.amount, txn.type, txn.credit_note, txn.invoice, txn.ending_balance) == (
        -1000, "credit_note", cn.id, inv.id, -1000)
    assert charge_untouched(client, inv)
    voided = client.v1.credit_notes.void_credit_note(cn.id)
    assert voided.status == "void" and voided.voided_at is not None
    assert client.v1.customers.retrieve(cus.id).balance == 0
    txns = client.v1.customers.balance_transactions.list(cus.id).data
    assert [t.amount for t in txns] == [1000, -1000]
    assert client.v1.invoices.retrieve(inv.id).post_payment_credit_notes_amount == 0
    with pytest.raises(stripe.InvalidRequestError):
        client.v1.credit_notes.void_credit_note(cn.id)
    types = [e.type for e in client.v1.events.list(params={"limit": 20}).data if e.type.startswith("credit_note.")]
    assert types[:2] == ["credit_note.voided", "credit_note.created"]


def charge_untouched(client: stripe.StripeClient, inv: Any) -> bool:
    return _charge_of(client, inv).amount_refunded == 0


def test_the_credit_balance_pays_the_next_invoice(client: stripe.StripeClient) -> None:
    cus, inv = _paid_invoice(client, amount=2000)
    client.v1.credit_notes.create(params={"invoice": inv.id, "amount": 500, "credit_amount": 500})
    client.v1.invoice_items.create(params={"customer": cus.id, "amount": 1500, "currency": "usd"})
    nxt = client.v1.invoices.create(params={"customer": cus.id, "pending_invoice_items_behavior": "include"})
    nxt = client.v1.invoices.finalize_invoice(nxt.id)
    assert (nxt.starting_balance, nxt.amount_due) == (-500, 1000)


def test_credit_note_on_an_open_invoice_reduces_what_is_due(client: stripe.StripeClient) -> None:
    cus, inv = _open_invoice(client, amount=5000)
    cn = client.v1.credit_notes.create(params={"invoice": inv.id, "lines": [
        {"type": "custom_line_item", "description": "Goodwill", "unit_amount": 750, "quantity": 2}]})
    assert (cn.type, cn.pre_payment_amount, cn.post_payment_amount, cn.total) == ("pre_payment", 1500, 0, 1500)
    assert (cn.lines.data[0].type, cn.lines.data[0].unit_amount, cn.lines.data[0].amount) == (
        "custom_line_item", 750, 1500)
    inv = client.v1.invoices.retrieve(inv.id)
    assert (inv.status, inv.amount_due, inv.amount_remaining, inv.pre_payment_credit_notes_amount) == (
        "open", 3500, 3500, 1500)
    client.v1.credit_notes.void_credit_note(cn.id)
    assert client.v1.invoices.retrieve(inv.id).amount_remaining == 5000
    # crediting everything that is due pays the invoice
    full = client.v1.credit_notes.create(params={"invoice": inv.id, "amount": 5000})
    assert full.pre_payment_amount == 5000
    inv = client.v1.invoices.retrieve(inv.id)
    assert (inv.status, inv.amount_remaining, inv.amount_paid) == ("paid", 0, 0)
    with pytest.raises(stripe.InvalidRequestError):  # nothing is left to credit
        client.v1.credit_notes.create(params={"invoice": inv.id, "amount": 1, "credit_amount": 1})


def test_preview_and_preview_lines_match_the_created_note(client: stripe.StripeClient) -> None:
    _, inv = _paid_invoice(client, amount=999, quantity=4)
    params: dict[str, Any] = {"invoice": inv.id, "refund_amount": 2498, "lines": [
        {"type": "invoice_line_item", "invoice_line_item": inv.lines.data[0].id, "quantity": 2},
        {"type": "custom_line_item", "description": "Shipping", "unit_amount": 500}]}
    preview = client.v1.credit_notes.preview(params=params)
    assert (preview.total, preview.post_payment_amount, preview.status) == (2498, 2498, "issued")
    lines = client.v1.credit_notes.preview_lines.list(params=params)
    assert [ln.amount for ln in lines.data] == [1998, 500] and lines.url == "/v1/credit_notes/preview/lines"
    assert client.v1.credit_notes.list(params={"invoice": inv.id}).data == []  # a preview stores nothing
    assert _charge_of(client, inv).amount_refunded == 0
    cn = client.v1.credit_notes.create(params=params)
    assert cn.total == preview.total
    stored = client.v1.credit_notes.line_items.list(cn.id)
    assert [ln.amount for ln in stored.data] == [1998, 500]
    assert [c.id for c in client.v1.credit_notes.list(params={"invoice": inv.id}).data] == [cn.id]
    updated = client.v1.credit_notes.update(cn.id, params={"memo": "Partial return", "metadata": {"ticket": "42"}})
    assert (updated.memo, updated.metadata["ticket"]) == ("Partial return", "42")


def test_refused_credit_notes(client: stripe.StripeClient) -> None:
    _, inv = _paid_invoice(client, amount=2000)
    with pytest.raises(stripe.InvalidRequestError) as exc:  # paid invoice: the split must be given
        client.v1.credit_notes.create(params={"invoice": inv.id, "amount": 500})
    assert exc.value.param == "credit_amount"
    with pytest.raises(stripe.InvalidRequestError) as exc:
        client.v1.credit_notes.create(params={"invoice": inv.id, "amount": 2001, "credit_amount": 2001})
    assert exc.value.param == "amount"
    with pytest.raises(stripe.InvalidRequestError) as exc:
        client.v1.credit_notes.create(params={"invoice": "in_missing", "amount": 1})
    assert exc.value.code == "resource_missing"
    with pytest.raises(stripe.InvalidRequestError) as exc:
        client.v1.credit_notes.create(params={"invoice": inv.id, "amount": 100, "credit_amount": 100, "bogus": 1})
    assert exc.value.code == "parameter_unknown"
    draft_cus = client.v1.customers.create()
    client.v1.invoice_items.create(params={"customer": draft_cus.id, "amount": 100, "currency": "usd"})
    draft = client.v1.invoices.create(params={"customer": draft_cus.id, "pending_invoice_items_behavior": "include"})
    with pytest.raises(stripe.InvalidRequestError):
        client.v1.credit_notes.create(params={"invoice": draft.id, "amount": 100})
    assert client.v1.credit_notes.list(params={"invoice": inv.id}).data == []


def test_retry_after_a_credit_note_charges_the_reduced_amount(client: stripe.StripeClient) -> None:
    cus = client.v1.customers.create(params={"email": "cn-retry@example.com"})
    declining = client.v1.payment_methods.attach("pm_card_chargeCustomerFail", params={"customer": cus.id})
    client.v1.invoice_items.create(params={"customer": cus.id, "amount": 4000, "currency": "usd"})
    inv = client.v1.invoices.create(params={"customer": cus.id, "pending_invoice_items_behavior": "include",
                                            "default_payment_method": declining.id})
    client.v1.invoices.finalize_invoice(inv.id)
    with pytest.raises(stripe.CardError):
        client.v1.invoices.pay(inv.id)
    client.v1.credit_notes.create(params={"invoice": inv.id, "amount": 1500})
    good = client.v1.payment_methods.attach("pm_card_visa", params={"customer": cus.id})
    paid = client.v1.invoices.pay(inv.id, params={"payment_method": good.id})
    assert (paid.status, paid.amount_paid, paid.amount_remaining) == ("paid", 2500, 0)
    pi = client.v1.payment_intents.retrieve(client.v1.invoice_payments.list(params={"invoice": inv.id}).data[0].payment.payment_intent)
    assert (pi.amount, pi.amount_received) == (2500, 2500)
