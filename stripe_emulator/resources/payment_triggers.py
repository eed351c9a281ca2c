"""`POST /_emulator/trigger` for payment events (like `stripe trigger <event>`)."""
from __future__ import annotations

from typing import Any

from ..context import using
from ..internal import internal_request
from ..registry import trigger
from .payment_engine import PaymentOutcome, cancel_pi, charge_payment_method
from .refunds import create_refund


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
