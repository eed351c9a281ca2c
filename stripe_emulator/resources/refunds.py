"""Refunds of charges: create (by charge or PaymentIntent), retrieve, update, list, the charge's refund list.

Internal API: `refund_charge(req, charge_id=..., amount=None, reason=None, metadata=None)` creates a refund on a
charge with the checks and events of `POST /v1/refunds` (credit notes and the back office flows call it).
"""
from __future__ import annotations

import copy
import threading
from typing import Any

from ..context import using
from ..errors import StripeError, no_such, state_error
from ..events import diff, emit
from ..helpers import apply_metadata, fmt_money, get_or_404
from ..listing import created_filter, equal_filter, list_response
from ..internal import internal_request
from ..registry import Request, object_type, route
from ..state import new_id
from .balance_transactions import create_balance_transaction
from .disputes import charge_dispute, is_inquiry
from .payment_methods import card_traits

object_type("refund")


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
    if (charge.get("payment_method_details") or {}).get("type") == "boleto":
        raise state_error("Boleto payments cannot be refunded.", code="charge_not_refundable", param=param)
    dispute = charge_dispute(req, charge["id"]) if charge["disputed"] else None
    if dispute is not None and not is_inquiry(dispute):
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
        "destination_details": ({"card": {"type": "refund"}, "type": "card"}
                                if (charge.get("payment_method_details") or {}).get("type", "card") == "card"
                                else {"pix": {"reference": None, "reference_status": "pending"}, "type": "pix"}),
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
    if card_traits(req, charge.get("payment_method")).get("refund_fails"):
        _fail_later(req.emulator, refund["id"])
    return refund


# pm_card_refundFail: the refund succeeds, then fails "some time later" (this long, on a timer thread).
REFUND_FAILURE_DELAY = 0.3


def _fail_later(emulator: Any, refund_id: str) -> None:
    def run() -> None:
        with emulator.store.lock, using(emulator):
            refund = emulator.store.get(refund_id, "refund")
            if refund is not None and refund["status"] == "succeeded":
                fail_refund(internal_request(emulator), refund)

    timer = threading.Timer(REFUND_FAILURE_DELAY, run)
    timer.daemon = True
    timer.start()


def fail_refund(req: Any, refund: dict[str, Any], reason: str = "expired_or_canceled_card") -> dict[str, Any]:
    """The card network returns the refund: the amount comes back to the balance (a `refund_failure` balance
    transaction), the charge is no longer (that much) refunded; `charge.refund.updated`, `refund.updated`,
    `refund.failed`."""
    before = copy.deepcopy(refund)
    now = req.store.clock.now_for_customer(refund.get("customer"))
    bt = create_balance_transaction(req, amount=refund["amount"], currency=refund["currency"], type="refund_failure",
                                    source=refund["id"], description="REFUND FAILURE", created=now)
    refund["status"] = "failed"
    refund["failure_reason"] = reason
    refund["failure_balance_transaction"] = bt["id"]
    charge = req.store.get(refund["charge"], "charge")
    if charge is not None:
        charge["amount_refunded"] -= refund["amount"]
        charge["refunded"] = False
        _sync_charge_refunds(req, charge)
    prev = diff(before, refund)
    emit("charge.refund.updated", refund, prev)
    emit("refund.updated", refund, prev)
    emit("refund.failed", refund, prev)
    return refund


@route("POST", "/_emulator/refunds/{id}/fail", auth=False, idempotent=False)
def fail_refund_now(req: Request) -> dict[str, Any]:
    """Test-mode control: make a succeeded refund fail now (as pm_card_refundFail's refunds do later)."""
    refund = req.store.get(req.path_params["id"], "refund")
    if refund is None:
        raise no_such("refund", req.path_params["id"])
    if refund["status"] != "succeeded":
        raise state_error(f"Refund {refund['id']} has a status of {refund['status']}; only a succeeded refund can fail.")
    return fail_refund(req, refund)


# The name other resources should call; `create_refund` is kept for existing callers.
refund_charge = create_refund


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
