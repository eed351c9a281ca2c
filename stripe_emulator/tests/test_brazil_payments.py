"""Boleto and Pix (BRL) through the SDK: PaymentIntents, asynchronous settlement and expiry (emulator clock and
test clocks), the test-mode controls and hosted voucher / QR pages, Checkout, and the payment-page endpoints."""
from __future__ import annotations

import json
from typing import Any
from urllib.parse import urlencode

import pytest
import stripe

from stripe_emulator.testing import RunningEmulator

from .conftest import http
from .shapecheck import compare, fixtures

PAYER = {"name": "Maria Silva", "email": "maria@example.com",
         "address": {"line1": "Av. Paulista 1000", "city": "São Paulo", "state": "SP", "postal_code": "01310-100",
                     "country": "BR"}}
FORM = {"Content-Type": "application/x-www-form-urlencoded"}


def _boleto(client: stripe.StripeClient, amount: int = 5000, email: str | None = None, **kw: Any) -> Any:
    payer = dict(PAYER, email=email or PAYER["email"])
    return client.v1.payment_intents.create(params={
        "amount": amount, "currency": "brl", "payment_method_types": ["boleto"], "confirm": True,
        "payment_method_data": {"type": "boleto", "boleto": {"tax_id": "000.000.000-00"}, "billing_details": payer},
        **kw})


def _pix(client: stripe.StripeClient, amount: int = 5000, **kw: Any) -> Any:
    return client.v1.payment_intents.create(params={
        "amount": amount, "currency": "brl", "payment_method_types": ["pix"], "confirm": True,
        "payment_method_data": {"type": "pix"}, **kw})


def _control(emu: RunningEmulator, pi_id: str, action: str, **form: str) -> tuple[int, dict[str, Any]]:
    status, _, body = http("POST", f"{emu.url}/_emulator/payment_intents/{pi_id}/{action}",
                           data=urlencode(form).encode(), headers=FORM)
    return status, json.loads(body) if body else {}


def _events_for(client: stripe.StripeClient, object_id: str) -> list[str]:
    evs = client.v1.events.list(params={"limit": 100}).data
    return [e.type for e in reversed(evs) if e.data.object["id"] == object_id]


# ------------------------------------------------------------------ Boleto on PaymentIntents

def test_boleto_voucher_then_processing_then_succeeded(client: stripe.StripeClient, emulator: RunningEmulator) -> None:
    pi = _boleto(client)
    assert pi.status == "requires_action" and pi.next_action.type == "boleto_display_details"
    details = pi.next_action.boleto_display_details
    assert len(details.number) == 47 and details.expires_at > pi.created
    assert pi.payment_method_options.boleto.expires_after_days == 3
    status, _, page = http("GET", details.hosted_voucher_url)
    assert status == 200 and b"R$50.00" in page and details.number.encode() in page
    status, headers, pdf = http("GET", details.pdf)
    assert status == 200 and pdf.startswith(b"%PDF") and headers["content-type"] == "application/pdf"

    status, body = _control(emulator, pi.id, "pay")
    assert (status, body["status"]) == (200, "processing")
    charge = client.v1.charges.retrieve(body["latest_charge"])
    assert (charge.status, charge.paid, charge.payment_method_details.type) == ("pending", False, "boleto")
    assert charge.payment_method_details.boleto.tax_id == "000.000.000-00"

    status, body = _control(emulator, pi.id, "settle")
    assert (status, body["status"]) == (200, "succeeded")
    pi = client.v1.payment_intents.retrieve(pi.id, params={"expand": ["latest_charge.balance_transaction"]})
    assert (pi.amount_received, pi.latest_charge.status, pi.latest_charge.paid) == (5000, "succeeded", True)
    bt = pi.latest_charge.balance_transaction
    assert (bt.amount, bt.fee, bt.net, bt.currency) == (5000, 345, 4655, "brl")  # R$3.45 per paid Boleto
    assert _events_for(client, pi.id) == ["payment_intent.created", "payment_intent.requires_action",
                                          "payment_intent.processing", "payment_intent.succeeded"]
    assert _events_for(client, charge.id) == ["charge.pending", "charge.succeeded"]
    with pytest.raises(stripe.InvalidRequestError) as exc:
        client.v1.refunds.create(params={"payment_intent": pi.id})
    assert exc.value.code == "charge_not_refundable"


def test_boleto_settlement_failure(client: stripe.StripeClient, emulator: RunningEmulator) -> None:
    pi = _boleto(client)
    status, body = _control(emulator, pi.id, "settle", result="failed")
    assert (status, body["status"]) == (200, "requires_payment_method")
    pi = client.v1.payment_intents.retrieve(pi.id)
    assert pi.last_payment_error.code == "payment_method_provider_decline" and pi.next_action is None
    assert client.v1.charges.retrieve(pi.latest_charge).status == "failed"
    assert _events_for(client, pi.id)[-2:] == ["payment_intent.processing", "payment_intent.payment_failed"]
    assert _events_for(client, pi.latest_charge) == ["charge.pending", "charge.failed"]


@pytest.mark.parametrize("email,status", [("test+succeed_immediately@example.com", "succeeded"),
                                          ("test+expire_immediately@example.com", "requires_payment_method")])
def test_boleto_test_emails(client: stripe.StripeClient, email: str, status: str) -> None:
    assert _boleto(client, email=email).status == status


def test_boleto_expires_with_the_emulator_clock(client: stripe.StripeClient, emulator: RunningEmulator) -> None:
    emulator.reset()
    pi = _boleto(client)
    status, _, _ = http("POST", f"{emulator.url}/_emulator/clock", data=b"advance=" + str(5 * 86400).encode(),
                        headers=FORM)
    assert status == 200
    pi = client.v1.payment_intents.retrieve(pi.id)
    assert pi.status == "requires_payment_method"
    assert pi.last_payment_error.code == "payment_intent_payment_attempt_expired"
    assert _events_for(client, pi.id)[-1] == "payment_intent.payment_failed"
    status, body = _control(emulator, pi.id, "pay")
    assert status == 400 and body["error"]["code"] == "payment_intent_unexpected_state"
    emulator.reset()


def test_boleto_requires_the_payer_details(client: stripe.StripeClient) -> None:
    with pytest.raises(stripe.InvalidRequestError) as exc:
        client.v1.payment_intents.create(params={
            "amount": 5000, "currency": "brl", "payment_method_types": ["boleto"], "confirm": True,
            "payment_method_data": {"type": "boleto", "billing_details": PAYER}})
    assert (exc.value.code, exc.value.param) == ("parameter_missing", "payment_method_data[boleto][tax_id]")
    with pytest.raises(stripe.InvalidRequestError) as exc:
        client.v1.payment_intents.create(params={
            "amount": 5000, "currency": "brl", "payment_method_types": ["boleto"], "confirm": True,
            "payment_method_data": {"type": "boleto", "boleto": {"tax_id": "123"}, "billing_details": PAYER}})
    assert exc.value.param == "payment_method_data[boleto][tax_id]"
    with pytest.raises(stripe.InvalidRequestError) as exc:
        client.v1.payment_methods.create(params={"type": "boleto", "boleto": {"tax_id": "00.000.000/0000-00"},
                                                 "billing_details": {"name": "Loja", "email": "l@example.com"}})
    assert exc.value.param == "billing_details[address][line1]"
    pm = client.v1.payment_methods.create(params={"type": "boleto", "boleto": {"tax_id": "00.000.000/0000-00"},
                                                  "billing_details": PAYER})
    assert (pm.type, pm.boleto.tax_id) == ("boleto", "00.000.000/0000-00")
    assert _boleto_with(client, pm.id).status == "requires_action"


def _boleto_with(client: stripe.StripeClient, pm_id: str) -> Any:
    return client.v1.payment_intents.create(params={"amount": 5000, "currency": "brl", "payment_method": pm_id,
                                                    "payment_method_types": ["boleto"], "confirm": True})


def test_brazilian_methods_need_brl_and_the_right_types(client: stripe.StripeClient) -> None:
    with pytest.raises(stripe.InvalidRequestError) as exc:
        client.v1.payment_intents.create(params={"amount": 5000, "currency": "usd", "payment_method_types": ["boleto"]})
    assert exc.value.param == "currency" and "brl" in exc.value.user_message
    with pytest.raises(stripe.InvalidRequestError) as exc:
        client.v1.payment_intents.create(params={"amount": 5000, "currency": "brl", "payment_method_types": ["pix"],
                                                 "payment_method": "pm_card_visa", "confirm": True})
    assert exc.value.param == "payment_method"
    card_pi = client.v1.payment_intents.create(params={"amount": 5000, "currency": "brl"})
    with pytest.raises(stripe.InvalidRequestError):
        client.v1.payment_intents.confirm(card_pi.id, params={"payment_method_data": {"type": "pix"}})


# ------------------------------------------------------------------ Pix on PaymentIntents

def test_pix_qr_code_then_paid_at_once(client: stripe.StripeClient, emulator: RunningEmulator) -> None:
    pi = _pix(client, amount=5000, payment_method_options={"pix": {"expires_after_seconds": 3600}})
    assert pi.status == "requires_action" and pi.next_action.type == "pix_display_qr_code"
    qr = pi.next_action.pix_display_qr_code
    assert qr.data.startswith("000201") and qr.expires_at == pi.created + 3600
    status, _, page = http("GET", qr.hosted_instructions_url)
    assert status == 200 and qr.data.encode() in page and b"<svg" in page
    status, headers, png = http("GET", qr.image_url_png)
    assert status == 200 and png.startswith(b"\x89PNG") and headers["content-type"] == "image/png"
    # the hosted page's button: pays and comes back to the page
    status, headers, _ = http("POST", f"{emulator.url}/_emulator/payment_intents/{pi.id}/settle",
                              data=b"result=succeeded&redirect=1", headers=FORM)
    assert status == 303 and headers["location"].endswith(f"/_emulator/pix/{pi.id}")
    pi = client.v1.payment_intents.retrieve(pi.id, params={"expand": ["latest_charge.balance_transaction"]})
    assert pi.status == "succeeded"
    assert pi.latest_charge.payment_method_details.type == "pix"
    assert pi.latest_charge.balance_transaction.fee == 60  # 1.19 % of R$50.00 = 59.5, half up
    assert "payment_intent.processing" not in _events_for(client, pi.id)
    refund = client.v1.refunds.create(params={"payment_intent": pi.id, "amount": 1000})
    assert (refund.status, refund.destination_details.type) == ("succeeded", "pix")


def test_pix_expire_control_and_cancel(client: stripe.StripeClient, emulator: RunningEmulator) -> None:
    pi = _pix(client)
    status, body = _control(emulator, pi.id, "expire")
    assert (status, body["status"]) == (200, "requires_payment_method")
    assert body["last_payment_error"]["code"] == "payment_intent_payment_attempt_expired"
    other = _pix(client)
    assert client.v1.payment_intents.cancel(other.id).status == "canceled"
    status, body = _control(emulator, other.id, "settle")
    assert status == 400


def test_test_clock_advance_expires_the_pix(client: stripe.StripeClient) -> None:
    clock = client.v1.test_helpers.test_clocks.create(params={"frozen_time": 1_800_000_000})
    cus = client.v1.customers.create(params={"email": "clock@example.com", "test_clock": clock.id})
    pi = _pix(client, customer=cus.id, payment_method_options={"pix": {"expires_after_seconds": 600}})
    assert pi.next_action.pix_display_qr_code.expires_at == 1_800_000_600
    client.v1.test_helpers.test_clocks.advance(clock.id, params={"frozen_time": 1_800_000_300})
    assert "payment_intent.payment_failed" not in _events_for(client, pi.id)
    client.v1.test_helpers.test_clocks.advance(clock.id, params={"frozen_time": 1_800_001_000})
    # expired during the advance (the event exists before anyone reads the PaymentIntent), at the clock's time
    failed = [e for e in client.v1.events.list(params={"type": "payment_intent.payment_failed", "limit": 100}).data
              if e.data.object["id"] == pi.id]
    assert len(failed) == 1 and failed[0].created == 1_800_001_000
    assert client.v1.payment_intents.retrieve(pi.id).status == "requires_payment_method"


# ------------------------------------------------------------------ Checkout

def _brl_session(client: stripe.StripeClient, types: list[str], **kw: Any) -> Any:
    price = client.v1.prices.create(params={"currency": "brl", "unit_amount": 9900, "product_data": {"name": "Plano"}})
    return client.v1.checkout.sessions.create(params={
        "mode": "payment", "line_items": [{"price": price.id, "quantity": 1}], "payment_method_types": types,
        "success_url": "https://shop.example/ok?cs={CHECKOUT_SESSION_ID}", **kw})


def test_checkout_boleto_on_the_hosted_page(client: stripe.StripeClient, emulator: RunningEmulator) -> None:
    cs = _brl_session(client, ["card", "boleto", "pix"])
    assert cs.payment_method_options.boleto.expires_after_days == 3
    assert cs.payment_method_options.pix.expires_after_seconds == 86400
    status, _, page = http("GET", cs.url)
    assert status == 200 and b"id='method-boleto'" in page and b"id='method-pix'" in page and b"name='tax_id'" in page
    form = {"payment_method_type": "boleto", "email": "pedro@example.com", "name": "Pedro", "tax_id": "000.000.000-00",
            "address_line1": "Rua 1", "address_city": "Rio", "address_state": "RJ", "address_postal_code": "20000-000"}
    status, _, page = http("POST", f"{emulator.url}/_emulator/checkout_sessions/{cs.id}/complete",
                           data=urlencode(form).encode(), headers=FORM)
    assert status == 200 and b"id='boleto-number'" in page and f"cs={cs.id}".encode() in page
    cs = client.v1.checkout.sessions.retrieve(cs.id)
    assert (cs.status, cs.payment_status) == ("complete", "unpaid")
    assert cs.customer_details.tax_ids[0].type == "br_cpf"
    pi = client.v1.payment_intents.retrieve(cs.payment_intent)
    assert (pi.status, pi.amount, pi.payment_method_types) == ("requires_action", 9900, ["boleto"])
    _control(emulator, pi.id, "settle")
    cs = client.v1.checkout.sessions.retrieve(cs.id)
    assert cs.payment_status == "paid"
    assert _events_for(client, cs.id) == ["checkout.session.completed", "checkout.session.async_payment_succeeded"]


def test_checkout_boleto_form_errors_keep_the_session_open(client: stripe.StripeClient, emulator: RunningEmulator) -> None:
    cs = _brl_session(client, ["boleto"])
    status, _, page = http("POST", f"{emulator.url}/_emulator/checkout_sessions/{cs.id}/complete",
                           data=urlencode({"payment_method_type": "boleto", "email": "p@example.com",
                                           "name": "Pedro"}).encode(), headers=FORM)
    assert status == 402 and b"tax_id" in page
    assert client.v1.checkout.sessions.retrieve(cs.id).status == "open"


def test_checkout_pix_failure_sends_async_payment_failed(client: stripe.StripeClient, emulator: RunningEmulator) -> None:
    cs = _brl_session(client, ["pix"], customer_email="ana@example.com")
    status, _, page = http("POST", f"{emulator.url}/_emulator/checkout_sessions/{cs.id}/complete",
                           data=b"payment_method_type=pix", headers=FORM)
    assert status == 200 and b"id='pix-qr'" in page
    cs = client.v1.checkout.sessions.retrieve(cs.id)
    _control(emulator, cs.payment_intent, "expire")
    cs = client.v1.checkout.sessions.retrieve(cs.id)
    assert (cs.status, cs.payment_status) == ("complete", "unpaid")
    assert _events_for(client, cs.id) == ["checkout.session.completed", "checkout.session.async_payment_failed"]


def test_checkout_rejects_brazilian_methods_outside_brl_payments(client: stripe.StripeClient) -> None:
    price = client.v1.prices.create(params={"currency": "usd", "unit_amount": 900, "product_data": {"name": "X"}})
    with pytest.raises(stripe.InvalidRequestError) as exc:
        client.v1.checkout.sessions.create(params={"mode": "payment", "line_items": [{"price": price.id, "quantity": 1}],
                                                   "payment_method_types": ["card", "pix"]})
    assert "brl" in exc.value.user_message
    monthly = client.v1.prices.create(params={"currency": "brl", "unit_amount": 900, "product_data": {"name": "Y"},
                                              "recurring": {"interval": "month"}})
    with pytest.raises(stripe.InvalidRequestError):
        client.v1.checkout.sessions.create(params={"mode": "subscription",
                                                   "line_items": [{"price": monthly.id, "quantity": 1}],
                                                   "payment_method_types": ["boleto"]})


# ------------------------------------------------------------------ payment pages (what Stripe.js calls)

def _page(client: stripe.StripeClient, method: str, path: str, **params: Any) -> dict[str, Any]:
    return json.loads(client.raw_request(method, path, **params).body)


def test_payment_page_confirm_with_a_test_card(client: stripe.StripeClient) -> None:
    price = client.v1.prices.create(params={"currency": "usd", "unit_amount": 2500, "product_data": {"name": "Mug"}})
    cs = client.v1.checkout.sessions.create(params={"mode": "payment", "line_items": [{"price": price.id, "quantity": 2}],
                                                    "success_url": "https://shop.example/ok"})
    page = _page(client, "get", f"/v1/payment_pages/{cs.id}")
    assert (page["object"], page["status"], page["amount_total"], page["payment_intent"]) == ("payment_page", "open", 5000, None)
    page = _page(client, "post", f"/v1/payment_pages/{cs.id}/confirm", payment_method="pm_card_visa",
                 email="buyer@example.com", expected_amount=5000)
    assert (page["status"], page["payment_status"], page["payment_intent"]["status"]) == ("complete", "paid", "succeeded")
    cs = client.v1.checkout.sessions.retrieve(cs.id)
    assert (cs.status, cs.customer_details.email) == ("complete", "buyer@example.com")
    assert [e.type for e in client.v1.events.list(params={"limit": 5}).data][0] == "checkout.session.completed"
    with pytest.raises(stripe.InvalidRequestError) as exc:
        client.raw_request("post", f"/v1/payment_pages/{cs.id}/confirm", payment_method="pm_card_visa")
    assert exc.value.code == "checkout_session_completed"


def test_payment_page_decline_and_amount_mismatch_leave_the_session_open(client: stripe.StripeClient) -> None:
    price = client.v1.prices.create(params={"currency": "usd", "unit_amount": 2500, "product_data": {"name": "Mug"}})
    cs = client.v1.checkout.sessions.create(params={"mode": "payment", "line_items": [{"price": price.id, "quantity": 1}],
                                                    "customer_email": "buyer@example.com"})
    with pytest.raises(stripe.CardError) as exc:
        client.raw_request("post", f"/v1/payment_pages/{cs.id}/confirm", payment_method="pm_card_chargeDeclinedInsufficientFunds")
    assert (exc.value.code, exc.value.error.decline_code) == ("card_declined", "insufficient_funds")
    with pytest.raises(stripe.InvalidRequestError) as exc:
        client.raw_request("post", f"/v1/payment_pages/{cs.id}/confirm", payment_method="pm_card_visa", expected_amount=100)
    assert exc.value.code == "checkout_amount_mismatch"
    assert client.v1.checkout.sessions.retrieve(cs.id).status == "open"
    assert client.v1.checkout.sessions.retrieve(cs.id).payment_intent is None
    with pytest.raises(stripe.InvalidRequestError) as exc:
        client.raw_request("get", "/v1/payment_pages/cs_test_missing")
    assert exc.value.http_status == 404


def test_payment_page_three_d_secure_then_complete(client: stripe.StripeClient) -> None:
    price = client.v1.prices.create(params={"currency": "usd", "unit_amount": 2500, "product_data": {"name": "Mug"}})
    cs = client.v1.checkout.sessions.create(params={"mode": "payment", "line_items": [{"price": price.id, "quantity": 1}],
                                                    "customer_email": "buyer@example.com",
                                                    "success_url": "https://shop.example/ok"})
    page = _page(client, "post", f"/v1/payment_pages/{cs.id}/confirm", payment_method="pm_card_threeDSecure2Required")
    pi = page["payment_intent"]
    assert page["status"] == "open" and pi["status"] == "requires_action"
    url = pi["next_action"]["use_stripe_sdk"]["stripe_js"]
    status, headers, _ = http("POST", url, data=b"action=approve", headers=FORM)
    assert status == 303 and headers["location"] == "https://shop.example/ok"
    assert client.v1.checkout.sessions.retrieve(cs.id).payment_status == "paid"


def test_payment_page_pix_and_boleto_with_the_publishable_key(emulator: RunningEmulator, client: stripe.StripeClient) -> None:
    cs = _brl_session(client, ["card", "pix", "boleto"])
    body = urlencode({"key": "pk_test_emulator", "payment_method_data[type]": "pix",
                      "email": "ana@example.com"}).encode()
    status, _, raw = http("POST", f"{emulator.url}/v1/payment_pages/{cs.id}/confirm", data=body, headers=FORM)
    page = json.loads(raw)
    assert status == 200 and page["payment_intent"]["next_action"]["type"] == "pix_display_qr_code"
    assert (page["status"], page["payment_status"]) == ("complete", "unpaid")
    # the publishable key opens only these endpoints
    status, _, _ = http("GET", f"{emulator.url}/v1/customers", headers={"Authorization": "Bearer pk_test_emulator"})
    assert status == 401
    status, _, _ = http("GET", f"{emulator.url}/v1/payment_pages/{cs.id}", headers={"Authorization": "Bearer pk_test_emulator"})
    assert status == 200
    cs2 = _brl_session(client, ["boleto"])
    page = _page(client, "post", f"/v1/payment_pages/{cs2.id}/confirm", email="pedro@example.com",
                 payment_method_data={"type": "boleto", "boleto": {"tax_id": "00.000.000/0000-00"},
                                      "billing_details": PAYER})
    assert page["payment_intent"]["next_action"]["type"] == "boleto_display_details"
    with pytest.raises(stripe.InvalidRequestError) as exc:
        client.raw_request("post", f"/v1/payment_pages/{cs2.id}/confirm", payment_method_data={"type": "pix"})
    assert exc.value.code == "checkout_session_completed"


def test_payment_page_rejects_a_method_the_session_does_not_allow(client: stripe.StripeClient) -> None:
    cs = _brl_session(client, ["card"], customer_email="x@example.com")
    with pytest.raises(stripe.InvalidRequestError) as exc:
        client.raw_request("post", f"/v1/payment_pages/{cs.id}/confirm", payment_method_data={"type": "pix"})
    assert exc.value.param == "payment_method_data[type]"


# ------------------------------------------------------------------ shapes of the new variants

def test_shapes_of_boleto_and_pix_objects(client: stripe.StripeClient, emulator: RunningEmulator) -> None:
    fx = fixtures()
    pi = _boleto(client)
    pm = json.loads(str(client.v1.payment_methods.retrieve(pi.payment_method)))
    # a boleto payment method carries `boleto` where a card one carries `card`
    expected_pm = {k: v for k, v in fx["payment_method"].items() if k != "card"} | {"boleto": {"tax_id": "x"}}
    assert compare(expected_pm, pm) == []
    # Stripe's example next_action names only its type; a real one carries that type's details (SDK fields)
    boleto_action = {"type": "x", "boleto_display_details": {"expires_at": 1, "hosted_voucher_url": "x",
                                                             "number": "x", "pdf": "x"}}
    assert compare(dict(fx["payment_intent"], next_action=boleto_action), json.loads(str(pi))) == []
    _, settled = _control(emulator, pi.id, "settle")
    charge = json.loads(str(client.v1.charges.retrieve(settled["latest_charge"])))
    expected_charge = dict(fx["charge"], payment_method_details={"boleto": {"tax_id": "x"}, "type": "boleto"})
    assert compare(expected_charge, charge) == []
    pix = _pix(client)
    pix_action = {"type": "x", "pix_display_qr_code": {"data": "x", "expires_at": 1, "hosted_instructions_url": "x",
                                                       "image_url_png": "x", "image_url_svg": "x"}}
    assert compare(dict(fx["payment_intent"], next_action=pix_action), json.loads(str(pix))) == []
    pix_pm = json.loads(str(client.v1.payment_methods.retrieve(pix.payment_method)))
    assert compare({k: v for k, v in fx["payment_method"].items() if k != "card"} | {"pix": {"fingerprint": "x"}},
                   pix_pm) == []


def test_shapes_of_inquiry_dispute_and_failed_refund(client: stripe.StripeClient, emulator: RunningEmulator) -> None:
    fx = fixtures()
    pi = client.v1.payment_intents.create(params={"amount": 2000, "currency": "usd", "confirm": True,
                                                  "payment_method": "pm_card_createDisputeInquiry"})
    dp = client.v1.disputes.list(params={"payment_intent": pi.id}).data[0]
    assert compare(fx["dispute"], json.loads(str(dp))) == []
    refund = client.v1.refunds.create(params={"payment_intent": pi.id})
    http("POST", f"{emulator.url}/_emulator/refunds/{refund.id}/fail")
    failed = json.loads(str(client.v1.refunds.retrieve(refund.id)))
    # Stripe adds these two only to failed refunds
    assert compare(dict(fx["refund"], failure_reason="x", failure_balance_transaction="x"), failed) == []
