"""Shape-test makers for the second round of billing types: legacy plans, credit notes, customer balance
transactions, subscription schedules. Loaded after shape_makers_billing, so `plan` here (from the plans API)
replaces the subscription item's plan there."""
from __future__ import annotations

from typing import Any, Callable

import stripe

from .shape_makers_billing import _customer_with_card, _price, as_dict


def _plan(client: stripe.StripeClient) -> Any:
    prod = client.v1.products.create(params={"name": "Shape legacy plan"})
    return client.v1.plans.create(params={"amount": 2000, "currency": "usd", "interval": "month", "product": prod.id})


def plan(client: stripe.StripeClient) -> dict[str, Any]:
    return as_dict(client.v1.plans.retrieve(_plan(client).id))


def deleted_plan(client: stripe.StripeClient) -> dict[str, Any]:
    return as_dict(client.v1.plans.delete(_plan(client).id))


def _credit_note(client: stripe.StripeClient) -> Any:
    cus = _customer_with_card(client)
    sub = client.v1.subscriptions.create(params={"customer": cus.id, "items": [{"price": _price(client).id}]})
    inv = client.v1.invoices.retrieve(sub.latest_invoice)
    return client.v1.credit_notes.create(params={"invoice": inv.id, "credit_amount": 700, "memo": "shape", "lines": [
        {"type": "invoice_line_item", "invoice_line_item": inv.lines.data[0].id, "amount": 500},
        {"type": "custom_line_item", "description": "Service credit", "unit_amount": 200}]})


def credit_note(client: stripe.StripeClient) -> dict[str, Any]:
    return as_dict(client.v1.credit_notes.retrieve(_credit_note(client).id))


def credit_note_line_item(client: stripe.StripeClient) -> dict[str, Any]:
    return as_dict(client.v1.credit_notes.line_items.list(_credit_note(client).id).data[0])


def customer_balance_transaction(client: stripe.StripeClient) -> dict[str, Any]:
    cn = _credit_note(client)
    return as_dict(client.v1.customers.balance_transactions.retrieve(cn.customer, cn.customer_balance_transaction))


def subscription_schedule(client: stripe.StripeClient) -> dict[str, Any]:
    cus = _customer_with_card(client)
    price = _price(client)
    sched = client.v1.subscription_schedules.create(params={
        "customer": cus.id, "start_date": "now", "metadata": {"k": "v"},
        "phases": [{"items": [{"price": price.id, "quantity": 2}], "duration": {"interval": "month"}},
                   {"items": [{"price": _price(client, amount=900).id}]}]})
    return as_dict(client.v1.subscription_schedules.retrieve(sched.id))


MAKERS: dict[str, Callable[[stripe.StripeClient], dict[str, Any]]] = {
    "plan": plan,
    "deleted_plan": deleted_plan,
    "credit_note": credit_note,
    "credit_note_line_item": credit_note_line_item,
    "customer_balance_transaction": customer_balance_transaction,
    "subscription_schedule": subscription_schedule,
}

__all__ = ["MAKERS"]
