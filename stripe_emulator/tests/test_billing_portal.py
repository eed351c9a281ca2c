"""Billing Portal configurations and sessions through the SDK, and the hosted page's forms."""
from __future__ import annotations

import urllib.parse
from typing import Any

import pytest
import stripe

from .conftest import http
from .shape_makers_billing import _customer_with_card, _price


def _post(url: str, fields: dict[str, str]) -> tuple[int, dict[str, str], str]:
    status, headers, body = http("POST", url, urllib.parse.urlencode(fields).encode(),
                                 {"Content-Type": "application/x-www-form-urlencoded"})
    return status, headers, body.decode()


def test_configuration_crud_and_validation(client: stripe.StripeClient) -> None:
    price = _price(client)
    conf = client.v1.billing_portal.configurations.create(params={
        "business_profile": {"headline": "Acme"}, "default_return_url": "https://app.example/account",
        "features": {"subscription_update": {"enabled": True, "default_allowed_updates": ["price", "quantity"],
                                             "proration_behavior": "always_invoice",
                                             "products": [{"product": price.product, "prices": [price.id]}]}}})
    assert conf.features.subscription_update.proration_behavior == "always_invoice" and conf.is_default is False
    assert conf.features.subscription_update.default_allowed_updates == ["price", "quantity"]
    updated = client.v1.billing_portal.configurations.update(conf.id, params={
        "features": {"subscription_cancel": {"enabled": True, "mode": "immediately"}}, "metadata": {"k": "v"}})
    assert updated.features.subscription_cancel.mode == "immediately" and updated.metadata["k"] == "v"
    assert updated.features.subscription_update.enabled is True  # untouched features are kept
    assert conf.id in [c.id for c in client.v1.billing_portal.configurations.list(params={"limit": 100}).data]
    with pytest.raises(stripe.InvalidRequestError) as exc:
        client.v1.billing_portal.configurations.create(params={"features": {"subscription_update": {
            "enabled": True, "products": [{"product": price.product, "prices": ["price_missing"]}]}}})
    assert exc.value.code == "resource_missing"
    with pytest.raises(stripe.InvalidRequestError):
        client.v1.billing_portal.sessions.create(params={"customer": "cus_missing", "return_url": "https://x.example"})


def test_session_uses_the_default_configuration_and_its_return_url(client: stripe.StripeClient) -> None:
    cus = _customer_with_card(client)
    session = client.v1.billing_portal.sessions.create(params={"customer": cus.id, "return_url": "https://app.example/r"})
    conf = client.v1.billing_portal.configurations.retrieve(session.configuration)
    assert conf.is_default is True and session.return_url == "https://app.example/r"
    assert conf.features.payment_method_update.enabled and conf.features.subscription_cancel.enabled
    status, _, body = http("GET", session.url)
    assert status == 200 and "https://app.example/r" in body.decode() and "No active subscription." in body.decode()


def test_immediate_cancel_from_the_portal(client: stripe.StripeClient, emulator: Any) -> None:
    cus = _customer_with_card(client)
    sub = client.v1.subscriptions.create(params={"customer": cus.id, "items": [{"price": _price(client).id}]})
    conf = client.v1.billing_portal.configurations.create(params={
        "features": {"subscription_cancel": {"enabled": True, "mode": "immediately"}}})
    session = client.v1.billing_portal.sessions.create(params={
        "customer": cus.id, "configuration": conf.id, "return_url": "https://app.example/r"})
    other = _customer_with_card(client)
    other_sub = client.v1.subscriptions.create(params={"customer": other.id, "items": [{"price": _price(client).id}]})
    status, _, _ = _post(f"{emulator.url}/_emulator/portal/{session.id}/cancel", {"subscription": other_sub.id})
    assert status == 400  # a portal session only reaches its own customer's subscriptions
    assert client.v1.subscriptions.retrieve(other_sub.id).status == "active"
    status, headers, _ = _post(f"{emulator.url}/_emulator/portal/{session.id}/cancel", {"subscription": sub.id})
    assert status == 303 and headers["location"].startswith(session.url)
    assert client.v1.subscriptions.retrieve(sub.id).status == "canceled"
