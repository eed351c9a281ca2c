"""Shape-test makers for the billing types (EMU-B): each creates a real instance through the SDK."""
from __future__ import annotations

import json
import time
import urllib.error
import urllib.parse
import urllib.request
from typing import Any, Callable

import stripe


def as_dict(obj: Any) -> dict[str, Any]:
    return json.loads(str(obj))


def _price(client: stripe.StripeClient, *, recurring: bool = True, amount: int = 2000, **extra: Any) -> Any:
    prod = client.v1.products.create(params={"name": "Shape plan"})
    params: dict[str, Any] = {"product": prod.id, "currency": "usd", "unit_amount": amount, **extra}
    if recurring:
        params["recurring"] = {"interval": "month"}
    return client.v1.prices.create(params=params)


def _customer_with_card(client: stripe.StripeClient, **extra: Any) -> Any:
    cus = client.v1.customers.create(params={"email": "billing-shape@example.com", **extra})
    pm = client.v1.payment_methods.attach("pm_card_visa", params={"customer": cus.id})
    return client.v1.customers.update(cus.id, params={"invoice_settings": {"default_payment_method": pm.id}})


def _subscription(client: stripe.StripeClient) -> Any:
    cus = _customer_with_card(client)
    return client.v1.subscriptions.create(params={
        "customer": cus.id, "items": [{"price": _price(client).id, "quantity": 2}], "metadata": {"team_id": "7"},
    })


def subscription(client: stripe.StripeClient) -> dict[str, Any]:
    return as_dict(_subscription(client))


def subscription_item(client: stripe.StripeClient) -> dict[str, Any]:
    sub = _subscription(client)
    return as_dict(client.v1.subscription_items.retrieve(sub["items"].data[0].id))


def deleted_subscription_item(client: stripe.StripeClient) -> dict[str, Any]:
    sub = _subscription(client)
    client.v1.subscription_items.create(params={"subscription": sub.id, "price": _price(client, amount=500).id,
                                                "proration_behavior": "none"})
    return as_dict(client.v1.subscription_items.delete(sub["items"].data[0].id, params={"proration_behavior": "none"}))


def plan(client: stripe.StripeClient) -> dict[str, Any]:
    return as_dict(_subscription(client)["items"].data[0].plan)


def invoice(client: stripe.StripeClient) -> dict[str, Any]:
    return as_dict(client.v1.invoices.retrieve(_subscription(client).latest_invoice))


def line_item(client: stripe.StripeClient) -> dict[str, Any]:
    return as_dict(client.v1.invoices.line_items.list(_subscription(client).latest_invoice).data[0])


def invoiceitem(client: stripe.StripeClient) -> dict[str, Any]:
    cus = _customer_with_card(client)
    return as_dict(client.v1.invoice_items.create(params={
        "customer": cus.id, "amount": 1500, "currency": "usd", "description": "Setup fee", "metadata": {"k": "v"},
    }))


def deleted_invoiceitem(client: stripe.StripeClient) -> dict[str, Any]:
    cus = _customer_with_card(client)
    ii = client.v1.invoice_items.create(params={"customer": cus.id, "amount": 1500, "currency": "usd"})
    return as_dict(client.v1.invoice_items.delete(ii.id))


def deleted_invoice(client: stripe.StripeClient) -> dict[str, Any]:
    cus = _customer_with_card(client)
    inv = client.v1.invoices.create(params={"customer": cus.id})
    return as_dict(client.v1.invoices.delete(inv.id))


def invoice_payment(client: stripe.StripeClient) -> dict[str, Any]:
    inv_id = _subscription(client).latest_invoice
    return as_dict(client.v1.invoice_payments.list(params={"invoice": inv_id}).data[0])


def discount(client: stripe.StripeClient) -> dict[str, Any]:
    cus = _customer_with_card(client)
    coupon = client.v1.coupons.create(params={"percent_off": 10, "duration": "forever"})
    sub = client.v1.subscriptions.create(params={"customer": cus.id, "items": [{"price": _price(client).id}],
                                                 "discounts": [{"coupon": coupon.id}], "expand": ["discounts"]})
    return as_dict(sub.discounts[0])


def _session(client: stripe.StripeClient, mode: str = "payment") -> Any:
    price = _price(client, recurring=mode == "subscription")
    return client.v1.checkout.sessions.create(params={
        "mode": mode, "line_items": [{"price": price.id, "quantity": 1}], "success_url": "https://example.com/ok",
        "cancel_url": "https://example.com/cancel", "customer_email": "shape@example.com",
        "client_reference_id": "team_1", "metadata": {"team_id": "1"},
    })


def checkout_session(client: stripe.StripeClient) -> dict[str, Any]:
    """A completed session (customer_details, payment_intent and totals filled in)."""
    session = _session(client)
    base = session.url.split("/_emulator/")[0]

    class _NoRedirect(urllib.request.HTTPRedirectHandler):
        def redirect_request(self, *args: Any, **kwargs: Any) -> None:
            return None

    req = urllib.request.Request(f"{base}/_emulator/checkout_sessions/{session.id}/complete",
                                 data=urllib.parse.urlencode({"card_number": "4242424242424242"}).encode(), method="POST")
    try:
        urllib.request.build_opener(_NoRedirect).open(req, timeout=10)
    except urllib.error.HTTPError as exc:
        assert exc.code == 303, exc.code
    done = as_dict(client.v1.checkout.sessions.retrieve(session.id))
    assert done["status"] == "complete"
    return done


def item(client: stripe.StripeClient) -> dict[str, Any]:
    return as_dict(client.v1.checkout.sessions.line_items.list(_session(client).id).data[0])


def _meter(client: stripe.StripeClient) -> Any:
    name = f"shape_calls_{time.time_ns()}"
    return client.v1.billing.meters.create(params={
        "display_name": "API calls", "event_name": name, "default_aggregation": {"formula": "sum"},
        "customer_mapping": {"event_payload_key": "stripe_customer_id", "type": "by_id"},
        "value_settings": {"event_payload_key": "value"},
    })


def billing_meter(client: stripe.StripeClient) -> dict[str, Any]:
    return as_dict(_meter(client))


def billing_meter_event(client: stripe.StripeClient) -> dict[str, Any]:
    meter = _meter(client)
    cus = client.v1.customers.create()
    return as_dict(client.v1.billing.meter_events.create(params={
        "event_name": meter.event_name, "payload": {"stripe_customer_id": cus.id, "value": "25"},
        "identifier": f"shape-{time.time_ns()}",
    }))


def billing_meter_event_adjustment(client: stripe.StripeClient) -> dict[str, Any]:
    meter = _meter(client)
    cus = client.v1.customers.create()
    ident = f"shape-{time.time_ns()}"
    client.v1.billing.meter_events.create(params={
        "event_name": meter.event_name, "payload": {"stripe_customer_id": cus.id, "value": "3"}, "identifier": ident})
    return as_dict(client.v1.billing.meter_event_adjustments.create(params={
        "event_name": meter.event_name, "type": "cancel", "cancel": {"identifier": ident}}))


def billing_meter_event_summary(client: stripe.StripeClient) -> dict[str, Any]:
    meter = _meter(client)
    cus = client.v1.customers.create()
    now = int(time.time())
    client.v1.billing.meter_events.create(params={
        "event_name": meter.event_name, "payload": {"stripe_customer_id": cus.id, "value": "4"}, "timestamp": now})
    start = now - now % 60
    return as_dict(client.v1.billing.meters.event_summaries.list(meter.id, params={
        "customer": cus.id, "start_time": start, "end_time": start + 3600}).data[0])


def test_clock(client: stripe.StripeClient) -> dict[str, Any]:
    return as_dict(client.v1.test_helpers.test_clocks.create(params={"frozen_time": int(time.time()), "name": "shape"}))


def deleted_test_clock(client: stripe.StripeClient) -> dict[str, Any]:
    clock = client.v1.test_helpers.test_clocks.create(params={"frozen_time": int(time.time())})
    return as_dict(client.v1.test_helpers.test_clocks.delete(clock.id))


def portal_configuration(client: stripe.StripeClient) -> dict[str, Any]:
    price = _price(client)
    return as_dict(client.v1.billing_portal.configurations.create(params={
        "business_profile": {"headline": "Acme", "privacy_policy_url": "https://example.com/privacy"},
        "default_return_url": "https://example.com/account",
        "features": {
            "subscription_update": {"enabled": True, "default_allowed_updates": ["price"],
                                    "products": [{"product": price.product, "prices": [price.id]}],
                                    "proration_behavior": "create_prorations"},
            "subscription_cancel": {"enabled": True, "mode": "at_period_end"},
            "payment_method_update": {"enabled": True},
            "invoice_history": {"enabled": True},
        },
        "metadata": {"k": "v"},
    }))


def portal_session(client: stripe.StripeClient) -> dict[str, Any]:
    cus = _customer_with_card(client)
    return as_dict(client.v1.billing_portal.sessions.create(params={
        "customer": cus.id, "return_url": "https://example.com/account"}))


MAKERS: dict[str, Callable[[stripe.StripeClient], dict[str, Any]]] = {
    "subscription": subscription,
    "subscription_item": subscription_item,
    "deleted_subscription_item": deleted_subscription_item,
    "plan": plan,
    "invoice": invoice,
    "line_item": line_item,
    "invoiceitem": invoiceitem,
    "deleted_invoiceitem": deleted_invoiceitem,
    "deleted_invoice": deleted_invoice,
    "invoice_payment": invoice_payment,
    "discount": discount,
    "checkout.session": checkout_session,
    "item": item,
    "billing.meter": billing_meter,
    "billing.meter_event": billing_meter_event,
    "billing.meter_event_adjustment": billing_meter_event_adjustment,
    "billing.meter_event_summary": billing_meter_event_summary,
    "test_helpers.test_clock": test_clock,
    "deleted_test_helpers.test_clock": deleted_test_clock,
    "billing_portal.configuration": portal_configuration,
    "billing_portal.session": portal_session,
}

__all__ = ["MAKERS"]
