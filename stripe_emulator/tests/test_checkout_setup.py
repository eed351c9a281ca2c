"""Checkout Sessions in `setup` mode: save a card for later through the hosted page, charging nothing."""
from __future__ import annotations

import json
from typing import Any

import pytest
import stripe

from .conftest import Receiver, http
from .shapecheck import compare, fixtures
from .test_billing_checkout import _form_post, _page_form


def _setup_session(client: stripe.StripeClient, **extra: Any) -> Any:
    params: dict[str, Any] = {
        "mode": "setup", "payment_method_types": ["card"],
        "success_url": "https://app.example/cards/done/?session_id={CHECKOUT_SESSION_ID}",
        "cancel_url": "https://app.example/cards/cancel/"}
    params.update(extra)
    return client.v1.checkout.sessions.create(params=params)


def _customer(client: stripe.StripeClient, email: str) -> Any:
    return client.v1.customers.create(params={"email": email})


def _own_events(client: stripe.StripeClient, ids: set[str]) -> list[str]:
    """This test's events, oldest first (the emulator is shared by the module's tests)."""
    return [e.type for e in reversed(client.v1.events.list(params={"limit": 100}).data)
            if e.data.object.to_dict().get("id") in ids]


def test_setup_session_shape_matches_stripe_open_and_complete(client: stripe.StripeClient, emulator: Any) -> None:
    cus = _customer(client, "shape@example.com")
    session = _setup_session(client, customer=cus.id)
    assert compare(fixtures()["checkout.session"], session.to_dict()) == []
    assert (session.mode, session.status, session.payment_status) == ("setup", "open", "no_payment_required")
    assert session.amount_total is None and session.amount_subtotal is None and session.total_details is None
    assert session.currency is None and session.customer == cus.id and session.payment_intent is None
    si = client.v1.setup_intents.retrieve(session.setup_intent)
    assert compare(fixtures()["setup_intent"], si.to_dict()) == []
    assert (si.customer, si.usage, si.status, si.payment_method_types) == (
        cus.id, "off_session", "requires_payment_method", ["card"])

    status, _, body = http("GET", session.url)
    html = body.decode()
    assert status == 200 and "Save card" in html and "No charge today" in html and "shape@example.com" in html
    action, fields = _page_form(html)
    status, headers, _ = _form_post(emulator.url + action, fields)
    assert status == 303 and headers["location"] == f"https://app.example/cards/done/?session_id={session.id}"

    done = client.v1.checkout.sessions.retrieve(session.id)
    assert compare(fixtures()["checkout.session"], done.to_dict()) == []
    assert (done.status, done.payment_status, done.url, done.amount_total) == (
        "complete", "no_payment_required", None, None)
    assert done.customer_details.email == "shape@example.com"
    si = client.v1.setup_intents.retrieve(session.setup_intent, params={"expand": ["payment_method"]})
    assert si.status == "succeeded" and si.payment_method.customer == cus.id
    assert si.payment_method.card.last4 == "4242"
    # The card is saved, not made the customer's default (Checkout leaves that to the integration).
    assert client.v1.customers.retrieve(cus.id).invoice_settings.default_payment_method is None
    assert [pm.id for pm in client.v1.customers.payment_methods.list(cus.id).data] == [si.payment_method.id]


def test_setup_params_currency_metadata_and_setup_intent_data(client: stripe.StripeClient) -> None:
    cus = _customer(client, "params@example.com")
    # Currency is optional when payment_method_types is given, and kept (lower case) when passed.
    with_currency = client.v1.checkout.sessions.create(params={
        "mode": "setup", "currency": "BRL", "customer": cus.id, "success_url": "https://app.example/ok",
        "metadata": {"team_id": "7", "kind": "card_setup"}, "client_reference_id": "7", "locale": "pt-BR",
        "setup_intent_data": {"metadata": {"team_id": "7"}, "description": "Card for team 7"}})
    assert with_currency.currency == "brl" and with_currency.payment_method_types == ["card"]
    assert with_currency.metadata.to_dict() == {"team_id": "7", "kind": "card_setup"}
    assert with_currency.client_reference_id == "7" and with_currency.locale == "pt-BR"
    si = client.v1.setup_intents.retrieve(with_currency.setup_intent)
    assert si.metadata.to_dict() == {"team_id": "7"} and si.description == "Card for team 7"
    # Expanding the SetupIntent (and its payment method) works like any expandable id.
    expanded = client.v1.checkout.sessions.retrieve(with_currency.id, params={"expand": ["setup_intent"]})
    assert expanded.setup_intent.id == si.id


@pytest.mark.parametrize(("params", "message", "param"), [
    ({}, "Missing required param: currency.", "currency"),
    ({"currency": "usd", "line_items": [{"price": "price_x", "quantity": 1}]},
     "You can not pass `line_items` in `setup` mode.", "line_items"),
    ({"currency": "usd", "payment_intent_data": {"description": "x"}},
     "You can not pass `payment_intent_data` in `setup` mode.", "payment_intent_data"),
    ({"currency": "usd", "subscription_data": {"description": "x"}},
     "You can not pass `subscription_data` in `setup` mode.", "subscription_data"),
    ({"payment_method_types": ["pix"], "currency": "brl"},
     "Boleto and Pix are emulated in Checkout's `payment` mode only.", "payment_method_types"),
    ({"currency": "usd", "customer": "cus_missing"}, "No such customer: 'cus_missing'", "customer"),
])
def test_setup_session_errors(client: stripe.StripeClient, params: dict, message: str, param: str) -> None:
    with pytest.raises(stripe.InvalidRequestError) as exc:
        client.v1.checkout.sessions.create(params={"mode": "setup", "success_url": "https://x.example", **params})
    assert exc.value.user_message == message and exc.value.param == param


def test_setup_intent_data_is_refused_in_payment_mode(client: stripe.StripeClient) -> None:
    price = client.v1.prices.create(params={"currency": "usd", "unit_amount": 500, "product_data": {"name": "P"}})
    with pytest.raises(stripe.InvalidRequestError) as exc:
        client.v1.checkout.sessions.create(params={
            "mode": "payment", "line_items": [{"price": price.id, "quantity": 1}], "success_url": "https://x.example",
            "setup_intent_data": {"metadata": {"a": "b"}}})
    assert exc.value.param == "setup_intent_data"
    with pytest.raises(stripe.InvalidRequestError) as exc:  # the SDK's TypedDict names every param
        client.v1.checkout.sessions.create(params={"mode": "setup", "currency": "usd", "success_url": "https://x",
                                                   "setup_intent_data": {"usage": "on_session"}})
    assert exc.value.code == "parameter_unknown"


def test_events_are_emitted_in_order_and_delivered(fresh_emulator: Any, fresh_client: stripe.StripeClient,
                                                   receiver: Receiver) -> None:
    types = ["setup_intent.created", "setup_intent.succeeded", "payment_method.attached", "checkout.session.completed"]
    ep = fresh_client.v1.webhook_endpoints.create(params={"url": receiver.url, "enabled_events": types})
    cus = _customer(fresh_client, "events@example.com")
    session = _setup_session(fresh_client, customer=cus.id)
    status, _, _ = _form_post(f"{fresh_emulator.url}/_emulator/checkout_sessions/{session.id}/complete",
                              {"card_number": "5555 5555 5555 4444", "name": "Jo Card"})
    assert status == 303
    assert fresh_emulator.wait_for_webhooks()
    delivered = [stripe.Webhook.construct_event(r["body"].decode(), r["signature"], ep.secret)
                 for r in receiver.received]
    # Stripe's order: the card is attached while the SetupIntent succeeds, the session completes last.
    assert [e.type for e in delivered] == [
        "setup_intent.created", "payment_method.attached", "setup_intent.succeeded", "checkout.session.completed"]
    completed = delivered[-1].data.object
    assert completed.id == session.id and completed.mode == "setup" and completed.status == "complete"
    assert completed.setup_intent == session.setup_intent and completed.payment_status == "no_payment_required"
    attached = delivered[1].data.object
    assert attached.customer == cus.id and attached.card.brand == "mastercard"
    assert attached.billing_details.name == "Jo Card"


def test_three_d_secure_card_is_saved_after_the_challenge(client: stripe.StripeClient, emulator: Any) -> None:
    cus = _customer(client, "3ds-setup@example.com")
    session = _setup_session(client, customer=cus.id)
    status, headers, _ = _form_post(f"{emulator.url}/_emulator/checkout_sessions/{session.id}/complete",
                                    {"card_number": "4000 0025 0000 3155"})
    assert status == 303 and headers["location"].endswith(f"/_emulator/3ds/{session.setup_intent}")
    assert client.v1.checkout.sessions.retrieve(session.id).status == "open"
    assert client.v1.setup_intents.retrieve(session.setup_intent).status == "requires_action"
    status, headers, _ = _form_post(headers["location"], {"action": "approve"})
    assert status == 303 and headers["location"] == f"https://app.example/cards/done/?session_id={session.id}"
    assert client.v1.checkout.sessions.retrieve(session.id).status == "complete"
    si = client.v1.setup_intents.retrieve(session.setup_intent, params={"expand": ["payment_method"]})
    assert si.status == "succeeded" and si.payment_method.card.last4 == "3155" and si.payment_method.customer == cus.id
    # Authenticated at setup: an off-session payment later goes through without a new challenge.
    pi = client.v1.payment_intents.create(params={"amount": 700, "currency": "usd", "customer": cus.id,
                                                  "payment_method": si.payment_method.id, "off_session": True,
                                                  "confirm": True})
    assert pi.status == "succeeded"


def test_failed_challenge_and_declined_card_stay_on_the_page(client: stripe.StripeClient, emulator: Any) -> None:
    cus = _customer(client, "refused@example.com")
    session = _setup_session(client, customer=cus.id)
    complete = f"{emulator.url}/_emulator/checkout_sessions/{session.id}/complete"
    status, _, body = _form_post(complete, {"card_number": "4000000000000002"})
    assert status == 402 and "Your card was declined." in body
    si = client.v1.setup_intents.retrieve(session.setup_intent)
    assert si.status == "requires_payment_method" and si.last_setup_error.code == "card_declined"
    status, headers, _ = _form_post(complete, {"card_number": "4000002500003155"})
    status, _, body = _form_post(headers["location"], {"action": "fail"})
    assert status == 402 and "id='checkout-form'" in body
    assert client.v1.checkout.sessions.retrieve(session.id).status == "open"
    assert client.v1.customers.payment_methods.list(cus.id).data == []
    # Another card on the same page then succeeds.
    status, _, _ = _form_post(complete, {"card_number": "4242424242424242"})
    assert status == 303 and client.v1.checkout.sessions.retrieve(session.id).status == "complete"
    assert [pm.card.last4 for pm in client.v1.customers.payment_methods.list(cus.id).data] == ["4242"]
    assert _own_events(client, {session.id, session.setup_intent}) == [
        "setup_intent.created", "setup_intent.setup_failed", "setup_intent.requires_action",
        "setup_intent.setup_failed", "setup_intent.succeeded", "checkout.session.completed"]
    # A completed session cannot be used again.
    status, _, _ = _form_post(complete, {"card_number": "4242424242424242"})
    assert status == 409
    status, _, _ = http("GET", session.url or f"{emulator.url}/_emulator/checkout/{session.id}")
    assert status == 410


def test_expiring_a_setup_session_cancels_its_setup_intent(client: stripe.StripeClient) -> None:
    session = _setup_session(client, customer=_customer(client, "expire@example.com").id)
    expired = client.v1.checkout.sessions.expire(session.id)
    assert expired.status == "expired" and expired.url is None
    assert client.v1.setup_intents.retrieve(session.setup_intent).status == "canceled"
    assert _own_events(client, {session.id, session.setup_intent}) == [
        "setup_intent.created", "setup_intent.canceled", "checkout.session.expired"]


def test_setup_session_without_customer_saves_an_unattached_card(client: stripe.StripeClient, emulator: Any) -> None:
    session = _setup_session(client, customer_email="guest@example.com")
    status, _, _ = _form_post(f"{emulator.url}/_emulator/checkout_sessions/{session.id}/complete",
                              {"card_number": "4242424242424242"})
    assert status == 303
    si = client.v1.setup_intents.retrieve(session.setup_intent, params={"expand": ["payment_method"]})
    assert si.status == "succeeded" and si.customer is None and si.payment_method.customer is None
    done = client.v1.checkout.sessions.retrieve(session.id)
    assert done.customer is None and done.customer_details.email == "guest@example.com"
    json.dumps(done.to_dict())  # JSON-safe, as webhooks carry it
