"""Subscription schedules through the SDK and test clocks: downgrade at period end, schedules from scratch
(now and in the future), release, cancel, end_behavior=cancel, and the events in Stripe's order."""
from __future__ import annotations

from typing import Any

import pytest
import stripe

from .shape_makers_billing import _price
from .test_billing_subscriptions import DAY, T0, _advance, _clock_customer


def _schedule_events(client: stripe.StripeClient, sched_id: str, sub_id: str) -> list[str]:
    out = []
    for ev in client.v1.events.list(params={"limit": 100}).data:
        o = ev.data.object.to_dict()
        if o.get("id") in (sched_id, sub_id) or (o.get("object") == "invoice" and (
                (o.get("parent") or {}).get("subscription_details") or {}).get("subscription") == sub_id):
            out.append(ev.type)
    return list(reversed(out))


def test_downgrade_at_period_end_through_a_schedule(client: stripe.StripeClient) -> None:
    clock, cus, _ = _clock_customer(client)
    pro, basic = _price(client, amount=5000), _price(client, amount=2000)
    sub = client.v1.subscriptions.create(params={"customer": cus.id, "items": [{"price": pro.id}]})
    sched = client.v1.subscription_schedules.create(params={"from_subscription": sub.id})
    period_end = sub["items"].data[0].current_period_end
    assert (sched.status, sched.subscription, sched.customer, sched.end_behavior) == ("active", sub.id, cus.id, "release")
    assert (sched.current_phase.start_date, sched.current_phase.end_date) == (T0, period_end)
    assert [(i.price, i.quantity) for i in sched.phases[0]["items"]] == [(pro.id, 1)]
    assert client.v1.subscriptions.retrieve(sub.id).schedule == sched.id
    with pytest.raises(stripe.InvalidRequestError):  # one schedule per subscription
        client.v1.subscription_schedules.create(params={"from_subscription": sub.id})
    sched = client.v1.subscription_schedules.update(sched.id, params={"end_behavior": "release", "phases": [
        {"items": [{"price": pro.id, "quantity": 1}], "start_date": sched.phases[0].start_date,
         "end_date": sched.phases[0].end_date},
        {"items": [{"price": basic.id, "quantity": 1}], "duration": {"interval": "month", "interval_count": 1}}]})
    assert [(p.start_date, p.end_date) for p in sched.phases][1][0] == period_end
    # nothing changes before the boundary
    _advance(client, clock, period_end - 3600)
    assert client.v1.subscriptions.retrieve(sub.id)["items"].data[0].price.id == pro.id
    _advance(client, clock, period_end + 2 * 3600)
    sub = client.v1.subscriptions.retrieve(sub.id)
    assert sub["items"].data[0].price.id == basic.id and sub.status == "active"
    renewal = client.v1.invoices.retrieve(sub.latest_invoice)
    assert (renewal.billing_reason, renewal.amount_paid) == ("subscription_cycle", 2000)  # no proration lines
    assert [ln.amount for ln in renewal.lines.data] == [2000]
    sched = client.v1.subscription_schedules.retrieve(sched.id)
    assert sched.status == "active" and sched.current_phase.start_date == period_end
    # the last phase ends: the subscription is released and keeps running
    last_end = sched.phases[1].end_date
    _advance(client, clock, last_end + 2 * 3600)
    sched = client.v1.subscription_schedules.retrieve(sched.id)
    assert (sched.status, sched.released_subscription, sched.subscription, sched.current_phase) == (
        "released", sub.id, None, None)
    sub = client.v1.subscriptions.retrieve(sub.id)
    assert (sub.status, sub.schedule) == ("active", None)
    events = _schedule_events(client, sched.id, sub.id)
    sched_events = [e for e in events if e.startswith("subscription_schedule.")]
    assert sched_events == ["subscription_schedule.created", "subscription_schedule.updated",
                            "subscription_schedule.updated", "subscription_schedule.expiring",
                            "subscription_schedule.released"]
    # at the boundary the phase switches before the renewal invoice is created
    boundary = events.index("subscription_schedule.updated", events.index("subscription_schedule.updated") + 1)
    assert events[boundary - 1] == "customer.subscription.updated"
    assert "invoice.created" in events[boundary + 1:]
    assert events.index("subscription_schedule.expiring") > boundary


def test_schedule_from_scratch_starting_later_then_end_behavior_cancel(client: stripe.StripeClient) -> None:
    clock, cus, _ = _clock_customer(client)
    intro, regular = _price(client, amount=1000), _price(client, amount=3000)
    start = T0 + 5 * DAY
    sched = client.v1.subscription_schedules.create(params={
        "customer": cus.id, "start_date": start, "end_behavior": "cancel", "metadata": {"plan": "intro"},
        "phases": [{"items": [{"price": intro.id, "quantity": 2}], "duration": {"interval": "month"}},
                   {"items": [{"price": regular.id, "quantity": 2}], "duration": {"interval": "month"}}]})
    assert (sched.status, sched.subscription, sched.current_phase) == ("not_started", None, None)
    assert sched.phases[0].start_date == start and sched.phases[1].start_date == sched.phases[0].end_date
    assert client.v1.subscription_schedules.list(params={"customer": cus.id, "scheduled": True}).data[0].id == sched.id
    _advance(client, clock, start + 3600)
    sched = client.v1.subscription_schedules.retrieve(sched.id)
    assert sched.status == "active" and sched.subscription
    sub = client.v1.subscriptions.retrieve(sched.subscription)
    assert (sub.start_date, sub.schedule, sub["items"].data[0].quantity) == (start, sched.id, 2)
    assert client.v1.invoices.retrieve(sub.latest_invoice).amount_paid == 2000
    _advance(client, clock, sched.phases[0].end_date + 2 * 3600)
    sub = client.v1.subscriptions.retrieve(sub.id)
    assert client.v1.invoices.retrieve(sub.latest_invoice).amount_paid == 6000
    _advance(client, clock, sched.phases[1].end_date + 3600)
    sched = client.v1.subscription_schedules.retrieve(sched.id)
    sub = client.v1.subscriptions.retrieve(sub.id)
    assert (sched.status, sched.completed_at) == ("completed", sched.phases[1].end_date)
    assert (sub.status, sub.ended_at) == ("canceled", sched.phases[1].end_date)
    types = _schedule_events(client, sched.id, sub.id)
    assert types.index("customer.subscription.deleted") < types.index("subscription_schedule.completed")


def test_schedule_starting_now_creates_and_bills_the_subscription(client: stripe.StripeClient) -> None:
    _, cus, _ = _clock_customer(client)
    price = _price(client, amount=4200)
    sched = client.v1.subscription_schedules.create(params={
        "customer": cus.id, "start_date": "now", "phases": [{"items": [{"price": price.id}]}]})
    assert sched.status == "active" and sched.phases[0].start_date == T0
    sub = client.v1.subscriptions.retrieve(sched.subscription)
    assert sub.schedule == sched.id and client.v1.invoices.retrieve(sub.latest_invoice).amount_paid == 4200
    assert sched.phases[0].end_date == sub["items"].data[0].current_period_end  # one period by default
    types = _schedule_events(client, sched.id, sub.id)
    assert types.index("customer.subscription.created") < types.index("subscription_schedule.created")


def test_release_and_cancel(client: stripe.StripeClient) -> None:
    _, cus, _ = _clock_customer(client)
    price = _price(client, amount=1500)
    sub = client.v1.subscriptions.create(params={"customer": cus.id, "items": [{"price": price.id}]})
    sched = client.v1.subscription_schedules.create(params={"from_subscription": sub.id})
    released = client.v1.subscription_schedules.release(sched.id)
    assert (released.status, released.released_subscription, released.released_at) == ("released", sub.id, T0)
    assert client.v1.subscriptions.retrieve(sub.id).schedule is None
    with pytest.raises(stripe.InvalidRequestError):
        client.v1.subscription_schedules.cancel(sched.id)
    with pytest.raises(stripe.InvalidRequestError):
        client.v1.subscription_schedules.update(sched.id, params={"metadata": {"k": "v"}})
    sched2 = client.v1.subscription_schedules.create(params={"from_subscription": sub.id})
    canceled = client.v1.subscription_schedules.cancel(sched2.id, params={"invoice_now": False, "prorate": False})
    assert (canceled.status, canceled.canceled_at) == ("canceled", T0)
    assert client.v1.subscriptions.retrieve(sub.id).status == "canceled"
    assert "subscription_schedule.canceled" in _schedule_events(client, sched2.id, sub.id)


def test_canceling_the_subscription_cancels_its_schedule(client: stripe.StripeClient) -> None:
    _, cus, _ = _clock_customer(client)
    sub = client.v1.subscriptions.create(params={"customer": cus.id, "items": [{"price": _price(client).id}]})
    sched = client.v1.subscription_schedules.create(params={"from_subscription": sub.id})
    client.v1.subscriptions.cancel(sub.id)
    assert client.v1.subscription_schedules.retrieve(sched.id).status == "canceled"


def test_updating_the_current_phase_items_updates_the_subscription_now(client: stripe.StripeClient) -> None:
    _, cus, _ = _clock_customer(client)
    price = _price(client, amount=1000)
    sub = client.v1.subscriptions.create(params={"customer": cus.id, "items": [{"price": price.id}]})
    sched = client.v1.subscription_schedules.create(params={"from_subscription": sub.id})
    client.v1.subscription_schedules.update(sched.id, params={"proration_behavior": "none", "phases": [
        {"items": [{"price": price.id, "quantity": 3}], "start_date": sched.phases[0].start_date,
         "end_date": sched.phases[0].end_date}]})
    assert client.v1.subscriptions.retrieve(sub.id)["items"].data[0].quantity == 3
    with pytest.raises(stripe.InvalidRequestError) as exc:
        client.v1.subscription_schedules.update(sched.id, params={"phases": [
            {"items": [{"price": price.id}], "start_date": sched.phases[0].start_date + 1}]})
    assert exc.value.param == "phases[0][start_date]"


def test_refused_schedules(client: stripe.StripeClient) -> None:
    _, cus, _ = _clock_customer(client)
    one_time = client.v1.prices.create(params={"product": client.v1.products.create(params={"name": "x"}).id,
                                              "currency": "usd", "unit_amount": 100})
    with pytest.raises(stripe.InvalidRequestError) as exc:
        client.v1.subscription_schedules.create(params={"customer": cus.id, "phases": [{"items": [{"price": one_time.id}]}]})
    assert exc.value.param == "phases[0][items][0][price]"
    with pytest.raises(stripe.InvalidRequestError) as exc:
        client.v1.subscription_schedules.create(params={"customer": cus.id})
    assert exc.value.code == "parameter_missing"
    with pytest.raises(stripe.InvalidRequestError) as exc:
        client.v1.subscription_schedules.create(params={"from_subscription": "sub_missing"})
    assert exc.value.code == "resource_missing"
    with pytest.raises(stripe.InvalidRequestError) as exc:
        client.v1.subscription_schedules.retrieve("sub_sched_missing")
    assert exc.value.http_status == 404
    assert client.v1.subscription_schedules.list(params={"customer": cus.id}).data == []


def test_dunning_cancellation_aborts_the_schedule(client: stripe.StripeClient) -> None:
    clock, cus, _ = _clock_customer(client)
    price = _price(client, amount=2500)
    sub = client.v1.subscriptions.create(params={"customer": cus.id, "items": [{"price": price.id}]})
    end = sub["items"].data[0].current_period_end
    sched = client.v1.subscription_schedules.create(params={"from_subscription": sub.id})
    client.v1.subscription_schedules.update(sched.id, params={"phases": [
        {"items": [{"price": price.id}], "start_date": sched.phases[0].start_date, "end_date": end},
        {"items": [{"price": price.id}], "duration": {"interval": "month", "interval_count": 3}}]})
    failing = client.v1.payment_methods.attach("pm_card_chargeCustomerFail", params={"customer": cus.id})
    client.v1.customers.update(cus.id, params={"invoice_settings": {"default_payment_method": failing.id}})
    _advance(client, clock, end + 3600 + 7 * DAY + 60)  # renewal fails, retries run out: canceled
    assert client.v1.subscriptions.retrieve(sub.id).status == "canceled"
    sched = client.v1.subscription_schedules.retrieve(sched.id)
    assert (sched.status, sched.canceled_at) == ("canceled", end + 3600 + 7 * DAY)
    types = [t for t in _schedule_events(client, sched.id, sub.id) if t.startswith("subscription_schedule.")]
    assert types[-2:] == ["subscription_schedule.canceled", "subscription_schedule.aborted"]
