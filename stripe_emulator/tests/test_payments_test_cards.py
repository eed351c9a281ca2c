"""Stripe's test PaymentMethod ids (docs.stripe.com/testing) through the SDK: each one's documented behaviour,
wherever a payment method is accepted; disputes and their money; refunds that fail later."""
from __future__ import annotations

import time
from typing import Any
from urllib.parse import urlencode

import pytest
import stripe

from stripe_emulator.resources.payment_methods import TEST_TOKENS

from .conftest import http


def _pay(client: stripe.StripeClient, pm: str, amount: int = 4200, **kw: Any) -> Any:
    return client.v1.payment_intents.create(params={"amount": amount, "currency": "usd", "payment_method": pm,
                                                    "confirm": True, **kw})


def _events_for(client: stripe.StripeClient, object_id: str) -> list[str]:
    evs = client.v1.events.list(params={"limit": 100}).data
    return [e.type for e in reversed(evs) if e.data.object["id"] == object_id]


SUCCEEDING = ["pm_card_visa", "pm_card_visa_debit", "pm_card_mastercard", "pm_card_mastercard_debit",
              "pm_card_mastercard_prepaid", "pm_card_amex", "pm_card_discover", "pm_card_diners", "pm_card_jcb",
              "pm_card_unionpay", "pm_card_br", "pm_card_gb", "pm_card_riskLevelElevated", "pm_card_avsFail",
              "pm_card_avsZipFail", "pm_card_threeDSecureOptional", "pm_card_bypassPending", "pm_card_refundFail"]


@pytest.mark.parametrize("pm", SUCCEEDING)
def test_succeeding_test_ids_pay(client: stripe.StripeClient, pm: str) -> None:
    pi = _pay(client, pm)
    assert (pi.status, pi.amount_received) == ("succeeded", 4200)
    assert client.v1.charges.retrieve(pi.latest_charge).status == "succeeded"


@pytest.mark.parametrize("pm,brand,country,funding", [
    ("pm_card_amex", "amex", "US", "credit"), ("pm_card_visa_debit", "visa", "US", "debit"),
    ("pm_card_mastercard_prepaid", "mastercard", "US", "prepaid"), ("pm_card_jcb", "jcb", "US", "credit"),
    ("pm_card_br", "visa", "BR", "credit"), ("pm_card_de", "visa", "DE", "credit"),
])
def test_brand_country_and_funding(client: stripe.StripeClient, pm: str, brand: str, country: str, funding: str) -> None:
    card = client.v1.payment_methods.retrieve(pm).card
    assert (card.brand, card.country, card.funding) == (brand, country, funding)


def test_card_checks_of_the_avs_and_cvc_cards(client: stripe.StripeClient) -> None:
    assert client.v1.payment_methods.retrieve("pm_card_avsZipFail").card.checks.address_postal_code_check == "fail"
    assert client.v1.payment_methods.retrieve("pm_card_avsLine1Fail").card.checks.address_line1_check == "fail"
    assert client.v1.payment_methods.retrieve("pm_card_cvcCheckFail").card.checks.cvc_check == "fail"


@pytest.mark.parametrize("pm,code,decline_code", [
    ("pm_card_chargeDeclined", "card_declined", "generic_decline"),
    ("pm_card_visa_chargeDeclined", "card_declined", "generic_decline"),
    ("pm_card_chargeDeclinedInsufficientFunds", "card_declined", "insufficient_funds"),
    ("pm_card_visa_chargeDeclinedInsufficientFunds", "card_declined", "insufficient_funds"),
    ("pm_card_visa_chargeDeclinedLostCard", "card_declined", "lost_card"),
    ("pm_card_visa_chargeDeclinedStolenCard", "card_declined", "stolen_card"),
    ("pm_card_chargeDeclinedExpiredCard", "expired_card", "expired_card"),
    ("pm_card_chargeDeclinedIncorrectCvc", "incorrect_cvc", "incorrect_cvc"),
    ("pm_card_chargeDeclinedProcessingError", "processing_error", "processing_error"),
    ("pm_card_visa_chargeDeclinedVelocityLimitExceeded", "card_declined", "card_velocity_exceeded"),
    ("pm_card_chargeDeclinedFraudulent", "card_declined", "fraudulent"),
    ("pm_card_radarBlock", "card_declined", "fraudulent"),
    ("pm_card_riskLevelHighest", "card_declined", "fraudulent"),
    ("pm_card_cvcCheckFail", "incorrect_cvc", "incorrect_cvc"),
    ("pm_card_chargeCustomerFail", "card_declined", "generic_decline"),
])
def test_declining_test_ids(client: stripe.StripeClient, pm: str, code: str, decline_code: str) -> None:
    with pytest.raises(stripe.CardError) as exc:
        _pay(client, pm)
    err = exc.value.error
    assert (err.code, err.decline_code) == (code, decline_code)
    pi = client.v1.payment_intents.retrieve(err.payment_intent.id)
    assert pi.status == "requires_payment_method" and pi.last_payment_error.decline_code == decline_code
    charge = client.v1.charges.retrieve(err.charge)
    assert (charge.status, charge.failure_code, charge.outcome.reason is not None) == ("failed", code, True)


def test_radar_block_is_never_sent_to_the_network(client: stripe.StripeClient) -> None:
    with pytest.raises(stripe.CardError) as exc:
        _pay(client, "pm_card_radarBlock")
    outcome = client.v1.charges.retrieve(exc.value.error.charge).outcome
    assert (outcome.type, outcome.network_status) == ("blocked", "not_sent_to_network")


@pytest.mark.parametrize("pm", ["pm_card_chargeDeclined", "pm_card_visa_chargeDeclinedStolenCard",
                                "pm_card_chargeDeclinedProcessingError"])
def test_declining_cards_cannot_be_saved_on_a_customer(client: stripe.StripeClient, pm: str) -> None:
    before = len(client.v1.customers.list(params={"limit": 100}).data)
    with pytest.raises(stripe.CardError):
        client.v1.customers.create(params={"email": "declined@example.com", "payment_method": pm})
    # the failed create leaves no customer behind
    assert len(client.v1.customers.list(params={"limit": 100}).data) == before
    cus = client.v1.customers.create(params={"email": "x@example.com"})
    with pytest.raises(stripe.CardError):
        client.v1.payment_methods.attach(pm, params={"customer": cus.id})


@pytest.mark.parametrize("pm", ["pm_card_visa", "pm_card_amex", "pm_card_chargeCustomerFail", "pm_card_refundFail",
                                "pm_card_createDisputeInquiry", "pm_card_authenticationRequired"])
def test_test_ids_accepted_by_customer_create_and_attach(client: stripe.StripeClient, pm: str) -> None:
    cus = client.v1.customers.create(params={"email": "ids@example.com", "payment_method": pm,
                                             "invoice_settings": {"default_payment_method": None}})
    saved = client.v1.customers.payment_methods.list(cus.id).data
    assert len(saved) == 1 and saved[0].id.startswith("pm_") and saved[0].id != pm
    other = client.v1.customers.create(params={"email": "ids2@example.com"})
    attached = client.v1.payment_methods.attach(pm, params={"customer": other.id})
    assert attached.customer == other.id and attached.id != saved[0].id


def test_attach_ok_then_charge_fails_off_session(client: stripe.StripeClient) -> None:
    cus = client.v1.customers.create(params={"email": "later@example.com", "payment_method": "pm_card_chargeCustomerFail"})
    pm = client.v1.customers.payment_methods.list(cus.id).data[0]
    with pytest.raises(stripe.CardError) as exc:
        _pay(client, pm.id, customer=cus.id, off_session=True)
    assert exc.value.error.decline_code == "generic_decline"


@pytest.mark.parametrize("pm", ["pm_card_authenticationRequired", "pm_card_threeDSecure2Required",
                                "pm_card_threeDSecureRequired"])
def test_three_d_secure_ids_require_action(client: stripe.StripeClient, pm: str) -> None:
    pi = _pay(client, pm, return_url="https://shop.example/back")
    assert pi.status == "requires_action" and pi.next_action.type == "redirect_to_url"
    with pytest.raises(stripe.CardError) as exc:
        cus = client.v1.customers.create(params={"email": "3ds@example.com", "payment_method": pm})
        saved = client.v1.customers.payment_methods.list(cus.id).data[0]
        _pay(client, saved.id, customer=cus.id, off_session=True)
    assert exc.value.error.code == "authentication_required"


@pytest.mark.parametrize("pm,decline_code", [
    ("pm_card_authenticationRequiredChargeDeclinedInsufficientFunds", "insufficient_funds"),
    ("pm_card_threeDSecureRequiredChargeDeclined", "generic_decline"),
])
def test_authenticated_then_declined(client: stripe.StripeClient, pm: str, decline_code: str) -> None:
    pi = _pay(client, pm, return_url="https://shop.example/back")
    assert pi.status == "requires_action"
    status, _, _ = http("POST", pi.next_action.redirect_to_url.url, data=urlencode({"action": "approve"}).encode(),
                        headers={"Content-Type": "application/x-www-form-urlencoded"})
    assert status == 303
    pi = client.v1.payment_intents.retrieve(pi.id)
    assert pi.status == "requires_payment_method"
    assert (pi.last_payment_error.code, pi.last_payment_error.decline_code) == ("card_declined", decline_code)
    assert client.v1.charges.retrieve(pi.latest_charge).status == "failed"


def test_bypass_pending_funds_are_available_at_once(client: stripe.StripeClient) -> None:
    pi = _pay(client, "pm_card_bypassPending", expand=["latest_charge.balance_transaction"])
    bt = pi.latest_charge.balance_transaction
    assert (bt.status, bt.available_on) == ("available", bt.created)
    normal = _pay(client, "pm_card_visa", expand=["latest_charge.balance_transaction"]).latest_charge.balance_transaction
    assert normal.status == "pending" and normal.available_on > normal.created


# ------------------------------------------------------------------ disputes

def _dispute_of(client: stripe.StripeClient, pi: Any) -> Any:
    disputes = client.v1.disputes.list(params={"payment_intent": pi.id}).data
    assert len(disputes) == 1
    return disputes[0]


def test_product_not_received_dispute(client: stripe.StripeClient) -> None:
    pi = _pay(client, "pm_card_createDisputeProductNotReceived", amount=3000)
    dp = _dispute_of(client, pi)
    assert (dp.reason, dp.status, dp.payment_method_details.card.case_type) == ("product_not_received", "needs_response", "chargeback")
    assert [(b.amount, b.fee, b.net) for b in dp.balance_transactions] == [(-3000, 1500, -4500)]
    assert _events_for(client, dp.id) == ["charge.dispute.created", "charge.dispute.funds_withdrawn"]


def test_inquiry_moves_no_money_and_leaves_the_charge_refundable(client: stripe.StripeClient) -> None:
    pi = _pay(client, "pm_card_createDisputeInquiry", amount=2500)
    dp = _dispute_of(client, pi)
    assert (dp.status, dp.is_charge_refundable, dp.balance_transactions) == ("warning_needs_response", True, [])
    assert dp.payment_method_details.card.case_type == "inquiry"
    assert _events_for(client, dp.id) == ["charge.dispute.created"]
    refund = client.v1.refunds.create(params={"charge": pi.latest_charge})
    assert refund.status == "succeeded" and refund.amount == 2500
    closed = client.v1.disputes.close(dp.id)
    assert closed.status == "warning_closed"
    assert _events_for(client, dp.id)[-1] == "charge.dispute.closed"


def test_winning_evidence_reinstates_the_funds(client: stripe.StripeClient) -> None:
    pi = _pay(client, "pm_card_createDispute", amount=5000)
    dp = _dispute_of(client, pi)
    dp = client.v1.disputes.update(dp.id, params={"evidence": {"uncategorized_text": "winning_evidence",
                                                               "customer_name": "Jenny Rosen"}})
    assert dp.status == "won" and dp.evidence.customer_name == "Jenny Rosen"
    assert [(b.amount, b.fee, b.reporting_category) for b in dp.balance_transactions] == [
        (-5000, 1500, "dispute"), (5000, 0, "dispute_reversal")]
    assert _events_for(client, dp.id) == ["charge.dispute.created", "charge.dispute.funds_withdrawn",
                                          "charge.dispute.updated", "charge.dispute.funds_reinstated",
                                          "charge.dispute.closed"]
    reinstated = client.v1.balance_transactions.list(params={"source": dp.id}).data
    assert sorted(b.amount for b in reinstated) == [-5000, 5000]
    with pytest.raises(stripe.InvalidRequestError):
        client.v1.disputes.close(dp.id)


def test_losing_evidence_loses_and_evidence_without_submit_stays_open(client: stripe.StripeClient) -> None:
    dp = _dispute_of(client, _pay(client, "pm_card_createDispute"))
    draft = client.v1.disputes.update(dp.id, params={"evidence": {"product_description": "A mug"}, "submit": False})
    assert (draft.status, draft.evidence_details.has_evidence, draft.evidence_details.submission_count) == (
        "needs_response", True, 0)
    lost = client.v1.disputes.update(dp.id, params={"evidence": {"uncategorized_text": "losing_evidence"}})
    assert lost.status == "lost" and len(lost.balance_transactions) == 1
    assert "charge.dispute.funds_reinstated" not in _events_for(client, dp.id)


def test_dispute_list_filters_and_retrieve(client: stripe.StripeClient) -> None:
    pi = _pay(client, "pm_card_createDispute")
    dp = _dispute_of(client, pi)
    assert client.v1.disputes.retrieve(dp.id).charge == pi.latest_charge
    assert [d.id for d in client.v1.disputes.list(params={"charge": pi.latest_charge}).data] == [dp.id]
    with pytest.raises(stripe.InvalidRequestError) as exc:
        client.v1.disputes.retrieve("dp_missing")
    assert exc.value.http_status == 404


# ------------------------------------------------------------------ refunds that fail later

def _wait_for(fn: Any, timeout: float = 5.0) -> Any:
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        value = fn()
        if value:
            return value
        time.sleep(0.05)
    raise AssertionError("condition not met in time")


def test_refund_fail_card_refund_fails_later(client: stripe.StripeClient) -> None:
    pi = _pay(client, "pm_card_refundFail", amount=3000)
    refund = client.v1.refunds.create(params={"payment_intent": pi.id, "amount": 1000})
    assert refund.status == "succeeded"
    failed = _wait_for(lambda: (r := client.v1.refunds.retrieve(refund.id)).status == "failed" and r)
    assert failed.failure_reason == "expired_or_canceled_card"
    fbt = client.v1.balance_transactions.retrieve(failed.failure_balance_transaction)
    assert (fbt.amount, fbt.type, fbt.fee) == (1000, "refund_failure", 0)
    charge = client.v1.charges.retrieve(pi.latest_charge)
    assert (charge.amount_refunded, charge.refunded) == (0, False)
    assert _events_for(client, refund.id) == ["refund.created", "charge.refund.updated", "refund.updated",
                                              "refund.failed"]


def test_refunds_of_other_cards_do_not_fail(client: stripe.StripeClient) -> None:
    pi = _pay(client, "pm_card_visa")
    refund = client.v1.refunds.create(params={"payment_intent": pi.id})
    time.sleep(0.5)
    assert client.v1.refunds.retrieve(refund.id).status == "succeeded"


def test_control_fails_a_refund_now(client: stripe.StripeClient, emulator: Any) -> None:
    pi = _pay(client, "pm_card_visa", amount=2000)
    refund = client.v1.refunds.create(params={"payment_intent": pi.id})
    status, _, _ = http("POST", f"{emulator.url}/_emulator/refunds/{refund.id}/fail")
    assert status == 200
    assert client.v1.refunds.retrieve(refund.id).status == "failed"
    assert client.v1.charges.retrieve(pi.latest_charge).amount_refunded == 0
    status, _, _ = http("POST", f"{emulator.url}/_emulator/refunds/{refund.id}/fail")
    assert status == 400


def test_every_documented_id_resolves(client: stripe.StripeClient) -> None:
    for name in TEST_TOKENS:
        pm = client.v1.payment_methods.retrieve(f"pm_{name}")
        assert pm.type == "card" and pm.card.last4


@pytest.mark.parametrize("name", ["charge.dispute.funds_withdrawn", "charge.dispute.updated", "charge.dispute.closed",
                                  "charge.dispute.funds_reinstated", "charge.refund.updated", "refund.failed",
                                  "payment_intent.requires_action", "payment_intent.processing", "charge.pending",
                                  "checkout.session.async_payment_succeeded", "checkout.session.async_payment_failed"])
def test_new_triggers_emit_their_event(emulator: Any, name: str) -> None:
    out = emulator.control("POST", "/_emulator/trigger", {"type": name})
    types = [e["type"] for e in out["events"]]
    assert types.count(name) == 1
