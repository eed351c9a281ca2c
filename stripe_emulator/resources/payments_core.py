"""Payment intents, charges, balance transactions, refunds and disputes, plus the hosted 3-D Secure
challenge page and charge receipts.

Internal API for other modules (see FRAMEWORK.md): `charge_payment_method`, `create_balance_transaction`,
`create_refund`, `decline_error_fields`.
"""
from __future__ import annotations

import copy
import html
from dataclasses import dataclass
from typing import Any
from urllib.parse import urlencode

from ..context import using
from ..errors import StripeError, no_such, state_error
from ..events import diff, emit
from ..helpers import apply_metadata, fmt_money, get_or_404, minimum_charge_amount, ref_or_400
from ..internal import internal_request
from ..listing import created_filter, equal_filter, list_response, search_response
from ..registry import HtmlResponse, Request, object_type, route, trigger
from ..state import new_id, random_token
from .payment_methods import attach_payment_method, card_behaviour, resolve_payment_method

object_type("payment_intent")
object_type("charge")
object_type("balance_transaction")
object_type("refund")
object_type("dispute")

DAY = 86400

_DECLINES: dict[str, dict[str, str]] = {
    "decline": {"code": "card_declined", "decline_code": "generic_decline", "message": "Your card was declined."},
    "attach_ok_charge_fails": {"code": "card_declined", "decline_code": "generic_decline", "message": "Your card was declined."},
    "insufficient_funds": {"code": "card_declined", "decline_code": "insufficient_funds", "message": "Your card has insufficient funds."},
    "lost_card": {"code": "card_declined", "decline_code": "lost_card", "message": "Your card was declined."},
    "expired": {"code": "expired_card", "decline_code": "expired_card", "message": "Your card has expired."},
    "incorrect_cvc": {"code": "incorrect_cvc", "decline_code": "incorrect_cvc", "message": "Your card's security code is incorrect."},
    "authentication_required": {"code": "authentication_required", "decline_code": "authentication_required",
                                "message": "Your card was declined. This transaction requires authentication."},
    "3ds_failed": {"code": "payment_intent_authentication_failure", "decline_code": "",
                   "message": "We are unable to authenticate your payment method. Please choose a different payment method and try again."},
}


def decline_error_fields(behaviour: str) -> dict[str, str]:
    return dict(_DECLINES.get(behaviour, _DECLINES["decline"]))


# ------------------------------------------------------------------ balance transactions

def card_fee(amount: int) -> int:
    """Stripe's standard card pricing, 2.9% + 30 minor units, rounded half up to a minor unit."""
    return (amount * 29 + 500) // 1000 + 30


def create_balance_transaction(
    req: Any, *, amount: int, currency: str, type: str, source: str, description: str | None = None,
    card_fee_applies: bool = True, fee: int | None = None, created: int | None = None,
) -> dict[str, Any]:
    now = created if created is not None else req.store.clock.now()
    if fee is None:
        fee = card_fee(amount) if (type == "charge" and card_fee_applies) else 0
    fee_details = [] if fee == 0 else [{
        "amount": fee, "application": None, "currency": currency,
        "description": "Stripe processing fees", "type": "stripe_fee",
    }]
    category = {"charge": "charge", "refund": "refund", "adjustment": "dispute", "payment_failure_refund": "refund_failure"}.get(type, type)
    bt = {
        "id": new_id("txn"),
        "object": "balance_transaction",
        "amount": amount,
        "available_on": now + 2 * DAY,
        "balance_type": "payments",
        "created": now,
        "currency": currency,
        "description": description,
        "exchange_rate": None,
        "fee": fee,
        "fee_details": fee_details,
        "net": amount - fee,
        "reporting_category": category,
        "source": source,
        "status": "pending",
        "type": type,
    }
    req.store.add(bt)
    return bt


# ------------------------------------------------------------------ objects

def _now_for(req: Any, customer: str | None) -> int:
    return req.store.clock.now_for_customer(customer)


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
        "payment_method_options": {"card": {"installments": None, "mandate_options": None, "network": None,
                                            "request_three_d_secure": "automatic"}},
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


def _charge_pm_details(pm: dict[str, Any], amount: int, three_ds: bool) -> dict[str, Any]:
    card = pm.get("card") or {}
    return {
        "card": {
            "amount_authorized": amount,
            "authorization_code": None,
            "brand": card.get("brand"),
            "checks": copy.deepcopy(card.get("checks")),
            "country": card.get("country"),
            "exp_month": card.get("exp_month"),
            "exp_year": card.get("exp_year"),
            "extended_authorization": {"status": "disabled"},
            "fingerprint": card.get("fingerprint"),
            "funding": card.get("funding"),
            "incremental_authorization": {"status": "unavailable"},
            "installments": None,
            "last4": card.get("last4"),
            "mandate": None,
            "multicapture": {"status": "unavailable"},
            "network": card.get("brand"),
            "network_token": {"used": False},
            "network_transaction_id": random_token(15),
            "overcapture": {"maximum_amount_capturable": amount, "status": "unavailable"},
            "regulated_status": card.get("regulated_status"),
            "three_d_secure": {
                "authentication_flow": "challenge", "electronic_commerce_indicator": "05",
                "exemption_indicator": None, "result": "authenticated", "result_reason": None,
                "transaction_id": random_token(20), "version": "2.2.0",
            } if three_ds else None,
            "transaction_link_id": None,
            "wallet": None,
        },
        "type": "card",
    }


def build_charge(req: Any, pi: dict[str, Any], pm: dict[str, Any], *, succeeded: bool, captured: bool,
                 failure: dict[str, str] | None, three_ds: bool) -> dict[str, Any]:
    ch_id = new_id("ch")
    outcome = {
        "advice_code": None, "network_advice_code": None, "network_decline_code": None,
        "network_status": "approved_by_network" if succeeded else "declined_by_network",
        "reason": None if succeeded else (failure or {}).get("decline_code") or None,
        "seller_message": "Payment complete." if succeeded else "The bank did not return any further details with this decline.",
        "type": "authorized" if succeeded else "issuer_declined",
    }
    return {
        "id": ch_id,
        "object": "charge",
        "amount": pi["amount"],
        "amount_captured": pi["amount"] if (succeeded and captured) else 0,
        "amount_refunded": 0,
        "application": None,
        "application_fee": None,
        "application_fee_amount": None,
        "balance_transaction": None,
        "billing_details": copy.deepcopy(pm.get("billing_details")),
        "calculated_statement_descriptor": "EMULATOR",
        "captured": bool(succeeded and captured),
        "created": _now_for(req, pi.get("customer")),
        "currency": pi["currency"],
        "customer": pi.get("customer"),
        "description": pi.get("description"),
        "disputed": False,
        "failure_balance_transaction": None,
        "failure_code": None if succeeded else (failure or {}).get("code"),
        "failure_message": None if succeeded else (failure or {}).get("message"),
        "fraud_details": {},
        "livemode": False,
        "metadata": copy.deepcopy(pi.get("metadata") or {}),
        "on_behalf_of": None,
        "outcome": outcome,
        "paid": succeeded,
        "payment_intent": pi["id"],
        "payment_method": pm["id"],
        "payment_method_details": _charge_pm_details(pm, pi["amount"], three_ds),
        "receipt_email": pi.get("receipt_email"),
        "receipt_number": None,
        "receipt_url": f"{req.emulator.public_url}/_emulator/receipts/{ch_id}",
        "refunded": False,
        "refunds": {"object": "list", "data": [], "has_more": False, "url": f"/v1/charges/{ch_id}/refunds"},
        "review": None,
        "shipping": None,
        "source": None,
        "source_transfer": None,
        "statement_descriptor": pi.get("statement_descriptor"),
        "statement_descriptor_suffix": pi.get("statement_descriptor_suffix"),
        "status": "succeeded" if succeeded else "failed",
        "transfer_data": None,
        "transfer_group": None,
    }


# ------------------------------------------------------------------ the payment engine

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
        create_dispute(req, charge)
    return PaymentOutcome(pi, charge, None)


def _confirm(req: Any, pi: dict[str, Any], pm: dict[str, Any], *, off_session: bool, return_url: str | None) -> PaymentOutcome:
    """Run a confirmation with `pm` on `pi` (state: requires_payment_method/confirmation)."""
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


# ------------------------------------------------------------------ payment intent routes

def _check_amount(amount: int, currency: str) -> None:
    minimum = minimum_charge_amount(currency)
    if amount < minimum:
        raise StripeError(f"Amount must be at least {fmt_money(minimum, currency)} {currency.lower()}",
                          code="amount_too_small", param="amount")
    if amount > 99999999:
        raise StripeError("Amount must be no more than $999,999.99", code="amount_too_large", param="amount")


@route("POST", "/v1/payment_intents", "PaymentIntentCreateParams", returns="payment_intent")
def create_payment_intent(req: Request) -> dict[str, Any]:
    p = req.params
    _check_amount(p["amount"], p["currency"])
    if p.get("customer"):
        ref_or_400(req, p["customer"], "customer", "customer")
    if p.get("off_session") is not None and not p.get("confirm"):
        raise StripeError("You can only pass in `off_session` when `confirm` is set to true.", param="off_session")
    pm = resolve_payment_method(req, p["payment_method"]) if p.get("payment_method") else None
    pi = build_payment_intent(req, p)
    apply_metadata(pi, p.get("metadata"))
    if pm is not None:
        pi["payment_method"] = pm["id"]
        pi["status"] = "requires_confirmation"
    req.store.add(pi)
    emit("payment_intent.created", pi)
    if p.get("confirm"):
        if pm is None:
            raise StripeError("You cannot confirm this PaymentIntent because it's missing a payment method. "
                              "Pass a `payment_method` to confirm it.",
                              code="payment_intent_unexpected_state", param="payment_method")
        off = p.get("off_session")
        out = _confirm(req, pi, pm, off_session=bool(off) if not isinstance(off, str) else off in ("one_off", "recurring"),
                       return_url=p.get("return_url"))
        _raise_if_failed(out, req)
    return pi


@route("GET", "/v1/payment_intents/{id}", "PaymentIntentRetrieveParams", returns="payment_intent")
def retrieve_payment_intent(req: Request) -> dict[str, Any]:
    return get_or_404(req, req.path_params["id"], "payment_intent")


@route("POST", "/v1/payment_intents/{id}", "PaymentIntentUpdateParams", returns="payment_intent")
def update_payment_intent(req: Request) -> dict[str, Any]:
    pi = get_or_404(req, req.path_params["id"], "payment_intent")
    p = req.params
    if pi["status"] in ("succeeded", "canceled", "processing") and any(k in p for k in ("amount", "currency", "payment_method")):
        raise state_error(f"This PaymentIntent's amount could not be updated because it has a status of {pi['status']}.",
                          code="payment_intent_unexpected_state")
    before = copy.deepcopy(pi)
    if "amount" in p:
        _check_amount(p["amount"], p.get("currency", pi["currency"]))
        pi["amount"] = p["amount"]
    for k in ("currency",):
        if k in p:
            pi[k] = p[k].lower()
    for k in ("description", "receipt_email", "statement_descriptor", "statement_descriptor_suffix", "transfer_group"):
        if k in p:
            pi[k] = p[k] or None
    if "setup_future_usage" in p:
        pi["setup_future_usage"] = p["setup_future_usage"] or None
    if "customer" in p:
        if p["customer"]:
            ref_or_400(req, p["customer"], "customer", "customer")
        pi["customer"] = p["customer"] or None
    if "payment_method" in p:
        pm = resolve_payment_method(req, p["payment_method"])
        pi["payment_method"] = pm["id"]
        if pi["status"] == "requires_payment_method":
            pi["status"] = "requires_confirmation"
    apply_metadata(pi, p.get("metadata"))
    prev = diff(before, pi)
    if prev:
        emit("payment_intent.updated", pi, prev)
    return pi


@route("POST", "/v1/payment_intents/{id}/confirm", "PaymentIntentConfirmParams", returns="payment_intent")
def confirm_payment_intent(req: Request) -> dict[str, Any]:
    pi = get_or_404(req, req.path_params["id"], "payment_intent")
    p = req.params
    if pi["status"] not in ("requires_payment_method", "requires_confirmation", "requires_action"):
        raise state_error(
            f"You cannot confirm this PaymentIntent because it has a status of {pi['status']}.",
            code="payment_intent_unexpected_state",
        )
    pm_id = p.get("payment_method") or pi.get("payment_method")
    if not pm_id:
        raise StripeError("You cannot confirm this PaymentIntent because it's missing a payment method. "
                          "You can either update the PaymentIntent with a payment method and then confirm it again, "
                          "or confirm it again directly with a payment method.",
                          code="payment_intent_unexpected_state")
    pm = resolve_payment_method(req, pm_id)
    if "receipt_email" in p:
        pi["receipt_email"] = p["receipt_email"] or None
    if "setup_future_usage" in p:
        pi["setup_future_usage"] = p["setup_future_usage"] or None
    off = p.get("off_session")
    out = _confirm(req, pi, pm, off_session=bool(off) if not isinstance(off, str) else off in ("one_off", "recurring"),
                   return_url=p.get("return_url"))
    _raise_if_failed(out, req)
    return pi


@route("POST", "/v1/payment_intents/{id}/capture", "PaymentIntentCaptureParams", returns="payment_intent")
def capture_payment_intent(req: Request) -> dict[str, Any]:
    pi = get_or_404(req, req.path_params["id"], "payment_intent")
    if pi["status"] != "requires_capture":
        raise state_error(
            f"This PaymentIntent could not be captured because it has a status of {pi['status']}. "
            "Only a PaymentIntent with one of the following statuses may be captured: requires_capture.",
            code="payment_intent_unexpected_state",
        )
    amount = req.params.get("amount_to_capture", pi["amount_capturable"])
    if amount > pi["amount_capturable"]:
        raise StripeError("The amount to capture cannot be greater than the amount capturable.",
                          code="amount_too_large", param="amount_to_capture")
    apply_metadata(pi, req.params.get("metadata"))
    charge = req.store.get(pi["latest_charge"], "charge")
    assert charge is not None
    capture_charge(req, charge, pi, amount)
    return pi


def capture_charge(req: Any, charge: dict[str, Any], pi: dict[str, Any], amount: int) -> None:
    charge["captured"] = True
    charge["amount_captured"] = amount
    bt = create_balance_transaction(req, amount=amount, currency=charge["currency"], type="charge",
                                    source=charge["id"], description=charge["description"])
    charge["balance_transaction"] = bt["id"]
    if amount < charge["amount"]:
        # the uncaptured remainder is released (Stripe shows it as refunded)
        charge["amount_refunded"] = charge["amount"] - amount
        charge["refunded"] = False
    pi["amount_received"] = amount
    pi["amount_capturable"] = 0
    pi["status"] = "succeeded"
    emit("charge.captured", charge)
    emit("payment_intent.succeeded", pi)


@route("POST", "/v1/payment_intents/{id}/cancel", "PaymentIntentCancelParams", returns="payment_intent")
def cancel_payment_intent(req: Request) -> dict[str, Any]:
    pi = get_or_404(req, req.path_params["id"], "payment_intent")
    if pi["status"] not in ("requires_payment_method", "requires_capture", "requires_confirmation", "requires_action"):
        raise state_error(
            f"You cannot cancel this PaymentIntent because it has a status of {pi['status']}. Only a PaymentIntent "
            "with one of the following statuses may be canceled: requires_payment_method, requires_capture, "
            "requires_confirmation, requires_action, processing.",
            code="payment_intent_unexpected_state",
        )
    cancel_pi(req, pi, req.params.get("cancellation_reason", "requested_by_customer") if "cancellation_reason" in req.params else None)
    return pi


def cancel_pi(req: Any, pi: dict[str, Any], reason: str | None) -> None:
    if pi["status"] == "requires_capture" and pi.get("latest_charge"):
        charge = req.store.get(pi["latest_charge"], "charge")
        if charge is not None:
            charge["amount_refunded"] = charge["amount"]
            charge["refunded"] = True
            emit("charge.refunded", charge)
    pi["status"] = "canceled"
    pi["canceled_at"] = req.store.clock.now_for_customer(pi.get("customer"))
    pi["cancellation_reason"] = reason
    pi["next_action"] = None
    pi["amount_capturable"] = 0
    emit("payment_intent.canceled", pi)


@route("GET", "/v1/payment_intents", "PaymentIntentListParams", returns="payment_intent")
def list_payment_intents(req: Request) -> dict[str, Any]:
    p = req.params
    objs = req.store.all("payment_intent")
    if "customer" in p:
        objs = [o for o in objs if o.get("customer") == p["customer"]]
    objs = created_filter(objs, p.get("created"))
    return list_response(req, objs, "/v1/payment_intents")


@route("GET", "/v1/payment_intents/search", "PaymentIntentSearchParams", returns="payment_intent")
def search_payment_intents(req: Request) -> dict[str, Any]:
    return search_response(req, req.store.all("payment_intent"),
                           {"amount", "created", "currency", "customer", "metadata", "status"})


# ------------------------------------------------------------------ hosted 3-D Secure challenge

def _page(title: str, body: str) -> str:
    return ("<!doctype html><html><head><meta charset='utf-8'><title>" + html.escape(title) + "</title>"
            "<style>body{font-family:sans-serif;max-width:32rem;margin:3rem auto}button{margin:.5rem;padding:.6rem 1.2rem}</style>"
            "</head><body>" + body + "</body></html>")


@route("GET", "/_emulator/3ds/{id}", auth=False)
def three_ds_page(req: Request) -> HtmlResponse:
    intent = req.store.get(req.path_params["id"])
    if intent is None or intent["object"] not in ("payment_intent", "setup_intent"):
        return HtmlResponse(_page("Not found", "<h1>Unknown intent</h1>"), status=404)
    if intent["status"] != "requires_action":
        return HtmlResponse(_page("3D Secure", f"<h1>Nothing to authenticate</h1><p>Status: {html.escape(intent['status'])}</p>"), status=409)
    amount = fmt_money(intent["amount"], intent["currency"]) if intent["object"] == "payment_intent" else "card setup"
    body = (f"<h1>3D Secure 2 Test Page</h1><p>Authenticate <strong>{html.escape(amount)}</strong> "
            f"({html.escape(intent['id'])}).</p>"
            f"<form method='post' action='/_emulator/3ds/{html.escape(intent['id'])}'>"
            "<button name='action' value='approve' id='approve'>Complete authentication</button>"
            "<button name='action' value='fail' id='fail'>Fail authentication</button></form>")
    return HtmlResponse(_page("3D Secure", body))


@route("POST", "/_emulator/3ds/{id}", auth=False, idempotent=False)
def three_ds_submit(req: Request) -> HtmlResponse:
    intent = req.store.get(req.path_params["id"])
    if intent is None or intent["object"] not in ("payment_intent", "setup_intent"):
        return HtmlResponse(_page("Not found", "<h1>Unknown intent</h1>"), status=404)
    if intent["status"] != "requires_action":
        return HtmlResponse(_page("3D Secure", "<h1>Already handled</h1>"), status=409)
    action = req.params.get("action", "approve")
    approve = action == "approve"
    return_url = req.store.private.get(intent["id"], {}).get("return_url")
    if intent["object"] == "payment_intent":
        complete_3ds_payment(req, intent, approve)
        query = {"payment_intent": intent["id"], "payment_intent_client_secret": intent["client_secret"],
                 "redirect_status": "succeeded" if intent["status"] in ("succeeded", "requires_capture") else "failed"}
    else:
        from .setup_intents import complete_3ds_setup

        complete_3ds_setup(req, intent, approve)
        query = {"setup_intent": intent["id"], "setup_intent_client_secret": intent["client_secret"],
                 "redirect_status": "succeeded" if intent["status"] == "succeeded" else "failed"}
    hook = req.store.private.get(intent["id"], {}).get("after_3ds_hook")
    if hook and hook in AFTER_3DS_HOOKS:
        result = AFTER_3DS_HOOKS[hook](req, intent, approve)
        if isinstance(result, HtmlResponse):
            return result
    if return_url:
        sep = "&" if "?" in return_url else "?"
        return HtmlResponse.redirect(return_url + sep + urlencode(query))
    return HtmlResponse(_page("3D Secure", f"<h1>Authentication {'complete' if approve else 'failed'}</h1>"
                                            f"<p id='status'>{html.escape(intent['status'])}</p>"))


# EMU-B: name -> fn(req, intent, approved) run after a challenge (set store.priv(intent)["after_3ds_hook"]).
AFTER_3DS_HOOKS: dict[str, Any] = {}


def complete_3ds_payment(req: Any, pi: dict[str, Any], approve: bool) -> PaymentOutcome:
    pm = req.store.get(pi["payment_method"], "payment_method")
    assert pm is not None
    if not approve:
        return _fail(req, pi, pm, "3ds_failed", make_charge=False)
    return _succeed(req, pi, pm, card_behaviour(req, pm["id"]), three_ds=True)


# ------------------------------------------------------------------ charges

@route("GET", "/v1/charges/{id}", "ChargeRetrieveParams", returns="charge")
def retrieve_charge(req: Request) -> dict[str, Any]:
    return get_or_404(req, req.path_params["id"], "charge")


@route("POST", "/v1/charges/{id}", "ChargeUpdateParams", returns="charge")
def update_charge(req: Request) -> dict[str, Any]:
    ch = get_or_404(req, req.path_params["id"], "charge")
    before = copy.deepcopy(ch)
    p = req.params
    for k in ("description", "receipt_email", "transfer_group"):
        if k in p:
            ch[k] = p[k] or None
    if "customer" in p:
        ch["customer"] = ref_or_400(req, p["customer"], "customer", "customer")["id"]
    if "fraud_details" in p:
        ch["fraud_details"] = {k: v for k, v in (p["fraud_details"] or {}).items() if v}
    apply_metadata(ch, p.get("metadata"))
    prev = diff(before, ch)
    if prev:
        emit("charge.updated", ch, prev)
    return ch


@route("POST", "/v1/charges/{id}/capture", "ChargeCaptureParams", returns="charge")
def capture_charge_route(req: Request) -> dict[str, Any]:
    ch = get_or_404(req, req.path_params["id"], "charge")
    pi = req.store.get(ch.get("payment_intent"), "payment_intent")
    if ch["captured"] or ch["status"] != "succeeded" or pi is None or pi["status"] != "requires_capture":
        raise state_error(f"Charge {ch['id']} has already been captured.", code="charge_already_captured")
    amount = req.params.get("amount", ch["amount"])
    if amount > ch["amount"]:
        raise StripeError("The amount to capture cannot be greater than the amount capturable.", code="amount_too_large", param="amount")
    capture_charge(req, ch, pi, amount)
    return ch


@route("GET", "/v1/charges", "ChargeListParams", returns="charge")
def list_charges(req: Request) -> dict[str, Any]:
    p = req.params
    objs = req.store.all("charge")
    objs = equal_filter(objs, p, ("customer", "payment_intent", "transfer_group"))
    objs = created_filter(objs, p.get("created"))
    return list_response(req, objs, "/v1/charges")


@route("GET", "/v1/charges/search", "ChargeSearchParams", returns="charge")
def search_charges(req: Request) -> dict[str, Any]:
    return search_response(req, req.store.all("charge"), {"amount", "billing_details.address.postal_code", "created",
                                                           "currency", "customer", "disputed", "metadata",
                                                           "payment_method_details.card.last4", "payment_intent",
                                                           "refunded", "status"})


@route("GET", "/_emulator/receipts/{id}", auth=False)
def receipt_page(req: Request) -> HtmlResponse:
    ch = req.store.get(req.path_params["id"], "charge")
    if ch is None:
        return HtmlResponse(_page("Receipt", "<h1>Receipt not found</h1>"), status=404)
    card = (ch.get("payment_method_details") or {}).get("card") or {}
    rows = "".join(
        f"<tr><td>{html.escape(label)}</td><td>{html.escape(str(value))}</td></tr>" for label, value in [
            ("Amount paid", fmt_money(ch["amount"], ch["currency"])),
            ("Amount refunded", fmt_money(ch["amount_refunded"], ch["currency"])),
            ("Payment method", f"{card.get('brand', '')} •••• {card.get('last4', '')}"),
            ("Status", ch["status"]),
            ("Charge", ch["id"]),
        ]
    )
    return HtmlResponse(_page("Receipt", f"<h1>Receipt</h1><p>{html.escape(ch.get('description') or '')}</p><table>{rows}</table>"))


# ------------------------------------------------------------------ balance transactions

@route("GET", "/v1/balance_transactions/{id}", "BalanceTransactionRetrieveParams", returns="balance_transaction")
def retrieve_balance_transaction(req: Request) -> dict[str, Any]:
    return get_or_404(req, req.path_params["id"], "balance_transaction", "balance transaction")


@route("GET", "/v1/balance_transactions", "BalanceTransactionListParams", returns="balance_transaction")
def list_balance_transactions(req: Request) -> dict[str, Any]:
    p = req.params
    objs = req.store.all("balance_transaction")
    objs = equal_filter(objs, p, ("type", "source", "currency"))
    objs = created_filter(objs, p.get("created"))
    return list_response(req, objs, "/v1/balance_transactions")


# ------------------------------------------------------------------ refunds

def _sync_charge_refunds(req: Any, charge: dict[str, Any]) -> None:
    refunds = [r for r in req.store.all("refund") if r.get("charge") == charge["id"]]
    charge["refunds"] = {"object": "list", "data": copy.deepcopy(refunds[:10]), "has_more": len(refunds) > 10,
                         "url": f"/v1/charges/{charge['id']}/refunds"}


def create_refund(req: Any, *, charge_id: str, amount: int | None = None, reason: str | None = None,
                  metadata: Any = None, param: str = "charge") -> dict[str, Any]:
    charge = req.store.get(charge_id, "charge")
    if charge is None:
        raise StripeError(f"No such charge: '{charge_id}'", code="resource_missing", param=param)
    if charge["status"] != "succeeded":
        raise state_error(f"Charge {charge['id']} has a status of {charge['status']}; only a successful charge can be refunded.",
                          code="charge_not_refundable", param=param)
    if charge["disputed"]:
        raise state_error(f"Charge {charge['id']} has been charged back; cannot issue a refund.", code="charge_disputed")
    if charge["refunded"] or charge["amount_refunded"] >= charge["amount"]:
        raise state_error(f"Charge {charge['id']} has already been refunded.", code="charge_already_refunded")
    remaining = charge["amount"] - charge["amount_refunded"]
    if amount is None:
        amount = remaining
    if amount <= 0:
        raise StripeError("Refund amount must be a positive integer.", param="amount", code="parameter_invalid_integer")
    if amount > remaining:
        raise StripeError(
            f"Refund amount ({fmt_money(amount, charge['currency'])}) is greater than unrefunded amount on charge "
            f"({fmt_money(remaining, charge['currency'])})", code="amount_too_large", param="amount",
        )
    now = req.store.clock.now_for_customer(charge.get("customer"))
    re_id = new_id("re")
    bt = create_balance_transaction(req, amount=-amount, currency=charge["currency"], type="refund",
                                    source=re_id, description="REFUND FOR CHARGE" + (f" ({charge['description']})" if charge.get("description") else ""),
                                    created=now)
    refund = {
        "id": re_id,
        "object": "refund",
        "amount": amount,
        "balance_transaction": bt["id"],
        "charge": charge["id"],
        "created": now,
        "currency": charge["currency"],
        "customer": charge.get("customer"),
        "customer_account": None,
        "destination_details": {"card": {"type": "refund"}, "type": "card"},
        "metadata": {},
        "payment_intent": charge.get("payment_intent"),
        "payment_method": charge.get("payment_method"),
        "reason": reason,
        "receipt_number": None,
        "source_transfer_reversal": None,
        "status": "succeeded",
        "transfer_reversal": None,
    }
    apply_metadata(refund, metadata)
    req.store.add(refund)
    charge["amount_refunded"] += amount
    charge["refunded"] = charge["amount_refunded"] >= charge["amount"]
    _sync_charge_refunds(req, charge)
    # Stripe's order for a card refund: charge.refunded, then refund.created.
    emit("charge.refunded", charge, {"amount_refunded": charge["amount_refunded"] - amount,
                                     **({"refunded": False} if charge["refunded"] else {})})
    emit("refund.created", refund)
    return refund


@route("POST", "/v1/refunds", "RefundCreateParams", returns="refund")
def create_refund_route(req: Request) -> dict[str, Any]:
    p = req.params
    if "charge" in p and "payment_intent" in p:
        raise StripeError("You cannot specify both `charge` and `payment_intent`.", param="payment_intent")
    if "charge" in p:
        charge_id, param = p["charge"], "charge"
    elif "payment_intent" in p:
        pi = req.store.get(p["payment_intent"], "payment_intent")
        if pi is None:
            raise StripeError(f"No such payment_intent: '{p['payment_intent']}'", code="resource_missing", param="payment_intent")
        if pi["status"] != "succeeded" or not pi.get("latest_charge"):
            raise state_error(f"This PaymentIntent ({pi['id']}) does not have a successful charge to refund.",
                              code="charge_not_refundable", param="payment_intent")
        charge_id, param = pi["latest_charge"], "payment_intent"
    else:
        raise StripeError("One of the following params should be provided for this request: payment_intent or charge.",
                          code="parameter_missing")
    return create_refund(req, charge_id=charge_id, amount=p.get("amount"), reason=p.get("reason"),
                         metadata=p.get("metadata"), param=param)


@route("GET", "/v1/refunds/{id}", "RefundRetrieveParams", returns="refund")
def retrieve_refund(req: Request) -> dict[str, Any]:
    return get_or_404(req, req.path_params["id"], "refund")


@route("POST", "/v1/refunds/{id}", "RefundUpdateParams", returns="refund")
def update_refund(req: Request) -> dict[str, Any]:
    refund = get_or_404(req, req.path_params["id"], "refund")
    before = copy.deepcopy(refund)
    apply_metadata(refund, req.params.get("metadata"))
    prev = diff(before, refund)
    if prev:
        charge = req.store.get(refund["charge"], "charge")
        if charge is not None:
            _sync_charge_refunds(req, charge)
        emit("refund.updated", refund, prev)
        emit("charge.refund.updated", refund, prev)
    return refund


@route("POST", "/v1/refunds/{id}/cancel", "RefundCancelParams", returns="refund")
def cancel_refund(req: Request) -> dict[str, Any]:
    refund = get_or_404(req, req.path_params["id"], "refund")
    raise state_error(f"Refund {refund['id']} cannot be canceled because it has a status of {refund['status']}. "
                      "Only refunds with a status of requires_action can be canceled.")


@route("GET", "/v1/charges/{charge}/refunds", "ChargeListRefundsParams", returns="refund")
def list_charge_refunds(req: Request) -> dict[str, Any]:
    charge = get_or_404(req, req.path_params["charge"], "charge", param="charge")
    objs = [r for r in req.store.all("refund") if r.get("charge") == charge["id"]]
    return list_response(req, objs, f"/v1/charges/{charge['id']}/refunds")


@route("GET", "/v1/charges/{charge}/refunds/{id}", "ChargeRetrieveRefundParams", returns="refund")
def retrieve_charge_refund(req: Request) -> dict[str, Any]:
    charge = get_or_404(req, req.path_params["charge"], "charge", param="charge")
    refund = req.store.get(req.path_params["id"], "refund")
    if refund is None or refund.get("charge") != charge["id"]:
        raise no_such("refund", req.path_params["id"])
    return refund


@route("GET", "/v1/refunds", "RefundListParams", returns="refund")
def list_refunds(req: Request) -> dict[str, Any]:
    p = req.params
    objs = req.store.all("refund")
    objs = equal_filter(objs, p, ("charge", "payment_intent"))
    objs = created_filter(objs, p.get("created"))
    return list_response(req, objs, "/v1/refunds")


# ------------------------------------------------------------------ disputes

_EVIDENCE_KEYS = [
    "access_activity_log", "billing_address", "cancellation_policy", "cancellation_policy_disclosure",
    "cancellation_rebuttal", "customer_communication", "customer_email_address", "customer_name",
    "customer_purchase_ip", "customer_signature", "duplicate_charge_documentation", "duplicate_charge_explanation",
    "duplicate_charge_id", "product_description", "receipt", "refund_policy", "refund_policy_disclosure",
    "refund_refusal_explanation", "service_date", "service_documentation", "shipping_address", "shipping_carrier",
    "shipping_date", "shipping_documentation", "shipping_tracking_number", "uncategorized_file", "uncategorized_text",
]
DISPUTE_FEE = 1500  # Stripe's US dispute fee in minor units


def create_dispute(req: Any, charge: dict[str, Any]) -> dict[str, Any]:
    now = req.store.clock.now_for_customer(charge.get("customer"))
    dp_id = new_id("dp")
    bt = create_balance_transaction(req, amount=-charge["amount"], currency=charge["currency"], type="adjustment",
                                    source=dp_id, description=f"Chargeback withdrawal for {charge['id']}",
                                    fee=DISPUTE_FEE, created=now)
    bt["fee_details"] = [{"amount": DISPUTE_FEE, "application": None, "currency": charge["currency"],
                          "description": "Dispute fee", "type": "stripe_fee"}]
    card = (charge.get("payment_method_details") or {}).get("card") or {}
    dispute = {
        "id": dp_id,
        "object": "dispute",
        "amount": charge["amount"],
        "balance_transactions": [copy.deepcopy(bt)],
        "charge": charge["id"],
        "created": now,
        "currency": charge["currency"],
        "enhanced_eligibility_types": [],
        "evidence": {**{k: None for k in _EVIDENCE_KEYS}, "enhanced_evidence": {}},
        "evidence_details": {"due_by": now + 7 * DAY, "enhanced_eligibility": {}, "has_evidence": False,
                             "past_due": False, "submission_count": 0},
        "is_charge_refundable": False,
        "livemode": False,
        "metadata": {},
        "payment_intent": charge.get("payment_intent"),
        "payment_method_details": {"card": {"brand": card.get("brand"), "case_type": "chargeback",
                                            "network_reason_code": "10.4", "network": card.get("brand")},
                                   "type": "card"},
        "reason": "fraudulent",
        "status": "needs_response",
    }
    req.store.add(dispute)
    before = copy.deepcopy(charge)
    charge["disputed"] = True
    emit("charge.dispute.created", dispute)
    emit("charge.dispute.funds_withdrawn", dispute)
    emit("charge.updated", charge, diff(before, charge))
    return dispute


@route("GET", "/v1/disputes/{id}", "DisputeRetrieveParams", returns="dispute")
def retrieve_dispute(req: Request) -> dict[str, Any]:
    return get_or_404(req, req.path_params["id"], "dispute")


@route("POST", "/v1/disputes/{id}", "DisputeUpdateParams", returns="dispute")
def update_dispute(req: Request) -> dict[str, Any]:
    dp = get_or_404(req, req.path_params["id"], "dispute")
    if dp["status"] in ("won", "lost"):
        raise state_error("This dispute is already closed.")
    before = copy.deepcopy(dp)
    p = req.params
    for k, v in (p.get("evidence") or {}).items():
        if k in dp["evidence"] and k != "enhanced_evidence":
            dp["evidence"][k] = v or None
    if p.get("evidence"):
        dp["evidence_details"]["has_evidence"] = True
    apply_metadata(dp, p.get("metadata"))
    if p.get("submit", True) and p.get("evidence"):
        dp["status"] = "under_review"
        dp["evidence_details"]["submission_count"] += 1
    emit("charge.dispute.updated", dp, diff(before, dp))
    return dp


@route("POST", "/v1/disputes/{id}/close", "DisputeCloseParams", returns="dispute")
def close_dispute(req: Request) -> dict[str, Any]:
    dp = get_or_404(req, req.path_params["id"], "dispute")
    if dp["status"] in ("won", "lost"):
        raise state_error("This dispute is already closed.")
    before = copy.deepcopy(dp)
    dp["status"] = "lost"
    emit("charge.dispute.closed", dp, diff(before, dp))
    return dp


@route("GET", "/v1/disputes", "DisputeListParams", returns="dispute")
def list_disputes(req: Request) -> dict[str, Any]:
    p = req.params
    objs = req.store.all("dispute")
    objs = equal_filter(objs, p, ("charge", "payment_intent"))
    objs = created_filter(objs, p.get("created"))
    return list_response(req, objs, "/v1/disputes")


# ------------------------------------------------------------------ triggers (like `stripe trigger`)

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


__all__ = ["PaymentOutcome", "charge_payment_method", "create_balance_transaction", "create_refund",
           "decline_error_fields", "card_fee", "complete_3ds_payment", "AFTER_3DS_HOOKS", "attach_payment_method"]
