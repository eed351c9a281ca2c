"""`POST /_emulator/trigger` for payment events (like `stripe trigger <event>`)."""
from __future__ import annotations

from typing import Any

from ..context import using
from ..events import emit
from ..internal import internal_request
from ..registry import trigger
from . import async_payments
from .disputes import LOSING_EVIDENCE, WINNING_EVIDENCE, charge_dispute, update_dispute
from .payment_engine import PaymentOutcome, build_payment_intent, cancel_pi, charge_payment_method
from .refunds import create_refund, fail_refund


def _trigger_payment(emulator: Any, token: str, confirm: bool = True) -> PaymentOutcome:
    req = internal_request(emulator)
    return charge_payment_method(req, amount=2000, currency="usd", customer=None, payment_method=token,
                                 off_session=False, confirm=confirm, description="(created by Stripe emulator trigger)")


@trigger("payment_intent.succeeded")
def _t_pi_succeeded(emulator: Any) -> dict[str, Any]:
    with emulator.store.lock, using(emulator):
        out = _trigger_payment(emulator, "pm_card_visa")
        return {"payment_intent": out.payment_intent["id"], "charge": out.charge["id"] if out.charge else None}


@trigger("payment_intent.payment_failed")
def _t_pi_failed(emulator: Any) -> dict[str, Any]:
    with emulator.store.lock, using(emulator):
        out = _trigger_payment(emulator, "pm_card_chargeDeclined")
        return {"payment_intent": out.payment_intent["id"], "charge": out.charge["id"] if out.charge else None}


@trigger("payment_intent.created")
def _t_pi_created(emulator: Any) -> dict[str, Any]:
    with emulator.store.lock, using(emulator):
        out = _trigger_payment(emulator, "pm_card_visa", confirm=False)
        return {"payment_intent": out.payment_intent["id"]}


@trigger("payment_intent.canceled")
def _t_pi_canceled(emulator: Any) -> dict[str, Any]:
    with emulator.store.lock, using(emulator):
        out = _trigger_payment(emulator, "pm_card_visa", confirm=False)
        cancel_pi(internal_request(emulator), out.payment_intent, "requested_by_customer")
        return {"payment_intent": out.payment_intent["id"]}


@trigger("charge.succeeded")
def _t_charge_succeeded(emulator: Any) -> dict[str, Any]:
    return _t_pi_succeeded(emulator)


@trigger("charge.failed")
def _t_charge_failed(emulator: Any) -> dict[str, Any]:
    return _t_pi_failed(emulator)


@trigger("charge.refunded")
def _t_charge_refunded(emulator: Any) -> dict[str, Any]:
    with emulator.store.lock, using(emulator):
        out = _trigger_payment(emulator, "pm_card_visa")
        assert out.charge is not None
        refund = create_refund(internal_request(emulator), charge_id=out.charge["id"])
        return {"payment_intent": out.payment_intent["id"], "charge": out.charge["id"], "refund": refund["id"]}


@trigger("refund.created")
def _t_refund_created(emulator: Any) -> dict[str, Any]:
    return _t_charge_refunded(emulator)


@trigger("charge.dispute.created")
def _t_dispute(emulator: Any) -> dict[str, Any]:
    with emulator.store.lock, using(emulator):
        out = _trigger_payment(emulator, "pm_card_createDispute")
        assert out.charge is not None
        dp = [d for d in emulator.store.all("dispute") if d["charge"] == out.charge["id"]]
        return {"payment_intent": out.payment_intent["id"], "charge": out.charge["id"], "dispute": dp[0]["id"] if dp else None}


def _disputed(emulator: Any) -> tuple[PaymentOutcome, dict[str, Any]]:
    out = _trigger_payment(emulator, "pm_card_createDispute")
    assert out.charge is not None
    dispute = charge_dispute(internal_request(emulator), out.charge["id"])
    assert dispute is not None
    return out, dispute


@trigger("charge.dispute.funds_withdrawn")
def _t_dispute_withdrawn(emulator: Any) -> dict[str, Any]:
    return _t_dispute(emulator)


def _dispute_then_update(emulator: Any, params: dict[str, Any]) -> dict[str, Any]:
    """A fresh dispute, then one update with `params` (the evidence decides which events follow)."""
    with emulator.store.lock, using(emulator):
        out, dp = _disputed(emulator)
        req = internal_request(emulator, params)
        req.path_params = {"id": dp["id"]}
        update_dispute(req)
        return {"payment_intent": out.payment_intent["id"], "dispute": dp["id"]}


@trigger("charge.dispute.updated")
def _t_dispute_updated(emulator: Any) -> dict[str, Any]:
    return _dispute_then_update(emulator, {"evidence": {"product_description": "Emulator trigger"}, "submit": False})


@trigger("charge.dispute.closed")
def _t_dispute_closed(emulator: Any) -> dict[str, Any]:
    return _dispute_then_update(emulator, {"evidence": {"uncategorized_text": LOSING_EVIDENCE}})


@trigger("charge.dispute.funds_reinstated")
def _t_dispute_reinstated(emulator: Any) -> dict[str, Any]:
    return _dispute_then_update(emulator, {"evidence": {"uncategorized_text": WINNING_EVIDENCE}})


@trigger("charge.refund.updated")
def _t_refund_failed(emulator: Any) -> dict[str, Any]:
    with emulator.store.lock, using(emulator):
        out = _trigger_payment(emulator, "pm_card_visa")
        assert out.charge is not None
        req = internal_request(emulator)
        refund = create_refund(req, charge_id=out.charge["id"])
        fail_refund(req, refund)
        return {"payment_intent": out.payment_intent["id"], "refund": refund["id"]}


@trigger("refund.failed")
def _t_refund_failed_alias(emulator: Any) -> dict[str, Any]:
    return _t_refund_failed(emulator)


@trigger("payment_intent.requires_action")
def _t_requires_action(emulator: Any) -> dict[str, Any]:
    with emulator.store.lock, using(emulator):
        out = _trigger_payment(emulator, "pm_card_threeDSecure2Required")
        return {"payment_intent": out.payment_intent["id"]}


def _boleto_processing(emulator: Any) -> dict[str, Any]:
    req = internal_request(emulator)
    pi = build_payment_intent(req, {"amount": 5000, "currency": "brl", "payment_method_types": ["boleto"],
                                    "description": "(created by Stripe emulator trigger)"})
    req.store.add(pi)
    emit("payment_intent.created", pi)
    pm = async_payments.create_async_payment_method(req, "boleto", data={"tax_id": "000.000.000-00"}, billing_details={
        "name": "Jenny Rosen", "email": "jenny.rosen@example.com",
        "address": {"line1": "Av. Paulista 1000", "city": "São Paulo", "state": "SP", "postal_code": "01310-100",
                    "country": "BR"}})
    async_payments.confirm(req, pi, pm)
    async_payments.pay(req, pi)
    return pi


@trigger("payment_intent.processing")
def _t_processing(emulator: Any) -> dict[str, Any]:
    with emulator.store.lock, using(emulator):
        pi = _boleto_processing(emulator)
        return {"payment_intent": pi["id"], "charge": pi["latest_charge"]}


@trigger("charge.pending")
def _t_charge_pending(emulator: Any) -> dict[str, Any]:
    return _t_processing(emulator)
