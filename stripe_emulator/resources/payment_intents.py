"""PaymentIntent routes: create/confirm/capture/cancel/update/retrieve/list/search."""
from __future__ import annotations

import copy
from typing import Any

from ..errors import StripeError, state_error
from ..events import diff, emit
from ..helpers import apply_metadata, fmt_money, get_or_404, minimum_charge_amount, ref_or_400
from ..listing import created_filter, list_response, search_response
from ..registry import Request, object_type, route
from . import async_payments
from .charges import capture_charge
from .payment_engine import _confirm, _raise_if_failed, build_payment_intent, cancel_pi
from .payment_methods import resolve_payment_method

object_type("payment_intent")


def _check_amount(amount: int, currency: str) -> None:
    minimum = minimum_charge_amount(currency)
    if amount < minimum:
        raise StripeError(f"Amount must be at least {fmt_money(minimum, currency)} {currency.lower()}",
                          code="amount_too_small", param="amount")
    if amount > 99999999:
        raise StripeError("Amount must be no more than $999,999.99", code="amount_too_large", param="amount")


def _payment_method_from(req: Request, p: dict[str, Any]) -> dict[str, Any] | None:
    """`payment_method` (an id or a test id) or `payment_method_data` (Boleto and Pix details, created here)."""
    if p.get("payment_method") and p.get("payment_method_data"):
        raise StripeError("You may only specify one of these parameters: payment_method, payment_method_data.",
                          param="payment_method_data")
    if p.get("payment_method"):
        return resolve_payment_method(req, p["payment_method"])
    data = p.get("payment_method_data")
    if not data:
        return None
    ptype = data.get("type")
    if ptype not in async_payments.ASYNC_TYPES:
        raise StripeError(f"`payment_method_data[type]={ptype}` is not supported by the emulator (boleto and pix are); "
                          "create card payment methods first and pass `payment_method`.", param="payment_method_data[type]")
    return async_payments.create_async_payment_method(req, ptype, data=data.get(ptype),
                                                      billing_details=data.get("billing_details"),
                                                      metadata=data.get("metadata"))


@route("POST", "/v1/payment_intents", "PaymentIntentCreateParams", returns="payment_intent")
def create_payment_intent(req: Request) -> dict[str, Any]:
    p = req.params
    _check_amount(p["amount"], p["currency"])
    async_payments.check_currency(list(p.get("payment_method_types") or []), p["currency"], "currency")
    if p.get("customer"):
        ref_or_400(req, p["customer"], "customer", "customer")
    if p.get("off_session") is not None and not p.get("confirm"):
        raise StripeError("You can only pass in `off_session` when `confirm` is set to true.", param="off_session")
    pm = _payment_method_from(req, p)
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
    pi = get_or_404(req, req.path_params["id"], "payment_intent")
    async_payments.expire_due(req, [pi])
    return pi


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
    pm = _payment_method_from(req, p)
    pm_id = pm["id"] if pm is not None else pi.get("payment_method")
    if not pm_id:
        raise StripeError("You cannot confirm this PaymentIntent because it's missing a payment method. "
                          "You can either update the PaymentIntent with a payment method and then confirm it again, "
                          "or confirm it again directly with a payment method.",
                          code="payment_intent_unexpected_state")
    pm = pm or resolve_payment_method(req, pm_id)
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


@route("GET", "/v1/payment_intents", "PaymentIntentListParams", returns="payment_intent")
def list_payment_intents(req: Request) -> dict[str, Any]:
    p = req.params
    objs = req.store.all("payment_intent")
    async_payments.expire_due(req, objs)
    if "customer" in p:
        objs = [o for o in objs if o.get("customer") == p["customer"]]
    objs = created_filter(objs, p.get("created"))
    return list_response(req, objs, "/v1/payment_intents")


@route("GET", "/v1/payment_intents/search", "PaymentIntentSearchParams", returns="payment_intent")
def search_payment_intents(req: Request) -> dict[str, Any]:
    return search_response(req, req.store.all("payment_intent"),
                           {"amount", "created", "currency", "customer", "metadata", "status"})
