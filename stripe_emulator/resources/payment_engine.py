"""The payment engine shared by PaymentIntents, invoices, checkout and the portal: build and confirm a
PaymentIntent with a payment method, decide success / decline / 3-D Secure from the test card, and emit
Stripe's events.

Internal API (see FRAMEWORK.md): `charge_payment_method`, `decline_error_fields`, `build_payment_intent`,
`confirm_with` (alias `_confirm`), `complete_3ds_payment`, `cancel_pi`, `AFTER_3DS_HOOKS`.
"""
from __future__ import annotations

import copy
from dataclasses import dataclass
from typing import Any

from ..errors import StripeError
from ..events import emit
from ..helpers import apply_metadata
from ..registry import Request
from ..state import new_id, random_token
from .balance_transactions import create_balance_transaction
from . import async_payments
from .charges import _now_for, build_charge
from .disputes import create_dispute
from .payment_methods import card_behaviour, card_traits, resolve_payment_method

_DECLINES: dict[str, dict[str, str]] = {
    "decline": {"code": "card_declined", "decline_code": "generic_decline", "message": "Your card was declined."},
    "attach_ok_charge_fails": {"code": "card_declined", "decline_code": "generic_decline", "message": "Your card was declined."},
    "insufficient_funds": {"code": "card_declined", "decline_code": "insufficient_funds", "message": "Your card has insufficient funds."},
    "lost_card": {"code": "card_declined", "decline_code": "lost_card", "message": "Your card was declined."},
    "stolen_card": {"code": "card_declined", "decline_code": "stolen_card", "message": "Your card was declined."},
    "processing_error": {"code": "processing_error", "decline_code": "processing_error",
                         "message": "An error occurred while processing your card. Try again in a little bit."},
    "card_velocity_exceeded": {"code": "card_declined", "decline_code": "card_velocity_exceeded",
                               "message": "Your card was declined."},
    "fraudulent": {"code": "card_declined", "decline_code": "fraudulent", "message": "Your card was declined."},
    "expired": {"code": "expired_card", "decline_code": "expired_card", "message": "Your card has expired."},
    "incorrect_cvc": {"code": "incorrect_cvc", "decline_code": "incorrect_cvc", "message": "Your card's security code is incorrect."},
    "authentication_required": {"code": "authentication_required", "decline_code": "authentication_required",
                                "message": "Your card was declined. This transaction requires authentication."},
    "3ds_failed": {"code": "payment_intent_authentication_failure", "decline_code": "",
                   "message": "We are unable to authenticate your payment method. Please choose a different payment method and try again."},
}


def decline_behaviours() -> list[str]:
    """Every card behaviour that ends in an error (see payment_methods.TEST_CARDS)."""
    return list(_DECLINES)


def decline_error_fields(behaviour: str) -> dict[str, str]:
    return dict(_DECLINES.get(behaviour, _DECLINES["decline"]))


def build_payment_intent(req: Any, p: dict[str, Any]) -> dict[str, Any]:
    pi_id = new_id("pi")
    apm = p.get("automatic_payment_methods")
    return {
        "id": pi_id,
        "object": "payment_intent",
        "amount": p["amount"],
        "amount_capturable": 0,
        "amount_details": {"tip": {}},
        "amount_received": 0,
        "application": None,
        "application_fee_amount": p.get("application_fee_amount"),
        "automatic_payment_methods": {"enabled": bool(apm.get("enabled"))} if apm else None,
        "canceled_at": None,
        "cancellation_reason": None,
        "capture_method": p.get("capture_method", "automatic_async"),
        "client_secret": f"{pi_id}_secret_{random_token(25)}",
        "confirmation_method": p.get("confirmation_method", "automatic"),
        "created": _now_for(req, p.get("customer")),
        "currency": p["currency"].lower(),
        "customer": p.get("customer"),
        "customer_account": None,
        "description": p.get("description"),
        "excluded_payment_method_types": p.get("excluded_payment_method_types"),
        "last_payment_error": None,
        "latest_charge": None,
        "livemode": False,
        "managed_payments": None,
        "metadata": {},
        "next_action": None,
        "on_behalf_of": None,
        "payment_method": None,
        "payment_method_configuration_details": None,
        "payment_method_options": async_payments.payment_method_options(list(p.get("payment_method_types") or ["card"]),
                                                                        p.get("payment_method_options")),
        "payment_method_types": list(p.get("payment_method_types") or ["card"]),
        "processing": None,
        "receipt_email": p.get("receipt_email"),
        "review": None,
        "setup_future_usage": p.get("setup_future_usage"),
        "shipping": None,
        "source": None,
        "statement_descriptor": p.get("statement_descriptor"),
        "statement_descriptor_suffix": p.get("statement_descriptor_suffix"),
        "status": "requires_payment_method",
        "transfer_data": None,
        "transfer_group": p.get("transfer_group"),
    }


@dataclass
class PaymentOutcome:
    payment_intent: dict[str, Any]
    charge: dict[str, Any] | None
    error: dict[str, str] | None


def _error_body_extra(pi: dict[str, Any], pm: dict[str, Any] | None, charge: dict[str, Any] | None) -> dict[str, Any]:
    extra: dict[str, Any] = {"payment_intent": copy.deepcopy(pi)}
    if pm is not None:
        extra["payment_method"] = copy.deepcopy(pm)
    if charge is not None:
        extra["charge"] = charge["id"]
    return extra


def _fail(req: Any, pi: dict[str, Any], pm: dict[str, Any], behaviour: str, *, make_charge: bool = True) -> PaymentOutcome:
    fields = decline_error_fields(behaviour)
    charge = None
    if make_charge:
        charge = build_charge(req, pi, pm, succeeded=False, captured=False, failure=fields, three_ds=False)
        req.store.add(charge)
        pi["latest_charge"] = charge["id"]
    err: dict[str, Any] = {
        "type": "card_error",
        "code": fields["code"],
        "doc_url": "https://stripe.com/docs/error-codes/" + fields["code"].replace("_", "-"),
        "message": fields["message"],
        "payment_method": copy.deepcopy(pm),
    }
    if fields.get("decline_code"):
        err["decline_code"] = fields["decline_code"]
    if charge is not None:
        err["charge"] = charge["id"]
    pi["last_payment_error"] = err
    pi["status"] = "requires_payment_method"
    pi["next_action"] = None
    pi["payment_method"] = None
    if charge is not None:
        emit("charge.failed", charge)
    emit("payment_intent.payment_failed", pi)
    return PaymentOutcome(pi, charge, fields)


def _succeed(req: Any, pi: dict[str, Any], pm: dict[str, Any], behaviour: str, three_ds: bool) -> PaymentOutcome:
    capture_now = pi["capture_method"] in ("automatic", "automatic_async")
    charge = build_charge(req, pi, pm, succeeded=True, captured=capture_now, failure=None, three_ds=three_ds)
    req.store.add(charge)
    pi["latest_charge"] = charge["id"]
    pi["last_payment_error"] = None
    pi["next_action"] = None
    if capture_now:
        bt = create_balance_transaction(req, amount=charge["amount"], currency=charge["currency"], type="charge",
                                        source=charge["id"], description=charge["description"], created=charge["created"])
        if card_traits(req, pm["id"]).get("available_at_once"):
            bt["status"], bt["available_on"] = "available", bt["created"]
        charge["balance_transaction"] = bt["id"]
        pi["status"] = "succeeded"
        pi["amount_received"] = pi["amount"]
        pi["amount_capturable"] = 0
    else:
        pi["status"] = "requires_capture"
        pi["amount_capturable"] = pi["amount"]
    if pi.get("setup_future_usage") and pi.get("customer") and not pm.get("customer"):
        cus = req.store.get(pi["customer"], "customer")
        if cus is not None:
            pm["customer"] = cus["id"]
            emit("payment_method.attached", pm)
    emit("charge.succeeded", charge)
    if capture_now:
        emit("payment_intent.succeeded", pi)
    else:
        emit("payment_intent.amount_capturable_updated", pi)
    if behaviour == "dispute" and capture_now:
        create_dispute(req, charge, kind=card_traits(req, pm["id"]).get("dispute", "fraudulent"))
    return PaymentOutcome(pi, charge, None)


def _confirm(req: Any, pi: dict[str, Any], pm: dict[str, Any], *, off_session: bool, return_url: str | None) -> PaymentOutcome:
    """Run a confirmation with `pm` on `pi` (state: requires_payment_method/confirmation)."""
    if pm["type"] in async_payments.ASYNC_TYPES:
        async_payments.confirm(req, pi, pm)  # voucher / QR code: requires_action until paid
        return PaymentOutcome(pi, None, None)
    if "card" not in pi["payment_method_types"] and not (pi.get("automatic_payment_methods") or {}).get("enabled"):
        raise StripeError("The PaymentMethod provided (card) is not allowed for this PaymentIntent. Please attach a "
                          "PaymentMethod of one of the following types: " + ", ".join(pi["payment_method_types"]) + ".",
                          code="payment_intent_unexpected_state", param="payment_method")
    pi["payment_method"] = pm["id"]
    behaviour = card_behaviour(req, pm["id"])
    if behaviour in ("3ds", "3ds_setup"):
        set_up = req.store.private.get(pm["id"], {}).get("authenticated_for_off_session")
        if off_session and not (behaviour == "3ds_setup" and set_up):
            out = _fail(req, pi, pm, "authentication_required")
            pi["payment_method"] = pm["id"]
            return out
        if not off_session:
            pi["status"] = "requires_action"
            url = f"{req.emulator.public_url}/_emulator/3ds/{pi['id']}"
            if return_url:
                pi["next_action"] = {"type": "redirect_to_url",
                                     "redirect_to_url": {"return_url": return_url, "url": url}}
            else:
                pi["next_action"] = {"type": "use_stripe_sdk",
                                     "use_stripe_sdk": {"type": "three_d_secure_redirect", "stripe_js": url,
                                                        "source": "src_" + random_token(24)}}
            req.store.priv(pi["id"])["return_url"] = return_url
            emit("payment_intent.requires_action", pi)
            return PaymentOutcome(pi, None, None)
    if behaviour in _DECLINES:
        return _fail(req, pi, pm, behaviour)
    return _succeed(req, pi, pm, behaviour, three_ds=False)


def charge_payment_method(
    req: Any, *, amount: int, currency: str, customer: str | None, payment_method: str,
    off_session: bool = True, confirm: bool = True, description: str | None = None,
    metadata: dict[str, str] | None = None, extra: dict[str, Any] | None = None,
) -> PaymentOutcome:
    """Create and confirm a PaymentIntent (used by invoices, checkout). Emits Stripe's events; never raises
    for a decline: the outcome's `error` says what happened."""
    pm = resolve_payment_method(req, payment_method)
    pi = build_payment_intent(req, {"amount": amount, "currency": currency, "customer": customer,
                                    "description": description, "capture_method": "automatic"})
    apply_metadata(pi, metadata)
    if extra:
        pi.update(extra)
    req.store.add(pi)
    emit("payment_intent.created", pi)
    if not confirm:
        return PaymentOutcome(pi, None, None)
    return _confirm(req, pi, pm, off_session=off_session, return_url=None)


def _raise_if_failed(out: PaymentOutcome, req: Request) -> None:
    if out.error is not None:
        pm = req.store.get(out.payment_intent["last_payment_error"]["payment_method"]["id"]) if out.payment_intent.get("last_payment_error") else None
        raise StripeError(
            out.error["message"], status=402, type="card_error", code=out.error["code"],
            decline_code=out.error.get("decline_code") or None,
            extra=_error_body_extra(out.payment_intent, pm, out.charge),
        )


def cancel_pi(req: Any, pi: dict[str, Any], reason: str | None) -> None:
    if pi["status"] == "requires_capture" and pi.get("latest_charge"):
        charge = req.store.get(pi["latest_charge"], "charge")
        if charge is not None:
            charge["amount_refunded"] = charge["amount"]
            charge["refunded"] = True
            emit("charge.refunded", charge)
    req.store.priv(pi["id"]).pop("async", None)  # an unpaid voucher / QR code dies with the PaymentIntent
    pi["status"] = "canceled"
    pi["canceled_at"] = req.store.clock.now_for_customer(pi.get("customer"))
    pi["cancellation_reason"] = reason
    pi["next_action"] = None
    pi["amount_capturable"] = 0
    emit("payment_intent.canceled", pi)


# name -> fn(req, intent, approved) run after a challenge (set store.priv(intent)["after_3ds_hook"]).
AFTER_3DS_HOOKS: dict[str, Any] = {}


def complete_3ds_payment(req: Any, pi: dict[str, Any], approve: bool) -> PaymentOutcome:
    pm = req.store.get(pi["payment_method"], "payment_method")
    assert pm is not None
    if not approve:
        return _fail(req, pi, pm, "3ds_failed", make_charge=False)
    after = card_traits(req, pm["id"]).get("after_3ds")
    if after:
        # Cards such as pm_card_authenticationRequiredChargeDeclinedInsufficientFunds: the challenge succeeds,
        # then the issuer declines the charge.
        return _fail(req, pi, pm, after)
    return _succeed(req, pi, pm, card_behaviour(req, pm["id"]), three_ds=True)


# Public name for confirming an existing PaymentIntent with a payment method (invoices use it).
confirm_with = _confirm
