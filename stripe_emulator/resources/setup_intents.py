"""Setup intents: save a card for later (off-session) use, with 3-D Secure when the card needs it."""
from __future__ import annotations

import copy
from typing import Any

from ..errors import StripeError, state_error
from ..events import diff, emit
from ..helpers import apply_metadata, get_or_404, ref_or_400
from ..listing import created_filter, equal_filter, list_response
from ..registry import Request, object_type, route
from ..state import new_id, random_token
from .payment_methods import attach_payment_method, card_behaviour, resolve_payment_method
from .payment_engine import decline_error_fields

object_type("setup_intent")

_FAILS_ON_SETUP = {"decline", "insufficient_funds", "lost_card", "expired", "incorrect_cvc"}


def build_setup_intent(req: Any, p: dict[str, Any]) -> dict[str, Any]:
    si_id = new_id("seti")
    apm = p.get("automatic_payment_methods")
    return {
        "id": si_id,
        "object": "setup_intent",
        "application": None,
        "automatic_payment_methods": {"enabled": bool(apm.get("enabled"))} if apm else None,
        "cancellation_reason": None,
        "client_secret": f"{si_id}_secret_{random_token(32)}",
        "created": req.store.clock.now_for_customer(p.get("customer")),
        "customer": p.get("customer"),
        "description": p.get("description"),
        "excluded_payment_method_types": p.get("excluded_payment_method_types"),
        "flow_directions": p.get("flow_directions"),
        "last_setup_error": None,
        "latest_attempt": None,
        "livemode": False,
        "mandate": None,
        "metadata": {},
        "next_action": None,
        "on_behalf_of": None,
        "payment_method": None,
        "payment_method_configuration_details": None,
        "payment_method_options": {"card": {"mandate_options": None, "network": None, "request_three_d_secure": "automatic"}},
        "payment_method_types": list(p.get("payment_method_types") or ["card"]),
        "single_use_mandate": None,
        "status": "requires_payment_method",
        "usage": p.get("usage", "off_session"),
    }


def _succeed(req: Any, si: dict[str, Any], pm: dict[str, Any]) -> None:
    si["status"] = "succeeded"
    si["next_action"] = None
    si["last_setup_error"] = None
    req.store.priv(pm["id"])["authenticated_for_off_session"] = True
    if si.get("customer") and pm.get("customer") != si["customer"]:
        cus = req.store.get(si["customer"], "customer")
        if cus is not None:
            attach_payment_method(req, pm, cus)
    emit("setup_intent.succeeded", si)


def _fail(req: Any, si: dict[str, Any], pm: dict[str, Any], behaviour: str) -> dict[str, str]:
    fields = decline_error_fields(behaviour)
    err = {"type": "card_error", "code": fields["code"], "message": fields["message"],
           "doc_url": "https://stripe.com/docs/error-codes/" + fields["code"].replace("_", "-"),
           "payment_method": copy.deepcopy(pm)}
    if fields.get("decline_code"):
        err["decline_code"] = fields["decline_code"]
    si["last_setup_error"] = err
    si["status"] = "requires_payment_method"
    si["payment_method"] = None
    si["next_action"] = None
    emit("setup_intent.setup_failed", si)
    return fields


def _confirm(req: Request, si: dict[str, Any], pm: dict[str, Any], return_url: str | None) -> None:
    si["payment_method"] = pm["id"]
    behaviour = card_behaviour(req, pm["id"])
    if behaviour in _FAILS_ON_SETUP:
        fields = _fail(req, si, pm, behaviour)
        raise StripeError(fields["message"], status=402, type="card_error", code=fields["code"],
                          decline_code=fields.get("decline_code") or None,
                          extra={"setup_intent": copy.deepcopy(si), "payment_method": copy.deepcopy(pm)})
    if behaviour in ("3ds", "3ds_setup"):
        si["status"] = "requires_action"
        url = f"{req.emulator.public_url}/_emulator/3ds/{si['id']}"
        si["next_action"] = ({"type": "redirect_to_url", "redirect_to_url": {"return_url": return_url, "url": url}}
                             if return_url else
                             {"type": "use_stripe_sdk", "use_stripe_sdk": {"type": "three_d_secure_redirect", "stripe_js": url}})
        req.store.priv(si["id"])["return_url"] = return_url
        emit("setup_intent.requires_action", si)
        return
    _succeed(req, si, pm)


def confirm_with_payment_method(req: Any, si: dict[str, Any], pm: dict[str, Any], *, return_url: str | None) -> None:
    """Confirm `si` with `pm` (Checkout's setup mode uses this for its session's SetupIntent): succeeds, fails with
    a 402 card error, or waits in `requires_action` for the 3-D Secure page."""
    _confirm(req, si, pm, return_url)


def complete_3ds_setup(req: Any, si: dict[str, Any], approve: bool) -> None:
    pm = req.store.get(si["payment_method"], "payment_method")
    assert pm is not None
    if approve:
        _succeed(req, si, pm)
    else:
        _fail(req, si, pm, "3ds_failed")


@route("POST", "/v1/setup_intents", "SetupIntentCreateParams", returns="setup_intent")
def create_setup_intent(req: Request) -> dict[str, Any]:
    p = req.params
    if p.get("customer"):
        ref_or_400(req, p["customer"], "customer", "customer")
    pm = resolve_payment_method(req, p["payment_method"]) if p.get("payment_method") else None
    si = build_setup_intent(req, p)
    apply_metadata(si, p.get("metadata"))
    if pm is not None:
        si["payment_method"] = pm["id"]
        si["status"] = "requires_confirmation"
    req.store.add(si)
    emit("setup_intent.created", si)
    if p.get("confirm"):
        if pm is None:
            raise StripeError("You cannot confirm this SetupIntent because it's missing a payment method.",
                              code="setup_intent_unexpected_state")
        _confirm(req, si, pm, p.get("return_url"))
    return si


@route("GET", "/v1/setup_intents/{id}", "SetupIntentRetrieveParams", returns="setup_intent")
def retrieve_setup_intent(req: Request) -> dict[str, Any]:
    return get_or_404(req, req.path_params["id"], "setup_intent")


@route("POST", "/v1/setup_intents/{id}", "SetupIntentUpdateParams", returns="setup_intent")
def update_setup_intent(req: Request) -> dict[str, Any]:
    si = get_or_404(req, req.path_params["id"], "setup_intent")
    before = copy.deepcopy(si)
    p = req.params
    if "customer" in p:
        si["customer"] = ref_or_400(req, p["customer"], "customer", "customer")["id"] if p["customer"] else None
    if "description" in p:
        si["description"] = p["description"] or None
    if "payment_method" in p:
        if si["status"] not in ("requires_payment_method", "requires_confirmation"):
            raise state_error(f"You cannot update this SetupIntent because it has a status of {si['status']}.",
                              code="setup_intent_unexpected_state")
        si["payment_method"] = resolve_payment_method(req, p["payment_method"])["id"]
        si["status"] = "requires_confirmation"
    apply_metadata(si, p.get("metadata"))
    prev = diff(before, si)
    if prev:
        emit("setup_intent.updated", si, prev)
    return si


@route("POST", "/v1/setup_intents/{id}/confirm", "SetupIntentConfirmParams", returns="setup_intent")
def confirm_setup_intent(req: Request) -> dict[str, Any]:
    si = get_or_404(req, req.path_params["id"], "setup_intent")
    if si["status"] not in ("requires_payment_method", "requires_confirmation", "requires_action"):
        raise state_error(f"You cannot confirm this SetupIntent because it has a status of {si['status']}.",
                          code="setup_intent_unexpected_state")
    pm_id = req.params.get("payment_method") or si.get("payment_method")
    if not pm_id:
        raise StripeError("You cannot confirm this SetupIntent because it's missing a payment method.",
                          code="setup_intent_unexpected_state")
    _confirm(req, si, resolve_payment_method(req, pm_id), req.params.get("return_url"))
    return si


@route("POST", "/v1/setup_intents/{id}/cancel", "SetupIntentCancelParams", returns="setup_intent")
def cancel_setup_intent(req: Request) -> dict[str, Any]:
    si = get_or_404(req, req.path_params["id"], "setup_intent")
    if si["status"] in ("succeeded", "canceled", "processing"):
        raise state_error(
            f"You cannot cancel this SetupIntent because it has a status of {si['status']}. Only a SetupIntent with "
            "one of the following statuses may be canceled: requires_payment_method, requires_confirmation, requires_action.",
            code="setup_intent_unexpected_state")
    si["status"] = "canceled"
    si["cancellation_reason"] = req.params.get("cancellation_reason")
    si["next_action"] = None
    emit("setup_intent.canceled", si)
    return si


@route("GET", "/v1/setup_intents", "SetupIntentListParams", returns="setup_intent")
def list_setup_intents(req: Request) -> dict[str, Any]:
    p = req.params
    objs = req.store.all("setup_intent")
    objs = equal_filter(objs, p, ("customer", "payment_method"))
    objs = created_filter(objs, p.get("created"))
    return list_response(req, objs, "/v1/setup_intents")
