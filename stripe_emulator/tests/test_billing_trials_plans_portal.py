"""trial_will_end timing, trial_settings at trial end (pause/cancel/create_invoice), legacy plans, and portal
sessions that take the default configuration's return URL."""
from __future__ import annotations

import urllib.parse
from typing import Any

import pytest
import stripe

from .conftest import http
from .shape_makers_billing import _price
from .test_billing_subscriptions import DAY, T0, _advance, _clock_customer, _event_types


def _events_of(client: stripe.StripeClient, event_type: str, obj_id: str) -> list[Any]:
    return [e for e in client.v1.events.list(params={"type": event_type, "limit": 100}).data
            if e.data.object.id == obj_id]


# ------------------------------------------------------------------ trial_will_end timing

def test_trial_will_end_is_sent_three_days_before_the_end_on_the_clock(client: stripe.StripeClient) -> None:
    clock, cus, _ = _clock_customer(client)
    sub = client.v1.subscriptions.create(params={"customer": cus.id, "items": [{"price": _price(client).id}],
                                                 "trial_period_days": 14})
    assert _events_of(client, "customer.subscription.trial_will_end", sub.id) == []
    _advance(client, clock, T0 + 11 * DAY - 60)  # one minute before "three days left"
    assert _events_of(client, "customer.subscription.trial_will_end", sub.id) == []
    _advance(client, clock, T0 + 11 * DAY + 60)
    sent = _events_of(client, "customer.subscription.trial_will_end", sub.id)
    assert len(sent) == 1 and sent[0].created == T0 + 11 * DAY


def test_trial_will_end_is_sent_at_once_when_the_trial_is_shorter_than_three_days(client: stripe.StripeClient) -> None:
    clock, cus, _ = _clock_customer(client)
    sub = client.v1.subscriptions.create(params={"customer": cus.id, "items": [{"price": _price(client).id}],
                                                 "trial_end": T0 + 2 * DAY})
    sent = _events_of(client, "customer.subscription.trial_will_end", sub.id)
    assert len(sent) == 1 and sent[0].created == T0
    types = _event_types(client, sub.id)
    assert types.index("customer.subscription.created") < types.index("customer.subscription.trial_will_end")
    _advance(client, clock, T0 + 2 * DAY + 2 * 3600)  # the trial ends: no second notice
    assert len(_events_of(client, "customer.subscription.trial_will_end", sub.id)) == 1
    assert client.v1.subscriptions.retrieve(sub.id).status == "active"


def test_extending_a_trial_sends_a_new_notice_before_the_new_end(client: stripe.StripeClient) -> None:
    clock, cus, _ = _clock_customer(client)
    sub = client.v1.subscriptions.create(params={"customer": cus.id, "items": [{"price": _price(client).id}],
                                                 "trial_end": T0 + 1 * DAY})
    assert len(_events_of(client, "customer.subscription.trial_will_end", sub.id)) == 1
    client.v1.subscriptions.update(sub.id, params={"trial_end": T0 + 10 * DAY, "proration_behavior": "none"})
    assert len(_events_of(client, "customer.subscription.trial_will_end", sub.id)) == 1
    _advance(client, clock, T0 + 7 * DAY + 60)
    assert len(_events_of(client, "customer.subscription.trial_will_end", sub.id)) == 2


# ------------------------------------------------------------------ trial_settings at trial end

def _trial_without_card(client: stripe.StripeClient, behaviour: str | None) -> tuple[Any, Any]:
    clock = client.v1.test_helpers.test_clocks.create(params={"frozen_time": T0})
    cus = client.v1.customers.create(params={"email": "nocard@example.com", "test_clock": clock.id})
    params: dict[str, Any] = {"customer": cus.id, "items": [{"price": _price(client, amount=1500).id}],
                              "trial_period_days": 7}
    if behaviour:
        params["trial_settings"] = {"end_behavior": {"missing_payment_method": behaviour}}
    sub = client.v1.subscriptions.create(params=params)
    assert sub.status == "trialing"
    assert sub.trial_settings.end_behavior.missing_payment_method == (behaviour or "create_invoice")
    return clock, sub


def test_pause_at_trial_end_without_a_payment_method_then_resume(client: stripe.StripeClient) -> None:
    clock, sub = _trial_without_card(client, "pause")
    invoices_before = len(client.v1.invoices.list(params={"subscription": sub.id}).data)
    _advance(client, clock, T0 + 7 * DAY + 2 * 3600)
    sub = client.v1.subscriptions.retrieve(sub.id)
    assert sub.status == "paused"
    assert len(client.v1.invoices.list(params={"subscription": sub.id}).data) == invoices_before  # nothing billed
    types = _event_types(client, sub.id)
    assert types[-2:] == ["customer.subscription.updated", "customer.subscription.paused"]
    _advance(client, clock, T0 + 40 * DAY)  # a paused subscription does not renew
    assert len(client.v1.invoices.list(params={"subscription": sub.id}).data) == invoices_before
    pm = client.v1.payment_methods.attach("pm_card_visa", params={"customer": sub.customer})
    client.v1.customers.update(sub.customer, params={"invoice_settings": {"default_payment_method": pm.id}})
    resumed = client.v1.subscriptions.resume(sub.id, params={"billing_cycle_anchor": "now"})
    assert resumed.status == "active" and resumed.billing_cycle_anchor == T0 + 40 * DAY
    inv = client.v1.invoices.retrieve(resumed.latest_invoice)
    assert (inv.status, inv.amount_paid) == ("paid", 1500)
    assert "customer.subscription.resumed" in _event_types(client, sub.id)
    with pytest.raises(stripe.InvalidRequestError):
        client.v1.subscriptions.resume(sub.id)


def test_cancel_at_trial_end_without_a_payment_method(client: stripe.StripeClient) -> None:
    clock, sub = _trial_without_card(client, "cancel")
    _advance(client, clock, T0 + 7 * DAY + 2 * 3600)
    sub = client.v1.subscriptions.retrieve(sub.id)
    assert sub.status == "canceled" and sub.ended_at == T0 + 7 * DAY
    assert _event_types(client, sub.id)[-1] == "customer.subscription.deleted"
    assert [i.billing_reason for i in client.v1.invoices.list(params={"subscription": sub.id}).data] == [
        "subscription_create"]


def test_create_invoice_at_trial_end_without_a_payment_method_goes_past_due(client: stripe.StripeClient) -> None:
    clock, sub = _trial_without_card(client, None)
    _advance(client, clock, T0 + 7 * DAY + 2 * 3600)
    sub = client.v1.subscriptions.retrieve(sub.id)
    inv = client.v1.invoices.retrieve(sub.latest_invoice)
    assert (sub.status, inv.status, inv.amount_due) == ("past_due", "open", 1500)


def test_pause_is_not_applied_when_the_customer_has_a_card(client: stripe.StripeClient) -> None:
    clock, cus, _ = _clock_customer(client)
    sub = client.v1.subscriptions.create(params={
        "customer": cus.id, "items": [{"price": _price(client, amount=1500).id}], "trial_period_days": 7,
        "trial_settings": {"end_behavior": {"missing_payment_method": "pause"}}})
    _advance(client, clock, T0 + 7 * DAY + 2 * 3600)
    sub = client.v1.subscriptions.retrieve(sub.id)
    assert sub.status == "active" and client.v1.invoices.retrieve(sub.latest_invoice).amount_paid == 1500


# ------------------------------------------------------------------ legacy plans

def test_plans_crud_and_list(client: stripe.StripeClient) -> None:
    prod = client.v1.products.create(params={"name": "Legacy"})
    plan = client.v1.plans.create(params={"id": f"gold-{prod.id}", "amount": 2500, "currency": "usd",
                                          "interval": "month", "product": prod.id, "nickname": "Gold",
                                          "trial_period_days": 5, "metadata": {"tier": "gold"}})
    assert (plan.object, plan.id, plan.amount, str(plan.amount_decimal), plan.interval, plan.interval_count) == (
        "plan", f"gold-{prod.id}", 2500, "2500", "month", 1)
    assert (plan.trial_period_days, plan.usage_type, plan.nickname, plan.metadata["tier"]) == (5, "licensed", "Gold", "gold")
    # the plan is a price with the same id: subscriptions take it as `price`
    price = client.v1.prices.retrieve(plan.id)
    assert (price.unit_amount, price.recurring.interval, price.type) == (2500, "month", "recurring")
    inline = client.v1.plans.create(params={"amount": 900, "currency": "eur", "interval": "year",
                                            "product": {"name": "Inline product"}})
    assert inline.id.startswith("price_") and inline.interval == "year"
    assert client.v1.products.retrieve(inline.product).name == "Inline product"
    updated = client.v1.plans.update(plan.id, params={"nickname": "Gold+", "active": False, "metadata": {"k": "v"}})
    assert (updated.nickname, updated.active, updated.metadata["k"]) == ("Gold+", False, "v")
    assert client.v1.plans.retrieve(plan.id).nickname == "Gold+"
    listed = client.v1.plans.list(params={"product": prod.id}).data
    assert [p.id for p in listed] == [plan.id]
    assert client.v1.plans.list(params={"product": prod.id, "active": True}).data == []
    assert {e.type for e in client.v1.events.list(params={"limit": 20}).data} >= {"plan.created", "plan.updated"}
    deleted = client.v1.plans.delete(plan.id)
    assert (deleted.id, deleted.object, deleted.deleted) == (plan.id, "plan", True)
    with pytest.raises(stripe.InvalidRequestError) as exc:
        client.v1.plans.retrieve(plan.id)
    assert exc.value.http_status == 404 and exc.value.code == "resource_missing"
    assert client.v1.plans.list(params={"product": prod.id}).data == []


def test_plan_errors(client: stripe.StripeClient) -> None:
    prod = client.v1.products.create(params={"name": "Legacy errors"})
    client.v1.plans.create(params={"id": f"dup-{prod.id}", "amount": 100, "currency": "usd", "interval": "month",
                                   "product": prod.id})
    with pytest.raises(stripe.InvalidRequestError) as exc:
        client.v1.plans.create(params={"id": f"dup-{prod.id}", "amount": 100, "currency": "usd",
                                       "interval": "month", "product": prod.id})
    assert exc.value.code == "resource_already_exists"
    with pytest.raises(stripe.InvalidRequestError) as exc:
        client.v1.plans.create(params={"currency": "usd", "interval": "month", "product": prod.id})
    assert exc.value.code == "parameter_missing" and exc.value.param == "amount"
    with pytest.raises(stripe.InvalidRequestError) as exc:
        client.v1.plans.create(params={"amount": 100, "currency": "usd", "interval": "month", "product": prod.id,
                                       "unit_amount": 100})
    assert exc.value.code == "parameter_unknown" and exc.value.param == "unit_amount"
    one_time = client.v1.prices.create(params={"product": prod.id, "currency": "usd", "unit_amount": 100})
    with pytest.raises(stripe.InvalidRequestError) as exc:
        client.v1.plans.retrieve(one_time.id)  # one-time prices are not plans
    assert exc.value.http_status == 404


def test_subscription_on_a_legacy_plan(client: stripe.StripeClient) -> None:
    _, cus, _ = _clock_customer(client)
    prod = client.v1.products.create(params={"name": "Plan sub"})
    plan = client.v1.plans.create(params={"amount": 1200, "currency": "usd", "interval": "month", "product": prod.id})
    sub = client.v1.subscriptions.create(params={"customer": cus.id, "items": [{"plan": plan.id}]})
    assert sub["items"].data[0].plan.id == plan.id
    assert client.v1.invoices.retrieve(sub.latest_invoice).amount_paid == 1200


# ------------------------------------------------------------------ portal: default return URL

def test_portal_session_without_return_url_uses_the_default_configurations(client: stripe.StripeClient,
                                                                          emulator: Any) -> None:
    cus = client.v1.customers.create(params={"email": "portal-default@example.com"})
    defaults = client.v1.billing_portal.configurations.list(params={"is_default": True}).data
    assert len(defaults) == 1  # the account's default configuration exists before any session
    conf = defaults[0]
    client.v1.billing_portal.configurations.update(conf.id, params={"default_return_url": ""})
    with pytest.raises(stripe.InvalidRequestError) as exc:
        client.v1.billing_portal.sessions.create(params={"customer": cus.id})
    assert exc.value.param == "return_url"
    client.v1.billing_portal.configurations.update(conf.id, params={"default_return_url": "https://app.example/acct"})
    session = client.v1.billing_portal.sessions.create(params={"customer": cus.id})
    assert (session.return_url, session.configuration) == ("https://app.example/acct", conf.id)
    # the Dashboard setting through the control API
    status, _, _ = http("POST", f"{emulator.url}/_emulator/portal_settings",
                        urllib.parse.urlencode({"default_return_url": "https://app.example/other"}).encode(),
                        {"Content-Type": "application/x-www-form-urlencoded"})
    assert status == 200
    assert client.v1.billing_portal.sessions.create(params={"customer": cus.id}).return_url == "https://app.example/other"
    status, _, body = http("GET", session.url)
    assert status == 200 and "https://app.example/acct" in body.decode()
    # an explicit return_url still wins
    assert client.v1.billing_portal.sessions.create(params={
        "customer": cus.id, "return_url": "https://x.example/r"}).return_url == "https://x.example/r"
