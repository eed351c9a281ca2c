"""Payment flows through the SDK: 3-D Secure on the hosted page, declines, captures, refunds, disputes."""
from __future__ import annotations

from typing import Any
from urllib.parse import parse_qs, urlencode, urlsplit

import pytest
import stripe

from .conftest import http


def _customer(client: stripe.StripeClient, **kw: Any) -> Any:
    return client.v1.customers.create(params={"email": "payer@example.com", **kw})


def _events_for(client: stripe.StripeClient, object_id: str) -> list[str]:
    evs = client.v1.events.list(params={"limit": 100}).data
    return [e.type for e in reversed(evs) if e.data.object["id"] == object_id]


def test_successful_payment_creates_charge_and_balance_transaction(client: stripe.StripeClient) -> None:
    cus = _customer(client)
    pi = client.v1.payment_intents.create(params={
        "amount": 2500, "currency": "usd", "customer": cus.id, "payment_method": "pm_card_visa", "confirm": True,
        "expand": ["latest_charge.balance_transaction"],
    })
    assert pi.status == "succeeded" and pi.amount_received == 2500
    charge = pi.latest_charge
    assert charge.status == "succeeded" and charge.paid and charge.captured
    assert charge.payment_method_details.card.last4 == "4242"
    bt = charge.balance_transaction
    # 2.9% of 2500 = 72.5 -> 73 (half up) + 30
    assert (bt.amount, bt.fee, bt.net, bt.type) == (2500, 103, 2397, "charge")
    assert bt.fee_details[0].type == "stripe_fee"
    assert _events_for(client, pi.id) == ["payment_intent.created", "payment_intent.succeeded"]
    assert _events_for(client, charge.id) == ["charge.succeeded"]
    status, _, body = http("GET", charge.receipt_url)
    assert status == 200 and b"$25.00" in body


@pytest.mark.parametrize("amount,fee", [(1000, 59), (50, 31), (4990, 175), (100000, 2930)])
def test_card_fee_is_2_9_percent_plus_30(client: stripe.StripeClient, amount: int, fee: int) -> None:
    pi = client.v1.payment_intents.create(params={"amount": amount, "currency": "usd", "payment_method": "pm_card_visa",
                                                  "confirm": True, "expand": ["latest_charge.balance_transaction"]})
    assert pi.latest_charge.balance_transaction.fee == fee
    assert pi.latest_charge.balance_transaction.net == amount - fee


def test_three_d_secure_completed_on_hosted_page(client: stripe.StripeClient) -> None:
    pi = client.v1.payment_intents.create(params={
        "amount": 1999, "currency": "usd", "payment_method": "pm_card_threeDSecure2Required", "confirm": True,
        "return_url": "https://shop.example/return?order=7",
    })
    assert pi.status == "requires_action"
    assert pi.next_action.type == "redirect_to_url"
    url = pi.next_action.redirect_to_url.url
    status, _, page = http("GET", url)
    assert status == 200 and b"approve" in page
    status, headers, _ = http("POST", url, data=urlencode({"action": "approve"}).encode(),
                              headers={"Content-Type": "application/x-www-form-urlencoded"})
    assert status == 303
    location = urlsplit(headers["location"])
    assert location.netloc == "shop.example"
    q = parse_qs(location.query)
    assert q["order"] == ["7"] and q["payment_intent"] == [pi.id] and q["redirect_status"] == ["succeeded"]
    done = client.v1.payment_intents.retrieve(pi.id, params={"expand": ["latest_charge"]})
    assert done.status == "succeeded" and done.next_action is None
    assert done.latest_charge.payment_method_details.card.three_d_secure.result == "authenticated"
    assert _events_for(client, pi.id) == ["payment_intent.created", "payment_intent.requires_action",
                                          "payment_intent.succeeded"]


def test_three_d_secure_failed_on_hosted_page(client: stripe.StripeClient) -> None:
    pi = client.v1.payment_intents.create(params={
        "amount": 1999, "currency": "usd", "payment_method": "pm_card_threeDSecure2Required", "confirm": True,
    })
    assert pi.next_action.type == "use_stripe_sdk"
    url = pi.next_action.use_stripe_sdk["stripe_js"]
    status, _, _ = http("POST", url, data=b"action=fail", headers={"Content-Type": "application/x-www-form-urlencoded"})
    assert status == 200
    failed = client.v1.payment_intents.retrieve(pi.id)
    assert failed.status == "requires_payment_method"
    assert failed.last_payment_error.code == "payment_intent_authentication_failure"
    # A second submission of the challenge is refused: the intent is no longer waiting.
    status, _, _ = http("POST", url, data=b"action=approve", headers={"Content-Type": "application/x-www-form-urlencoded"})
    assert status == 409


def test_three_d_secure_card_off_session_needs_authentication(client: stripe.StripeClient) -> None:
    cus = _customer(client)
    pm = client.v1.payment_methods.attach("pm_card_threeDSecure2Required", params={"customer": cus.id})
    with pytest.raises(stripe.CardError) as exc:
        client.v1.payment_intents.create(params={"amount": 1000, "currency": "usd", "customer": cus.id,
                                                 "payment_method": pm.id, "confirm": True, "off_session": True})
    assert exc.value.code == "authentication_required"
    pi = exc.value.error.payment_intent
    assert pi.status == "requires_payment_method"
    assert pi.last_payment_error.decline_code == "authentication_required"


def test_card_set_up_with_3ds_then_charged_off_session(client: stripe.StripeClient) -> None:
    cus = _customer(client)
    pm = client.v1.payment_methods.create(params={"type": "card", "card": {
        "number": "4000002500003155", "exp_month": 1, "exp_year": 2031, "cvc": "314"}})
    si = client.v1.setup_intents.create(params={"customer": cus.id, "payment_method": pm.id, "confirm": True,
                                                "return_url": "https://shop.example/saved"})
    assert si.status == "requires_action"
    status, headers, _ = http("POST", si.next_action.redirect_to_url.url, data=b"action=approve",
                              headers={"Content-Type": "application/x-www-form-urlencoded"})
    assert status == 303 and "redirect_status=succeeded" in headers["location"]
    si = client.v1.setup_intents.retrieve(si.id)
    assert si.status == "succeeded"
    assert client.v1.payment_methods.retrieve(pm.id).customer == cus.id
    pi = client.v1.payment_intents.create(params={"amount": 1500, "currency": "usd", "customer": cus.id,
                                                 "payment_method": pm.id, "confirm": True, "off_session": True})
    assert pi.status == "succeeded"


@pytest.mark.parametrize("card,decline_code,message", [
    ("4000000000000002", "generic_decline", "Your card was declined."),
    ("4000000000009995", "insufficient_funds", "Your card has insufficient funds."),
])
def test_declined_cards_answer_stripe_codes(client: stripe.StripeClient, card: str, decline_code: str, message: str) -> None:
    pm = client.v1.payment_methods.create(params={"type": "card", "card": {"number": card, "exp_month": 12, "exp_year": 2030}})
    with pytest.raises(stripe.CardError) as exc:
        client.v1.payment_intents.create(params={"amount": 1000, "currency": "usd", "payment_method": pm.id, "confirm": True})
    err = exc.value
    assert err.http_status == 402
    assert (err.code, err.error.decline_code, err.user_message) == ("card_declined", decline_code, message)
    pi = client.v1.payment_intents.retrieve(err.error.payment_intent.id, params={"expand": ["latest_charge"]})
    assert pi.status == "requires_payment_method"
    assert pi.latest_charge.status == "failed" and pi.latest_charge.failure_code == "card_declined"
    assert pi.latest_charge.balance_transaction is None
    assert _events_for(client, pi.id) == ["payment_intent.created", "payment_intent.payment_failed"]
    # The failed charge cannot be refunded.
    with pytest.raises(stripe.InvalidRequestError) as exc2:
        client.v1.refunds.create(params={"charge": pi.latest_charge.id})
    assert exc2.value.code == "charge_not_refundable"


def test_declined_token_retry_with_good_card(client: stripe.StripeClient) -> None:
    pi = client.v1.payment_intents.create(params={"amount": 1000, "currency": "usd"})
    with pytest.raises(stripe.CardError):
        client.v1.payment_intents.confirm(pi.id, params={"payment_method": "pm_card_chargeDeclinedInsufficientFunds"})
    pi = client.v1.payment_intents.confirm(pi.id, params={"payment_method": "pm_card_mastercard"})
    assert pi.status == "succeeded"
    with pytest.raises(stripe.InvalidRequestError) as exc:
        client.v1.payment_intents.confirm(pi.id)
    assert exc.value.code == "payment_intent_unexpected_state"


def test_invalid_card_number_is_rejected(client: stripe.StripeClient) -> None:
    with pytest.raises(stripe.CardError) as exc:
        client.v1.payment_methods.create(params={"type": "card", "card": {"number": "4242424242424241", "exp_month": 1, "exp_year": 2030}})
    assert exc.value.code == "incorrect_number"


def test_partial_then_full_refunds_and_over_refund(client: stripe.StripeClient) -> None:
    pi = client.v1.payment_intents.create(params={"amount": 1000, "currency": "usd", "payment_method": "pm_card_visa", "confirm": True})
    charge_id = pi.latest_charge
    r1 = client.v1.refunds.create(params={"charge": charge_id, "amount": 300, "reason": "requested_by_customer",
                                          "metadata": {"ticket": "T-1"}})
    r2 = client.v1.refunds.create(params={"payment_intent": pi.id, "amount": 200, "reason": "duplicate"})
    assert (r1.status, r1.amount, r1.reason, r1.metadata["ticket"]) == ("succeeded", 300, "requested_by_customer", "T-1")
    charge = client.v1.charges.retrieve(charge_id)
    assert (charge.amount_refunded, charge.refunded) == (500, False)
    with pytest.raises(stripe.InvalidRequestError) as exc:
        client.v1.refunds.create(params={"charge": charge_id, "amount": 501})
    assert exc.value.code == "amount_too_large" and exc.value.param == "amount"
    assert "($5.01) is greater than unrefunded amount on charge ($5.00)" in exc.value.user_message
    r3 = client.v1.refunds.create(params={"charge": charge_id})  # the rest
    assert r3.amount == 500
    charge = client.v1.charges.retrieve(charge_id)
    assert (charge.amount_refunded, charge.refunded) == (1000, True)
    assert sorted(r.id for r in charge.refunds.data) == sorted([r1.id, r2.id, r3.id])
    with pytest.raises(stripe.InvalidRequestError) as exc:
        client.v1.refunds.create(params={"charge": charge_id, "amount": 1})
    assert exc.value.code == "charge_already_refunded"
    bts = [client.v1.balance_transactions.retrieve(r.balance_transaction) for r in (r1, r2, r3)]
    assert [(b.amount, b.fee, b.net, b.type) for b in bts] == [(-300, 0, -300, "refund"), (-200, 0, -200, "refund"), (-500, 0, -500, "refund")]
    assert _events_for(client, charge_id) == ["charge.succeeded", "charge.refunded", "charge.refunded", "charge.refunded"]
    evs = [e for e in reversed(client.v1.events.list(params={"limit": 100}).data)
           if e.type in ("charge.refunded", "refund.created") and (e.data.object.to_dict().get("charge") == charge_id or e.data.object.id == charge_id)]
    assert [e.type for e in evs] == ["charge.refunded", "refund.created"] * 3
    assert evs[0].data.previous_attributes["amount_refunded"] == 0
    listed = client.v1.refunds.list(params={"charge": charge_id})
    assert [r.id for r in listed.data] == [r3.id, r2.id, r1.id]


def test_refund_update_emits_refund_updated(client: stripe.StripeClient) -> None:
    pi = client.v1.payment_intents.create(params={"amount": 1000, "currency": "usd", "payment_method": "pm_card_visa", "confirm": True})
    r = client.v1.refunds.create(params={"payment_intent": pi.id})
    client.v1.refunds.update(r.id, params={"metadata": {"k": "v"}})
    assert _events_for(client, r.id) == ["refund.created", "refund.updated", "charge.refund.updated"]


def test_refund_of_unknown_charge(client: stripe.StripeClient) -> None:
    with pytest.raises(stripe.InvalidRequestError) as exc:
        client.v1.refunds.create(params={"charge": "ch_doesnotexist"})
    assert exc.value.code == "resource_missing" and exc.value.user_message == "No such charge: 'ch_doesnotexist'"


def test_manual_capture_and_cancel(client: stripe.StripeClient) -> None:
    pi = client.v1.payment_intents.create(params={"amount": 3000, "currency": "usd", "payment_method": "pm_card_visa",
                                                  "confirm": True, "capture_method": "manual"})
    assert (pi.status, pi.amount_capturable) == ("requires_capture", 3000)
    pi = client.v1.payment_intents.capture(pi.id, params={"amount_to_capture": 2000, "expand": ["latest_charge"]})
    assert (pi.status, pi.amount_received) == ("succeeded", 2000)
    assert pi.latest_charge.amount_captured == 2000 and pi.latest_charge.balance_transaction
    with pytest.raises(stripe.InvalidRequestError) as exc:
        client.v1.payment_intents.cancel(pi.id)
    assert exc.value.code == "payment_intent_unexpected_state"
    pending = client.v1.payment_intents.create(params={"amount": 3000, "currency": "usd"})
    canceled = client.v1.payment_intents.cancel(pending.id, params={"cancellation_reason": "abandoned"})
    assert (canceled.status, canceled.cancellation_reason) == ("canceled", "abandoned")
    assert _events_for(client, pending.id) == ["payment_intent.created", "payment_intent.canceled"]


def test_amount_below_minimum(client: stripe.StripeClient) -> None:
    with pytest.raises(stripe.InvalidRequestError) as exc:
        client.v1.payment_intents.create(params={"amount": 10, "currency": "usd"})
    assert exc.value.code == "amount_too_small"


def test_dispute_card_creates_dispute_after_success(client: stripe.StripeClient) -> None:
    pi = client.v1.payment_intents.create(params={"amount": 4200, "currency": "usd", "payment_method": "pm_card_createDispute", "confirm": True})
    assert pi.status == "succeeded"
    charge = client.v1.charges.retrieve(pi.latest_charge)
    assert charge.disputed is True
    disputes = client.v1.disputes.list(params={"charge": charge.id}).data
    assert len(disputes) == 1
    dp = disputes[0]
    assert (dp.amount, dp.status, dp.payment_intent) == (4200, "needs_response", pi.id)
    assert (dp.balance_transactions[0].amount, dp.balance_transactions[0].fee) == (-4200, 1500)
    assert "charge.dispute.created" in _events_for(client, dp.id)
    with pytest.raises(stripe.InvalidRequestError) as exc:
        client.v1.refunds.create(params={"charge": charge.id})
    assert exc.value.code == "charge_disputed"
    closed = client.v1.disputes.close(dp.id)
    assert closed.status == "lost"


def test_payment_methods_attach_detach_and_default(client: stripe.StripeClient) -> None:
    cus = _customer(client)
    pm1 = client.v1.payment_methods.attach("pm_card_visa", params={"customer": cus.id})
    pm2 = client.v1.payment_methods.attach("pm_card_mastercard", params={"customer": cus.id})
    assert pm1.id.startswith("pm_") and pm1.id != "pm_card_visa" and pm1.customer == cus.id
    cus = client.v1.customers.update(cus.id, params={"invoice_settings": {"default_payment_method": pm2.id}})
    assert cus.invoice_settings.default_payment_method == pm2.id
    listed = client.v1.customers.payment_methods.list(cus.id)
    assert [p.id for p in listed.data] == [pm2.id, pm1.id]
    assert [p.card.brand for p in listed.data] == ["mastercard", "visa"]
    detached = client.v1.payment_methods.detach(pm2.id)
    assert detached.customer is None
    assert client.v1.customers.retrieve(cus.id).invoice_settings.default_payment_method is None
    assert [p.id for p in client.v1.payment_methods.list(params={"customer": cus.id, "type": "card"}).data] == [pm1.id]
    with pytest.raises(stripe.InvalidRequestError):
        client.v1.customers.update(cus.id, params={"invoice_settings": {"default_payment_method": pm2.id}})


def test_attaching_a_declining_card_fails(client: stripe.StripeClient) -> None:
    cus = _customer(client)
    with pytest.raises(stripe.CardError) as exc:
        client.v1.payment_methods.attach("pm_card_chargeDeclined", params={"customer": cus.id})
    assert exc.value.code == "card_declined"


def test_responses_never_contain_card_number(client: stripe.StripeClient) -> None:
    pm = client.v1.payment_methods.create(params={"type": "card", "card": {"number": "5555555555554444", "exp_month": 3,
                                                                           "exp_year": 2032, "cvc": "737"}})
    text = str(pm)
    assert "5555555555554444" not in text and '"737"' not in text and '"cvc"' not in text
    assert (pm.card.brand, pm.card.last4, pm.card.exp_month, pm.card.exp_year) == ("mastercard", "4444", 3, 2032)


def test_module_level_sdk_lists_a_charges_refunds(client: stripe.StripeClient, emulator: Any) -> None:
    pi = client.v1.payment_intents.create(params={"amount": 1000, "currency": "usd", "payment_method": "pm_card_visa", "confirm": True})
    r1 = client.v1.refunds.create(params={"payment_intent": pi.id, "amount": 100})
    r2 = client.v1.refunds.create(params={"payment_intent": pi.id, "amount": 200})
    previous = stripe.api_base
    stripe.api_base = emulator.url
    try:
        refunds = stripe.Charge.list_refunds(pi.latest_charge, api_key="sk_test_module_level")
        assert [r.id for r in refunds.data] == [r2.id, r1.id]
        assert stripe.Charge.retrieve_refund(pi.latest_charge, r1.id, api_key="sk_test_module_level").amount == 100
    finally:
        stripe.api_base = previous


def test_concurrent_partial_refunds_never_exceed_the_charge(emulator: Any, client: stripe.StripeClient) -> None:
    import threading

    pi = client.v1.payment_intents.create(params={"amount": 1000, "currency": "usd", "payment_method": "pm_card_visa", "confirm": True})
    outcomes: list[str] = []
    lock = threading.Lock()

    def refund() -> None:
        c = stripe.StripeClient("sk_test_concurrent", base_addresses={"api": emulator.url}, max_network_retries=0)
        try:
            c.v1.refunds.create(params={"charge": pi.latest_charge, "amount": 200})
            result = "ok"
        except stripe.InvalidRequestError as exc:
            result = exc.code or "error"
        with lock:
            outcomes.append(result)

    threads = [threading.Thread(target=refund) for _ in range(8)]
    for t in threads:
        t.start()
    for t in threads:
        t.join()
    assert sorted(outcomes) == ["charge_already_refunded"] * 3 + ["ok"] * 5
    charge = client.v1.charges.retrieve(pi.latest_charge)
    assert (charge.amount_refunded, charge.refunded) == (1000, True)


def test_includable_customer_fields_for_dj_stripe(client: stripe.StripeClient) -> None:
    cus = _customer(client)
    got = client.v1.customers.retrieve(cus.id, params={"expand": ["default_source", "sources", "subscriptions", "tax_ids"]})
    assert got.default_source is None
    assert (got.sources.object, got.sources.data) == ("list", [])
    assert got.subscriptions.object == "list" and got.tax_ids.url == f"/v1/customers/{cus.id}/tax_ids"
    assert "sources" not in client.v1.customers.retrieve(cus.id)
