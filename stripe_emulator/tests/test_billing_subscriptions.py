"""Subscriptions through test clocks: renewals, failed renewals and recovery, dunning, trials, prorations."""
from __future__ import annotations

import re
import urllib.parse
from typing import Any

import pytest
import stripe

from .conftest import http
from .shape_makers_billing import _price

T0 = 1_800_000_000  # 2027-01-15 08:00:00 UTC
DAY = 86400


def _clock_customer(client: stripe.StripeClient, card: str = "pm_card_visa") -> tuple[Any, Any, Any]:
    clock = client.v1.test_helpers.test_clocks.create(params={"frozen_time": T0, "name": "billing test"})
    cus = client.v1.customers.create(params={"email": "clock@example.com", "test_clock": clock.id})
    pm = client.v1.payment_methods.attach(card, params={"customer": cus.id})
    client.v1.customers.update(cus.id, params={"invoice_settings": {"default_payment_method": pm.id}})
    return clock, cus, pm


def _advance(client: stripe.StripeClient, clock: Any, to: int) -> None:
    answer = client.v1.test_helpers.test_clocks.advance(clock.id, params={"frozen_time": to})
    assert answer.status == "advancing"
    after = client.v1.test_helpers.test_clocks.retrieve(clock.id)
    assert (after.status, after.frozen_time) == ("ready", to)


def _event_types(client: stripe.StripeClient, *ids: str) -> list[str]:
    out = []
    for ev in client.v1.events.list(params={"limit": 100}).data:
        o = ev.data.object.to_dict()
        parent_sub = ((o.get("parent") or {}).get("subscription_details") or {}).get("subscription")
        if {o.get("id"), o.get("customer"), parent_sub, o.get("subscription")} & set(ids):
            out.append(ev.type)
    return list(reversed(out))


def _form_post(url: str, fields: dict[str, str]) -> tuple[int, dict[str, str], str]:
    status, headers, body = http("POST", url, urllib.parse.urlencode(fields).encode(),
                                 {"Content-Type": "application/x-www-form-urlencoded"})
    return status, headers, body.decode()


def test_subscription_renews_through_a_test_clock(client: stripe.StripeClient) -> None:
    clock, cus, _ = _clock_customer(client)
    price = _price(client, amount=2000)
    sub = client.v1.subscriptions.create(params={"customer": cus.id, "items": [{"price": price.id, "quantity": 3}]})
    item = sub["items"].data[0]
    assert sub.status == "active" and sub.start_date == T0 and sub.test_clock == clock.id
    assert (item.current_period_start, item.current_period_end) == (T0, 1802678400)  # 2027-02-15 08:00
    first = client.v1.invoices.retrieve(sub.latest_invoice)
    assert (first.status, first.amount_paid, first.billing_reason, first.created) == ("paid", 6000, "subscription_create", T0)
    assert first.parent.subscription_details.subscription == sub.id and first.subscription == sub.id
    assert first.lines.data[0].description.startswith("3 × Shape plan")

    end = item.current_period_end
    _advance(client, clock, end + 30)  # inside Stripe's one-hour draft window
    draft = client.v1.invoices.retrieve(client.v1.subscriptions.retrieve(sub.id).latest_invoice)
    assert (draft.status, draft.billing_reason, draft.automatically_finalizes_at) == ("draft", "subscription_cycle", end + 3600)
    _advance(client, clock, end + 2 * 3600)
    renewed = client.v1.subscriptions.retrieve(sub.id)
    ritem = renewed["items"].data[0]
    assert renewed.status == "active" and renewed.latest_invoice == draft.id
    assert (ritem.current_period_start, ritem.current_period_end) == (end, 1805097600)  # 2027-03-15 08:00
    inv = client.v1.invoices.retrieve(draft.id, params={"expand": ["payments"]})
    assert (inv.status, inv.amount_paid, inv.attempt_count) == ("paid", 6000, 1)
    assert inv.lines.data[0].period.start == end and inv.lines.data[0].period.end == ritem.current_period_end
    assert inv.status_transitions.paid_at == end + 3600
    assert inv.number.endswith("-0002")
    pi = client.v1.payment_intents.retrieve(inv.payments.data[0].payment.payment_intent)
    assert (pi.status, pi.amount, pi.customer) == ("succeeded", 6000, cus.id)
    types = _event_types(client, sub.id, inv.id)
    renewal = types[types.index("invoice.upcoming"):]
    assert renewal[:5] == ["invoice.upcoming", "customer.subscription.updated", "invoice.created",
                           "invoice.finalized", "invoice.paid"]
    assert renewal[-1] == "invoice.payment_succeeded"
    upcoming = [e for e in client.v1.events.list(params={"type": "invoice.upcoming", "limit": 100}).data
                if e.data.object.parent.subscription_details.subscription == sub.id]
    assert len(upcoming) == 1 and upcoming[0].created == end - 7 * DAY
    assert upcoming[0].data.object.id is None and upcoming[0].data.object.total == 6000
    assert upcoming[0].data.object.next_payment_attempt == end
    clock_events = [e for e in client.v1.events.list(params={"limit": 100}).data
                    if e.type.startswith("test_helpers.test_clock.") and e.data.object.id == clock.id]
    assert [e.type for e in clock_events][:2] == ["test_helpers.test_clock.ready", "test_helpers.test_clock.advancing"]


def test_failed_renewal_goes_past_due_and_recovers_when_the_card_is_updated_in_the_portal(
        client: stripe.StripeClient, emulator: Any) -> None:
    clock, cus, _ = _clock_customer(client)
    price = _price(client, amount=1500)
    sub = client.v1.subscriptions.create(params={"customer": cus.id, "items": [{"price": price.id}]})
    end = sub["items"].data[0].current_period_end
    failing = client.v1.payment_methods.attach("pm_card_chargeCustomerFail", params={"customer": cus.id})
    client.v1.customers.update(cus.id, params={"invoice_settings": {"default_payment_method": failing.id}})

    _advance(client, clock, end + 2 * 3600)
    sub = client.v1.subscriptions.retrieve(sub.id)
    inv = client.v1.invoices.retrieve(sub.latest_invoice)
    assert sub.status == "past_due"
    assert (inv.status, inv.attempt_count, inv.amount_remaining) == ("open", 1, 1500)
    assert inv.next_payment_attempt == end + 3600 + 3 * DAY
    assert "invoice.payment_failed" in _event_types(client, inv.id)

    # one scheduled retry fails too
    _advance(client, clock, end + 3600 + 3 * DAY + 60)
    inv = client.v1.invoices.retrieve(inv.id)
    assert inv.attempt_count == 2 and inv.next_payment_attempt == end + 3600 + 5 * DAY

    portal = client.v1.billing_portal.sessions.create(params={"customer": cus.id, "return_url": "https://app.example/account"})
    status, _, html = http("GET", portal.url)
    assert status == 200 and "Your last payment failed" in html.decode()
    status, headers, _ = _form_post(f"{emulator.url}/_emulator/portal/{portal.id}/update_payment_method",
                                    {"card_number": "4242 4242 4242 4242", "card_expiry": "12 / 34"})
    assert status == 303 and "notice=" in headers["location"]
    sub = client.v1.subscriptions.retrieve(sub.id)
    inv = client.v1.invoices.retrieve(inv.id)
    cus = client.v1.customers.retrieve(cus.id)
    assert sub.status == "active"
    assert (inv.status, inv.attempt_count, inv.amount_paid, inv.next_payment_attempt) == ("paid", 3, 1500, None)
    new_pm = client.v1.payment_methods.retrieve(cus.invoice_settings.default_payment_method)
    assert new_pm.card.last4 == "4242" and new_pm.customer == cus.id
    types = _event_types(client, sub.id)
    assert types[-1] == "customer.subscription.updated"  # past_due -> active, after invoice.paid


@pytest.mark.parametrize("after_final_failure, final_status", [("cancel", "canceled"), ("unpaid", "unpaid")])
def test_dunning_ends_canceled_or_unpaid(client: stripe.StripeClient, emulator: Any, after_final_failure: str,
                                         final_status: str) -> None:
    emulator.control("POST", "/_emulator/billing_settings", {"after_final_failure": after_final_failure})
    try:
        clock, cus, _ = _clock_customer(client)
        sub = client.v1.subscriptions.create(params={"customer": cus.id, "items": [{"price": _price(client).id}]})
        end = sub["items"].data[0].current_period_end
        failing = client.v1.payment_methods.attach("pm_card_chargeCustomerFail", params={"customer": cus.id})
        client.v1.customers.update(cus.id, params={"invoice_settings": {"default_payment_method": failing.id}})
        _advance(client, clock, end + 3600 + 7 * DAY + 60)
        sub = client.v1.subscriptions.retrieve(sub.id)
        inv = client.v1.invoices.retrieve(sub.latest_invoice)
        assert sub.status == final_status
        assert (inv.status, inv.attempt_count, inv.next_payment_attempt) == ("open", 4, None)
        failures = [t for t in _event_types(client, inv.id) if t == "invoice.payment_failed"]
        assert len(failures) == 4
        if final_status == "canceled":
            assert sub.cancellation_details.reason == "payment_failed" and sub.ended_at == end + 3600 + 7 * DAY
            assert "customer.subscription.deleted" in _event_types(client, sub.id)
    finally:
        emulator.control("POST", "/_emulator/billing_settings", {"after_final_failure": "cancel"})


def test_trial_will_end_then_trial_ends_and_first_invoice_is_paid(client: stripe.StripeClient) -> None:
    clock, cus, _ = _clock_customer(client)
    price = _price(client, amount=3000)
    sub = client.v1.subscriptions.create(params={"customer": cus.id, "items": [{"price": price.id}],
                                                 "trial_period_days": 10})
    assert sub.status == "trialing" and sub.trial_end == T0 + 10 * DAY
    assert client.v1.invoices.retrieve(sub.latest_invoice).total == 0
    _advance(client, clock, T0 + 7 * DAY + 10)
    assert "customer.subscription.trial_will_end" in _event_types(client, sub.id)
    assert client.v1.subscriptions.retrieve(sub.id).status == "trialing"
    _advance(client, clock, T0 + 10 * DAY + 2 * 3600)
    sub = client.v1.subscriptions.retrieve(sub.id)
    item = sub["items"].data[0]
    assert sub.status == "active" and item.current_period_start == T0 + 10 * DAY
    inv = client.v1.invoices.retrieve(sub.latest_invoice)
    assert (inv.status, inv.amount_paid, inv.billing_reason) == ("paid", 3000, "subscription_cycle")
    types = _event_types(client, sub.id)
    assert types.count("customer.subscription.trial_will_end") == 1


def test_upgrade_preview_equals_the_invoiced_proration(client: stripe.StripeClient) -> None:
    clock, cus, _ = _clock_customer(client)
    basic, pro = _price(client, amount=2000), _price(client, amount=5000)
    sub = client.v1.subscriptions.create(params={"customer": cus.id, "items": [{"price": basic.id}]})
    item = sub["items"].data[0]
    start, end = item.current_period_start, item.current_period_end
    when = T0 + 10 * DAY + 1234
    _advance(client, clock, when)
    details = {"items": [{"id": item.id, "price": pro.id}], "proration_date": when,
               "proration_behavior": "always_invoice"}
    preview = client.v1.invoices.create_preview(params={"subscription": sub.id, "subscription_details": details})
    remaining, length = end - when, end - start
    credit = -((2 * 2000 * remaining + length) // (2 * length))
    debit = (2 * 5000 * remaining + length) // (2 * length)
    proration = [ln.amount for ln in preview.lines.data if ln.parent.subscription_item_details.proration]
    assert proration == [credit, debit]
    assert preview.total == credit + debit

    updated = client.v1.subscriptions.update(sub.id, params={"items": [{"id": item.id, "price": pro.id}],
                                                            "proration_date": when, "proration_behavior": "always_invoice"})
    assert updated["items"].data[0].price.id == pro.id
    inv = client.v1.invoices.retrieve(updated.latest_invoice)
    assert inv.billing_reason == "subscription_update"
    assert (inv.total, inv.amount_paid, inv.status) == (preview.total, preview.total, "paid")
    assert [ln.amount for ln in inv.lines.data] == proration
    assert inv.lines.data[0].description.startswith("Unused time on Shape plan after ")


def test_create_prorations_are_billed_on_the_next_renewal(client: stripe.StripeClient) -> None:
    clock, cus, _ = _clock_customer(client)
    price = _price(client, amount=1000)
    sub = client.v1.subscriptions.create(params={"customer": cus.id, "items": [{"price": price.id, "quantity": 1}]})
    item = sub["items"].data[0]
    half = T0 + (item.current_period_end - T0) // 2
    _advance(client, clock, half)
    preview = client.v1.invoices.create_preview(params={
        "subscription": sub.id, "subscription_details": {"items": [{"id": item.id, "quantity": 3}], "proration_date": half}})
    client.v1.subscriptions.update(sub.id, params={"items": [{"id": item.id, "quantity": 3}], "proration_date": half})
    pending = client.v1.invoice_items.list(params={"customer": cus.id, "pending": True}).data
    assert sorted(ii.amount for ii in pending) == [-500, 1500] and all(ii.proration for ii in pending)
    assert client.v1.subscriptions.retrieve(sub.id).latest_invoice == sub.latest_invoice  # nothing invoiced now
    _advance(client, clock, item.current_period_end + 2 * 3600)
    inv = client.v1.invoices.retrieve(client.v1.subscriptions.retrieve(sub.id).latest_invoice)
    assert sorted(ln.amount for ln in inv.lines.data) == [-500, 1500, 3000]
    assert inv.total == 4000 == preview.total and inv.status == "paid"


def test_cancel_at_period_end_then_resume_then_cancel_for_real(client: stripe.StripeClient) -> None:
    clock, cus, _ = _clock_customer(client)
    sub = client.v1.subscriptions.create(params={"customer": cus.id, "items": [{"price": _price(client).id}]})
    end = sub["items"].data[0].current_period_end
    sub = client.v1.subscriptions.update(sub.id, params={"cancel_at_period_end": True})
    assert (sub.cancel_at_period_end, sub.cancel_at, sub.canceled_at) == (True, end, T0)
    assert sub.cancellation_details.reason == "cancellation_requested" and sub.status == "active"
    sub = client.v1.subscriptions.update(sub.id, params={"cancel_at_period_end": False})
    assert (sub.cancel_at_period_end, sub.cancel_at, sub.canceled_at) == (False, None, None)
    client.v1.subscriptions.update(sub.id, params={"cancel_at_period_end": True})
    _advance(client, clock, end + DAY)
    sub = client.v1.subscriptions.retrieve(sub.id)
    assert (sub.status, sub.ended_at) == ("canceled", end)
    assert len(client.v1.invoices.list(params={"subscription": sub.id}).data) == 1  # no renewal invoice
    types = _event_types(client, sub.id)
    assert types[-1] == "customer.subscription.deleted"
    assert client.v1.subscriptions.list(params={"customer": cus.id}).data == []
    assert [s.id for s in client.v1.subscriptions.list(params={"customer": cus.id, "status": "canceled"}).data] == [sub.id]


def test_cancel_now_and_errors(client: stripe.StripeClient) -> None:
    clock, cus, _ = _clock_customer(client)
    sub = client.v1.subscriptions.create(params={"customer": cus.id, "items": [{"price": _price(client).id}],
                                                 "metadata": {"team_id": "sub-cancel-now"}})
    found = client.v1.subscriptions.search(params={"query": "metadata['team_id']:'sub-cancel-now'"})
    assert [s.id for s in found.data] == [sub.id]
    canceled = client.v1.subscriptions.cancel(sub.id)
    assert (canceled.status, canceled.canceled_at, canceled.ended_at) == ("canceled", T0, T0)
    with pytest.raises(stripe.InvalidRequestError) as exc:
        client.v1.subscriptions.update(sub.id, params={"cancel_at_period_end": True})
    assert "canceled subscription can only update" in exc.value.user_message
    assert client.v1.subscriptions.update(sub.id, params={"metadata": {"x": "1"}}).metadata["x"] == "1"
    with pytest.raises(stripe.InvalidRequestError) as exc:
        client.v1.subscriptions.create(params={"customer": cus.id, "items": [{"price": _price(client, recurring=False).id}]})
    assert "type=recurring" in exc.value.user_message
    with pytest.raises(stripe.InvalidRequestError) as exc:
        client.v1.subscriptions.create(params={"customer": "cus_nope", "items": [{"price": _price(client).id}]})
    assert exc.value.code == "resource_missing" and exc.value.param == "customer"


def test_error_if_incomplete_declines_without_creating_anything(client: stripe.StripeClient) -> None:
    cus = client.v1.customers.create(params={"email": "declined@example.com"})
    pm = client.v1.payment_methods.attach("pm_card_chargeCustomerFail", params={"customer": cus.id})
    with pytest.raises(stripe.CardError) as exc:
        client.v1.subscriptions.create(params={"customer": cus.id, "items": [{"price": _price(client).id}],
                                               "default_payment_method": pm.id, "payment_behavior": "error_if_incomplete"})
    assert exc.value.code == "card_declined"
    assert client.v1.subscriptions.list(params={"customer": cus.id, "status": "all"}).data == []
    sub = client.v1.subscriptions.create(params={"customer": cus.id, "items": [{"price": _price(client).id}],
                                                 "default_payment_method": pm.id})
    inv = client.v1.invoices.retrieve(sub.latest_invoice)
    assert sub.status == "incomplete" and (inv.status, inv.attempt_count) == ("open", 1)


def test_default_incomplete_waits_for_the_client_to_confirm(client: stripe.StripeClient) -> None:
    cus = client.v1.customers.create(params={"email": "elements@example.com"})
    sub = client.v1.subscriptions.create(params={
        "customer": cus.id, "items": [{"price": _price(client, amount=2500).id}], "payment_behavior": "default_incomplete",
        "expand": ["latest_invoice.payments"]})
    assert sub.status == "incomplete"
    inv = sub.latest_invoice
    assert (inv.status, inv.amount_due) == ("open", 2500)
    pi_id = inv.payments.data[0].payment.payment_intent
    pi = client.v1.payment_intents.retrieve(pi_id)
    assert (pi.status, pi.amount) == ("requires_payment_method", 2500) and pi.client_secret
    client.v1.payment_intents.confirm(pi_id, params={"payment_method": "pm_card_visa"})
    assert client.v1.invoices.retrieve(inv.id).status == "paid"
    assert client.v1.subscriptions.retrieve(sub.id).status == "active"


def test_deleting_a_test_clock_deletes_its_customers_and_cancels_subscriptions(client: stripe.StripeClient) -> None:
    clock, cus, _ = _clock_customer(client)
    sub = client.v1.subscriptions.create(params={"customer": cus.id, "items": [{"price": _price(client).id}]})
    deleted = client.v1.test_helpers.test_clocks.delete(clock.id)
    assert deleted.deleted is True
    assert client.v1.customers.retrieve(cus.id).deleted is True
    assert client.v1.subscriptions.retrieve(sub.id).status == "canceled"
    with pytest.raises(stripe.InvalidRequestError):
        client.v1.test_helpers.test_clocks.advance(clock.id, params={"frozen_time": T0 + DAY})


def test_clock_cannot_go_back(client: stripe.StripeClient) -> None:
    clock, _, _ = _clock_customer(client)
    with pytest.raises(stripe.InvalidRequestError) as exc:
        client.v1.test_helpers.test_clocks.advance(clock.id, params={"frozen_time": T0 - 1})
    assert exc.value.param == "frozen_time"


def test_portal_plan_change_with_proration_and_cancel_then_renew(client: stripe.StripeClient, emulator: Any) -> None:
    clock, cus, card = _clock_customer(client)
    basic, pro = _price(client, amount=1000), _price(client, amount=4000)
    sub = client.v1.subscriptions.create(params={"customer": cus.id, "items": [{"price": basic.id}]})
    item = sub["items"].data[0]
    conf = client.v1.billing_portal.configurations.create(params={
        "business_profile": {"headline": "Acme billing"},
        "features": {
            "subscription_update": {"enabled": True, "default_allowed_updates": ["price"],
                                    "proration_behavior": "always_invoice",
                                    "products": [{"product": basic.product, "prices": [basic.id]},
                                                 {"product": pro.product, "prices": [pro.id]}]},
            "subscription_cancel": {"enabled": True, "mode": "at_period_end"},
            "payment_method_update": {"enabled": True}, "invoice_history": {"enabled": True}}})
    when = T0 + 15 * DAY
    _advance(client, clock, when)
    portal = client.v1.billing_portal.sessions.create(params={
        "customer": cus.id, "configuration": conf.id, "return_url": "https://app.example/account"})
    assert portal.url.endswith(portal.id)
    status, _, body = http("GET", portal.url)
    html = body.decode()
    assert status == 200 and "Acme billing" in html and f"value='{pro.id}'" in html
    assert "https://app.example/account" in html
    action = re.search(r"action='(/_emulator/portal/[^']+/update_plan)'", html)
    assert action
    status, headers, _ = _form_post(emulator.url + action.group(1), {"subscription": sub.id, "price": pro.id})
    assert status == 303
    sub = client.v1.subscriptions.retrieve(sub.id)
    assert sub["items"].data[0].price.id == pro.id
    inv = client.v1.invoices.retrieve(sub.latest_invoice)
    remaining, length = item.current_period_end - when, item.current_period_end - T0
    expected = -((2 * 1000 * remaining + length) // (2 * length)) + (2 * 4000 * remaining + length) // (2 * length)
    assert (inv.billing_reason, inv.total, inv.status) == ("subscription_update", expected, "paid")
    assert all(ln.parent.subscription_item_details.proration for ln in inv.lines.data)

    _form_post(f"{emulator.url}/_emulator/portal/{portal.id}/cancel", {"subscription": sub.id})
    sub = client.v1.subscriptions.retrieve(sub.id)
    assert sub.cancel_at_period_end is True and sub.status == "active"
    status, _, body = http("GET", portal.url)
    assert "will be canceled on" in body.decode()
    _form_post(f"{emulator.url}/_emulator/portal/{portal.id}/renew", {"subscription": sub.id})
    assert client.v1.subscriptions.retrieve(sub.id).cancel_at_period_end is False

    # a refused card is shown on the page and changes nothing
    status, _, html = _form_post(f"{emulator.url}/_emulator/portal/{portal.id}/update_payment_method",
                                 {"card_number": "4000000000000002", "card_expiry": "12/34"})
    assert status == 402 and "Your card was declined." in html
    assert client.v1.customers.retrieve(cus.id).invoice_settings.default_payment_method == card.id


def test_switching_to_a_yearly_price_restarts_the_cycle_and_credits_unused_time(client: stripe.StripeClient) -> None:
    clock, cus, _ = _clock_customer(client)
    monthly = _price(client, amount=1000)
    yearly = client.v1.prices.create(params={"product": monthly.product, "currency": "usd", "unit_amount": 10000,
                                             "recurring": {"interval": "year"}})
    sub = client.v1.subscriptions.create(params={"customer": cus.id, "items": [{"price": monthly.id}]})
    item = sub["items"].data[0]
    when = T0 + 10 * DAY
    _advance(client, clock, when)
    preview = client.v1.invoices.create_preview(params={"subscription": sub.id, "subscription_details": {
        "items": [{"id": item.id, "price": yearly.id}], "proration_date": when}})
    sub = client.v1.subscriptions.update(sub.id, params={"items": [{"id": item.id, "price": yearly.id}],
                                                         "proration_date": when})
    new_item = sub["items"].data[0]
    assert (sub.billing_cycle_anchor, new_item.current_period_start) == (when, when)
    assert new_item.current_period_end == 1831536000 + 10 * DAY  # one year after the switch
    inv = client.v1.invoices.retrieve(sub.latest_invoice)
    remaining, length = item.current_period_end - when, item.current_period_end - T0
    credit = -((2 * 1000 * remaining + length) // (2 * length))
    assert sorted(ln.amount for ln in inv.lines.data) == sorted([credit, 10000])
    assert (inv.status, inv.amount_paid) == ("paid", 10000 + credit)
    assert preview.total == inv.total


def test_cancel_at_a_future_date(client: stripe.StripeClient) -> None:
    clock, cus, _ = _clock_customer(client)
    sub = client.v1.subscriptions.create(params={"customer": cus.id, "items": [{"price": _price(client).id}],
                                                 "cancel_at": T0 + 5 * DAY})
    assert (sub.cancel_at, sub.cancel_at_period_end, sub.status) == (T0 + 5 * DAY, False, "active")
    _advance(client, clock, T0 + 6 * DAY)
    sub = client.v1.subscriptions.retrieve(sub.id)
    assert (sub.status, sub.ended_at) == ("canceled", T0 + 5 * DAY)


def test_refused_updates_change_nothing(client: stripe.StripeClient) -> None:
    clock, cus, _ = _clock_customer(client)
    price, other = _price(client, amount=1000), _price(client, amount=3000)
    sub = client.v1.subscriptions.create(params={"customer": cus.id, "items": [{"price": price.id}]})
    item = sub["items"].data[0]
    stranger = client.v1.customers.create()
    foreign = client.v1.payment_methods.attach("pm_card_visa", params={"customer": stranger.id})
    attempts: list[dict[str, Any]] = [
        {"items": [{"id": item.id, "deleted": True}]},
        {"items": [{"id": item.id, "price": other.id}], "default_payment_method": foreign.id},
        {"items": [{"id": item.id, "quantity": 5}], "discounts": [{"coupon": "no_such_coupon"}]},
        {"items": [{"id": "si_missing", "quantity": 2}]},
        {"items": [{"id": item.id, "price": "price_missing"}]},
    ]
    for params in attempts:
        with pytest.raises(stripe.InvalidRequestError):
            client.v1.subscriptions.update(sub.id, params=params)
    after = client.v1.subscriptions.retrieve(sub.id)
    assert [(i.id, i.price.id, i.quantity) for i in after["items"].data] == [(item.id, price.id, 1)]
    assert after.default_payment_method is None and after.discounts == []
    assert client.v1.invoice_items.list(params={"customer": cus.id}).data == []


def test_preview_of_the_next_invoice_from_the_customer_alone(client: stripe.StripeClient) -> None:
    clock, cus, _ = _clock_customer(client)
    price = _price(client, amount=1200)
    sub = client.v1.subscriptions.create(params={"customer": cus.id, "items": [{"price": price.id, "quantity": 2}]})
    client.v1.invoice_items.create(params={"customer": cus.id, "amount": 300, "currency": "usd",
                                           "description": "Extra seat setup"})
    preview = client.v1.invoices.create_preview(params={"customer": cus.id})
    end = sub["items"].data[0].current_period_end
    assert preview.subscription == sub.id and preview.total == 2 * 1200 + 300
    assert sorted(ln.amount for ln in preview.lines.data) == [300, 2400]
    assert [ln.period.start for ln in preview.lines.data if ln.amount == 2400] == [end]
    # a preview changes nothing
    assert client.v1.invoice_items.list(params={"customer": cus.id, "pending": True}).data[0].invoice is None
    assert len(client.v1.invoices.list(params={"customer": cus.id}).data) == 1


def test_renewal_with_a_card_needing_authentication_asks_for_action(client: stripe.StripeClient) -> None:
    clock, cus, _ = _clock_customer(client)
    sub = client.v1.subscriptions.create(params={"customer": cus.id, "items": [{"price": _price(client).id}]})
    needs_3ds = client.v1.payment_methods.attach("pm_card_threeDSecure2Required", params={"customer": cus.id})
    client.v1.customers.update(cus.id, params={"invoice_settings": {"default_payment_method": needs_3ds.id}})
    _advance(client, clock, sub["items"].data[0].current_period_end + 2 * 3600)
    sub = client.v1.subscriptions.retrieve(sub.id)
    types = _event_types(client, sub.latest_invoice)
    assert sub.status == "past_due"
    assert types.index("invoice.payment_failed") < types.index("invoice.payment_action_required")


def test_fractional_metered_price_bills_unit_times_quantity_rounded_once(client: stripe.StripeClient) -> None:
    """0.2 cents a call (unit_amount_decimal, also in a currency option) next to a flat price, billed at renewal."""
    clock, cus, _pm = _clock_customer(client)
    prod = client.v1.products.create(params={"name": "Metered plan"})
    meter = client.v1.billing.meters.create(params={
        "display_name": "Calls", "event_name": f"calls_{clock.id}", "default_aggregation": {"formula": "sum"},
        "customer_mapping": {"type": "by_id", "event_payload_key": "stripe_customer_id"},
        "value_settings": {"event_payload_key": "value"},
    })
    flat = client.v1.prices.create(params={"product": prod.id, "currency": "usd", "unit_amount": 9900,
                                           "recurring": {"interval": "month"}})
    metered = client.v1.prices.create(params={
        "product": prod.id, "currency": "usd", "unit_amount_decimal": "0.2",
        "currency_options": {"brl": {"unit_amount_decimal": "1"}},
        "recurring": {"interval": "month", "usage_type": "metered", "meter": meter.id},
    })
    sub = client.v1.subscriptions.create(params={"customer": cus.id, "currency": "usd",
                                                 "items": [{"price": flat.id}, {"price": metered.id}]})
    first = client.v1.invoices.retrieve(sub.latest_invoice)
    assert first.amount_due == 9900  # usage is billed in arrears
    for n, value in enumerate((1000, 499, 1)):
        client.v1.billing.meter_events.create(params={
            "event_name": f"calls_{clock.id}", "identifier": f"{clock.id}-{n}", "timestamp": T0 + 60 + n,
            "payload": {"stripe_customer_id": cus.id, "value": str(value)},
        })
    _advance(client, clock, T0 + 32 * DAY)
    renewal = [i for i in client.v1.invoices.list(params={"customer": cus.id}).data
               if i.billing_reason == "subscription_cycle"]
    assert len(renewal) == 1
    usage = [line for line in renewal[0].lines.data if line.quantity == 1500]
    assert len(usage) == 1 and usage[0].amount == 300  # 1,500 x 0.2 cents; each call alone would round to 0
    assert renewal[0].amount_paid == 9900 + 300
    # The BRL option (1 centavo a call) is accepted by a BRL subscription, which a whole-unit check used to refuse.
    brl = client.v1.subscriptions.create(params={"customer": cus.id, "currency": "brl",
                                                 "items": [{"price": metered.id}]})
    assert brl.currency == "brl"
