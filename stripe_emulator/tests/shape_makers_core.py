"""Makers for the shape test: each creates a real instance of one object type through the SDK.

`MAKERS[type](client) -> dict` (the object's JSON as served). Billing types live in shape_makers_billing.py.
"""
from __future__ import annotations

import json
from typing import Any, Callable

import stripe


def as_dict(obj: Any) -> dict[str, Any]:
    return json.loads(str(obj))


def _paid(client: stripe.StripeClient, pm: str = "pm_card_visa") -> Any:
    cus = client.v1.customers.create(params={"email": "shape@example.com"})
    return client.v1.payment_intents.create(params={
        "amount": 2500, "currency": "usd", "customer": cus.id, "payment_method": pm, "confirm": True,
        "description": "shape test",
    })


def customer(client: stripe.StripeClient) -> dict[str, Any]:
    return as_dict(client.v1.customers.create(params={
        "email": "shape@example.com", "name": "Shape", "metadata": {"team_id": "1"},
        "address": {"city": "Lisbon", "country": "PT"},
    }))


def deleted_customer(client: stripe.StripeClient) -> dict[str, Any]:
    cus = client.v1.customers.create()
    return as_dict(client.v1.customers.delete(cus.id))


def payment_method(client: stripe.StripeClient) -> dict[str, Any]:
    return as_dict(client.v1.payment_methods.create(params={
        "type": "card", "card": {"number": "4242424242424242", "exp_month": 12, "exp_year": 2034, "cvc": "123"},
        "billing_details": {"name": "Jenny"},
    }))


def payment_intent(client: stripe.StripeClient) -> dict[str, Any]:
    return as_dict(_paid(client))


def charge(client: stripe.StripeClient) -> dict[str, Any]:
    return as_dict(client.v1.charges.retrieve(_paid(client).latest_charge))


def balance_transaction(client: stripe.StripeClient) -> dict[str, Any]:
    ch = client.v1.charges.retrieve(_paid(client).latest_charge)
    return as_dict(client.v1.balance_transactions.retrieve(ch.balance_transaction))


def refund(client: stripe.StripeClient) -> dict[str, Any]:
    return as_dict(client.v1.refunds.create(params={"payment_intent": _paid(client).id, "amount": 100}))


def dispute(client: stripe.StripeClient) -> dict[str, Any]:
    pi = _paid(client, "pm_card_createDispute")
    return as_dict(client.v1.disputes.list(params={"payment_intent": pi.id}).data[0])


def setup_intent(client: stripe.StripeClient) -> dict[str, Any]:
    cus = client.v1.customers.create()
    return as_dict(client.v1.setup_intents.create(params={
        "customer": cus.id, "payment_method": "pm_card_visa", "confirm": True,
    }))


def product(client: stripe.StripeClient) -> dict[str, Any]:
    return as_dict(client.v1.products.create(params={"name": "Shape product", "description": "d"}))


def deleted_product(client: stripe.StripeClient) -> dict[str, Any]:
    prod = client.v1.products.create(params={"name": "Doomed"})
    return as_dict(client.v1.products.delete(prod.id))


def price(client: stripe.StripeClient) -> dict[str, Any]:
    prod = client.v1.products.create(params={"name": "Priced"})
    return as_dict(client.v1.prices.create(params={
        "product": prod.id, "currency": "usd", "unit_amount": 2000, "recurring": {"interval": "month"},
    }))


def coupon(client: stripe.StripeClient) -> dict[str, Any]:
    return as_dict(client.v1.coupons.create(params={"percent_off": "25.5", "duration": "repeating",
                                                    "duration_in_months": 3, "name": "25.5% off"}))


def deleted_coupon(client: stripe.StripeClient) -> dict[str, Any]:
    c = client.v1.coupons.create(params={"amount_off": 500, "currency": "usd"})
    return as_dict(client.v1.coupons.delete(c.id))


def promotion_code(client: stripe.StripeClient) -> dict[str, Any]:
    c = client.v1.coupons.create(params={"percent_off": "10"})
    return as_dict(client.v1.promotion_codes.create(params={"promotion": {"type": "coupon", "coupon": c.id}}))


def event(client: stripe.StripeClient) -> dict[str, Any]:
    cus = client.v1.customers.create()
    evs = client.v1.events.list(params={"type": "customer.created", "limit": 5})
    ev = next(e for e in evs.data if e.data.object.id == cus.id)
    return as_dict(client.v1.events.retrieve(ev.id))


def webhook_endpoint(client: stripe.StripeClient) -> dict[str, Any]:
    ep = client.v1.webhook_endpoints.create(params={"url": "http://127.0.0.1:9/hook",
                                                    "enabled_events": ["charge.failed"], "description": "d"})
    out = as_dict(client.v1.webhook_endpoints.retrieve(ep.id))
    client.v1.webhook_endpoints.delete(ep.id)
    return out


def deleted_webhook_endpoint(client: stripe.StripeClient) -> dict[str, Any]:
    ep = client.v1.webhook_endpoints.create(params={"url": "http://127.0.0.1:9/hook", "enabled_events": ["*"]})
    return as_dict(client.v1.webhook_endpoints.delete(ep.id))


def account(client: stripe.StripeClient) -> dict[str, Any]:
    return as_dict(client.v1.accounts.retrieve_current())


MAKERS: dict[str, Callable[[stripe.StripeClient], dict[str, Any]]] = {
    "account": account,
    "customer": customer,
    "deleted_customer": deleted_customer,
    "payment_method": payment_method,
    "payment_intent": payment_intent,
    "charge": charge,
    "balance_transaction": balance_transaction,
    "refund": refund,
    "dispute": dispute,
    "setup_intent": setup_intent,
    "product": product,
    "deleted_product": deleted_product,
    "price": price,
    "coupon": coupon,
    "deleted_coupon": deleted_coupon,
    "promotion_code": promotion_code,
    "event": event,
    "webhook_endpoint": webhook_endpoint,
    "deleted_webhook_endpoint": deleted_webhook_endpoint,
}
