"""payment_behavior=pending_if_incomplete: the update applies only once its invoice is paid (Stripe's pending updates)."""
from __future__ import annotations

import urllib.parse
from typing import Any

import pytest
import stripe

from .conftest import http
from .shape_makers_billing import _price, as_dict
from .shapecheck import compare, fixtures
from .test_billing_subscriptions import DAY, T0, _advance, _event_types

HOUR = 3600


def _customer(client: stripe.StripeClient, card: str, *, clock: bool = False) -> tuple[Any, Any, Any]:
    test_clock = client.v1.test_helpers.test_clocks.create(params={"frozen_time": T0, "name": "pending"}) if clock else None
    cus = client.v1.customers.create(params={"email": "pending@example.com",
                                             **({"test_clock": test_clock.id} if test_clock else {})})
    good = client.v1.payment_methods.attach("pm_card_visa", params={"customer": cus.id})
    client.v1.customers.update(cus.id, params={"invoice_settings": {"default_payment_method": good.id}})
    sub_price = _price(client, amount=1000)
    sub = client.v1.subscriptions.create(params={"customer": cus.id, "items": [{"price": sub_price.id}]})
    card_pm = client.v1.payment_methods.attach(card, params={"customer": cus.id})
    client.v1.customers.update(cus.id, params={"invoice_settings": {"default_payment_method": card_pm.id}})
    return test_clock, cus, sub


def _upgrade(client: stripe.StripeClient, sub: Any, amount: int = 5000, **extra: Any) -> Any:
    return client.v1.subscriptions.update(sub.id, params={
        "items": [{"id": sub["items"].data[0].id, "price": _price(client, amount=amount).id}],
        "proration_behavior": "always_invoice", "payment_behavior": "pending_if_incomplete", **extra})


def _invoice_intent(client: stripe.StripeClient, invoice_id: str) -> Any:
    inv = client.v1.invoices.retrieve(invoice_id, params={"expand": ["payments"]})
    return inv, client.v1.payment_intents.retrieve(inv.payments.data[0].payment.payment_intent)


def test_payment_that_succeeds_applies_the_change_at_once(client: stripe.StripeClient) -> None:
    _, cus, sub = _customer(client, "pm_card_visa")
    updated = _upgrade(client, sub, metadata={"plan_key": "pro"})
    assert updated.pending_update is None and updated.status == "active"
    assert updated["items"].data[0].price.unit_amount == 5000 and updated.metadata["plan_key"] == "pro"
    inv = client.v1.invoices.retrieve(updated.latest_invoice)
    assert inv.status == "paid" and inv.billing_reason == "subscription_update" and inv.amount_paid > 0
    assert "customer.subscription.pending_update_applied" not in _event_types(client, sub.id)


def test_3ds_keeps_the_subscription_as_it_was_until_the_invoice_is_paid(client: stripe.StripeClient) -> None:
    _, cus, sub = _customer(client, "pm_card_threeDSecure2Required")
    before_events = len(_event_types(client, sub.id))
    updated = _upgrade(client, sub, metadata={"plan_key": "pro"})
    assert updated.status == "active" and updated["items"].data[0].price.unit_amount == 1000
    assert "plan_key" not in (updated.metadata or {})
    pu = updated.pending_update
    assert pu is not None and pu.metadata["plan_key"] == "pro"
    assert pu.subscription_items[0].price.unit_amount == 5000 and pu.subscription_items[0].id == sub["items"].data[0].id
    now = client.v1.invoices.retrieve(updated.latest_invoice).created
    assert now < pu.expires_at <= now + 23 * HOUR
    inv, pi = _invoice_intent(client, updated.latest_invoice)
    assert inv.status == "open" and pi.status == "requires_action"
    assert pi.next_action.type == "use_stripe_sdk"  # no return_url yet: the page confirms it with one
    challenge = pi.next_action.use_stripe_sdk.stripe_js
    # the shape of a subscription carrying a pending update, and of its items, is Stripe's
    as_json = as_dict(updated)
    assert compare(fixtures()["subscription"], as_json) == []
    assert compare(fixtures()["subscription_item"], as_json["pending_update"]["subscription_items"][0]) == []
    assert "customer.subscription.updated" in _event_types(client, sub.id)[before_events:]

    # the customer authenticates: the update applies
    status, _, _ = http("POST", challenge,
                        urllib.parse.urlencode({"action": "approve"}).encode(),
                        {"Content-Type": "application/x-www-form-urlencoded"})
    assert status in (200, 302, 303)
    after = client.v1.subscriptions.retrieve(sub.id)
    assert after.pending_update is None and after.status == "active"
    assert after["items"].data[0].price.unit_amount == 5000 and after.metadata["plan_key"] == "pro"
    assert client.v1.invoices.retrieve(inv.id).status == "paid"
    types = _event_types(client, sub.id)
    assert types.index("customer.subscription.pending_update_applied") > types.index("invoice.paid")
    assert types[-2:] == ["customer.subscription.updated", "customer.subscription.pending_update_applied"]


def test_failed_3ds_leaves_the_subscription_active_on_its_old_price(client: stripe.StripeClient) -> None:
    _, cus, sub = _customer(client, "pm_card_threeDSecure2Required")
    updated = _upgrade(client, sub)
    inv, pi = _invoice_intent(client, updated.latest_invoice)
    http("POST", pi.next_action.use_stripe_sdk.stripe_js,
         urllib.parse.urlencode({"action": "fail"}).encode(), {"Content-Type": "application/x-www-form-urlencoded"})
    after = client.v1.subscriptions.retrieve(sub.id)
    assert after.status == "active" and after["items"].data[0].price.unit_amount == 1000
    assert after.pending_update is not None
    assert client.v1.invoices.retrieve(inv.id).status == "open"
    assert client.v1.payment_intents.retrieve(pi.id).status == "requires_payment_method"


def test_decline_keeps_the_old_price_and_paying_later_applies_the_update(client: stripe.StripeClient) -> None:
    _, cus, sub = _customer(client, "pm_card_chargeCustomerFail")
    updated = _upgrade(client, sub)
    assert updated.status == "active" and updated.pending_update is not None
    assert updated["items"].data[0].price.unit_amount == 1000
    inv, pi = _invoice_intent(client, updated.latest_invoice)
    assert inv.status == "open" and pi.status == "requires_payment_method"
    assert pi.last_payment_error.code == "card_declined"
    assert "invoice.payment_failed" in _event_types(client, sub.id)
    # a new card pays the open invoice: the pending update applies
    good = client.v1.payment_methods.attach("pm_card_mastercard", params={"customer": cus.id})
    client.v1.invoices.pay(inv.id, params={"payment_method": good.id})
    after = client.v1.subscriptions.retrieve(sub.id)
    assert after.pending_update is None and after["items"].data[0].price.unit_amount == 5000
    assert after.status == "active"


def test_pending_update_expires_voids_the_invoice_and_drops_the_change(client: stripe.StripeClient) -> None:
    clock, cus, sub = _customer(client, "pm_card_chargeCustomerFail", clock=True)
    updated = _upgrade(client, sub)
    assert updated.pending_update.expires_at == T0 + 23 * HOUR
    _advance(client, clock, T0 + DAY)
    after = client.v1.subscriptions.retrieve(sub.id)
    assert after.pending_update is None and after.status == "active"
    assert after["items"].data[0].price.unit_amount == 1000
    assert client.v1.invoices.retrieve(updated.latest_invoice).status == "void"
    assert "customer.subscription.pending_update_expired" in _event_types(client, sub.id)


def test_only_pending_update_parameters_are_accepted(client: stripe.StripeClient) -> None:
    _, cus, sub = _customer(client, "pm_card_visa")
    for extra, param in (({"cancel_at_period_end": False}, "cancel_at_period_end"),
                         ({"description": "x"}, "description"),
                         ({"off_session": True}, "off_session")):
        with pytest.raises(stripe.InvalidRequestError) as exc:
            _upgrade(client, sub, **extra)
        assert exc.value.param == param and "pending_if_incomplete" in exc.value.user_message
    with pytest.raises(stripe.InvalidRequestError) as exc:
        client.v1.subscriptions.update(sub.id, params={
            "items": [{"id": sub["items"].data[0].id, "price": _price(client, amount=5000).id, "metadata": {"a": "b"}}],
            "proration_behavior": "always_invoice", "payment_behavior": "pending_if_incomplete"})
    assert exc.value.param == "items[0][metadata]"
    # nothing changed
    assert client.v1.subscriptions.retrieve(sub.id)["items"].data[0].price.unit_amount == 1000


def test_update_without_an_invoice_applies_at_once(client: stripe.StripeClient) -> None:
    _, cus, sub = _customer(client, "pm_card_chargeCustomerFail")
    updated = client.v1.subscriptions.update(sub.id, params={
        "items": [{"id": sub["items"].data[0].id, "price": _price(client, amount=5000).id}],
        "proration_behavior": "none", "payment_behavior": "pending_if_incomplete"})
    assert updated.pending_update is None and updated["items"].data[0].price.unit_amount == 5000


def test_subscription_item_create_with_pending_if_incomplete(client: stripe.StripeClient) -> None:
    _, cus, sub = _customer(client, "pm_card_chargeCustomerFail")
    item = client.v1.subscription_items.create(params={
        "subscription": sub.id, "price": _price(client, amount=700).id, "proration_behavior": "always_invoice",
        "payment_behavior": "pending_if_incomplete"})
    after = client.v1.subscriptions.retrieve(sub.id)
    assert len(after["items"].data) == 1 and after.pending_update is not None
    assert item.id in [i.id for i in after.pending_update.subscription_items]
    with pytest.raises(stripe.InvalidRequestError) as exc:
        client.v1.subscription_items.create(params={
            "subscription": sub.id, "price": _price(client, amount=800).id, "metadata": {"a": "b"},
            "proration_behavior": "always_invoice", "payment_behavior": "pending_if_incomplete"})
    assert exc.value.param == "metadata"
