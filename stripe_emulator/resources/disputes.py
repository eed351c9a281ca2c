"""Disputes (chargebacks): created after a charge on a disputing test card; retrieve, list, update, close.

Internal API: `create_dispute`.
"""
from __future__ import annotations

import copy
from typing import Any

from ..errors import state_error
from ..events import diff, emit
from ..helpers import apply_metadata, get_or_404
from ..listing import created_filter, equal_filter, list_response
from ..registry import Request, object_type, route
from ..state import new_id
from .balance_transactions import DAY, create_balance_transaction

object_type("dispute")


_EVIDENCE_KEYS = [
    "access_activity_log", "billing_address", "cancellation_policy", "cancellation_policy_disclosure",
    "cancellation_rebuttal", "customer_communication", "customer_email_address", "customer_name",
    "customer_purchase_ip", "customer_signature", "duplicate_charge_documentation", "duplicate_charge_explanation",
    "duplicate_charge_id", "product_description", "receipt", "refund_policy", "refund_policy_disclosure",
    "refund_refusal_explanation", "service_date", "service_documentation", "shipping_address", "shipping_carrier",
    "shipping_date", "shipping_documentation", "shipping_tracking_number", "uncategorized_file", "uncategorized_text",
]
DISPUTE_FEE = 1500  # Stripe's US dispute fee in minor units
# Stripe's test evidence: `evidence[uncategorized_text]` with these values decides the dispute at once.
WINNING_EVIDENCE = "winning_evidence"
LOSING_EVIDENCE = "losing_evidence"

# kind (the test card's dispute) -> reason, case type, Visa reason code
_KINDS = {
    "fraudulent": ("fraudulent", "chargeback", "10.4"),
    "product_not_received": ("product_not_received", "chargeback", "13.1"),
    "inquiry": ("fraudulent", "inquiry", "10"),
}


def _dispute_balance_transaction(req: Any, dispute: dict[str, Any], *, amount: int, fee: int, description: str,
                                 category: str) -> dict[str, Any]:
    bt = create_balance_transaction(req, amount=amount, currency=dispute["currency"], type="adjustment",
                                    source=dispute["id"], description=description, fee=fee,
                                    created=req.store.clock.now_for_customer(_customer_of(req, dispute)))
    bt["reporting_category"] = category
    if fee:
        bt["fee_details"] = [{"amount": fee, "application": None, "currency": dispute["currency"],
                              "description": "Dispute fee", "type": "stripe_fee"}]
    dispute["balance_transactions"].append(copy.deepcopy(bt))
    return bt


def _customer_of(req: Any, dispute: dict[str, Any]) -> str | None:
    charge = req.store.get(dispute["charge"], "charge")
    return charge.get("customer") if charge else None


def is_inquiry(dispute: dict[str, Any]) -> bool:
    return dispute["payment_method_details"]["card"]["case_type"] == "inquiry"


def charge_dispute(req: Any, charge_id: str) -> dict[str, Any] | None:
    """The dispute of a charge, if any (a charge has at most one here)."""
    return next((d for d in req.store.all("dispute") if d["charge"] == charge_id), None)


def create_dispute(req: Any, charge: dict[str, Any], kind: str = "fraudulent") -> dict[str, Any]:
    """Open a dispute on a captured charge as the test cards do: a chargeback withdraws the amount and the fee
    (`charge.dispute.funds_withdrawn`); an inquiry moves no money and leaves the charge refundable."""
    reason, case_type, code = _KINDS.get(kind, _KINDS["fraudulent"])
    now = req.store.clock.now_for_customer(charge.get("customer"))
    card = (charge.get("payment_method_details") or {}).get("card") or {}
    inquiry = case_type == "inquiry"
    dispute = {
        "id": new_id("dp"),
        "object": "dispute",
        "amount": charge["amount"],
        "balance_transactions": [],
        "charge": charge["id"],
        "created": now,
        "currency": charge["currency"],
        "enhanced_eligibility_types": [],
        "evidence": {**{k: None for k in _EVIDENCE_KEYS}, "enhanced_evidence": {}},
        "evidence_details": {"due_by": now + 7 * DAY, "enhanced_eligibility": {}, "has_evidence": False,
                             "past_due": False, "submission_count": 0},
        "is_charge_refundable": inquiry,
        "livemode": False,
        "metadata": {},
        "payment_intent": charge.get("payment_intent"),
        "payment_method_details": {"card": {"brand": card.get("brand"), "case_type": case_type,
                                            "network_reason_code": code, "network": card.get("brand")},
                                   "type": "card"},
        "reason": reason,
        "status": "warning_needs_response" if inquiry else "needs_response",
    }
    if not inquiry:
        _dispute_balance_transaction(req, dispute, amount=-charge["amount"], fee=DISPUTE_FEE,
                                     description=f"Chargeback withdrawal for {charge['id']}", category="dispute")
    req.store.add(dispute)
    before = copy.deepcopy(charge)
    charge["disputed"] = True
    emit("charge.dispute.created", dispute)
    if not inquiry:
        emit("charge.dispute.funds_withdrawn", dispute)
    emit("charge.updated", charge, diff(before, charge))
    return dispute


def _close(req: Any, dp: dict[str, Any], won: bool) -> None:
    """Decide a dispute: a won chargeback reinstates the amount (the fee stays withdrawn)."""
    before = copy.deepcopy(dp)
    if is_inquiry(dp):
        dp["status"] = "warning_closed"
    else:
        dp["status"] = "won" if won else "lost"
        if won:
            _dispute_balance_transaction(req, dp, amount=dp["amount"], fee=0, category="dispute_reversal",
                                         description=f"Chargeback reversal for {dp['charge']}")
            emit("charge.dispute.funds_reinstated", dp)
    emit("charge.dispute.closed", dp, diff(before, dp))


def _closed(dp: dict[str, Any]) -> bool:
    return dp["status"] in ("won", "lost", "warning_closed")


@route("GET", "/v1/disputes/{id}", "DisputeRetrieveParams", returns="dispute")
def retrieve_dispute(req: Request) -> dict[str, Any]:
    return get_or_404(req, req.path_params["id"], "dispute")


@route("POST", "/v1/disputes/{id}", "DisputeUpdateParams", returns="dispute")
def update_dispute(req: Request) -> dict[str, Any]:
    dp = get_or_404(req, req.path_params["id"], "dispute")
    if _closed(dp):
        raise state_error("This dispute is already closed.")
    before = copy.deepcopy(dp)
    p = req.params
    for k, v in (p.get("evidence") or {}).items():
        if k in dp["evidence"] and k != "enhanced_evidence":
            dp["evidence"][k] = v or None
    if p.get("evidence"):
        dp["evidence_details"]["has_evidence"] = True
    apply_metadata(dp, p.get("metadata"))
    submitted = bool(p.get("submit", True) and p.get("evidence"))
    if submitted:
        dp["status"] = "warning_under_review" if is_inquiry(dp) else "under_review"
        dp["evidence_details"]["submission_count"] += 1
    emit("charge.dispute.updated", dp, diff(before, dp))
    text = dp["evidence"].get("uncategorized_text")
    if submitted and text in (WINNING_EVIDENCE, LOSING_EVIDENCE):
        _close(req, dp, won=text == WINNING_EVIDENCE)
    return dp


@route("POST", "/v1/disputes/{id}/close", "DisputeCloseParams", returns="dispute")
def close_dispute(req: Request) -> dict[str, Any]:
    """Accepting the dispute: a chargeback is lost, an inquiry is closed."""
    dp = get_or_404(req, req.path_params["id"], "dispute")
    if _closed(dp):
        raise state_error("This dispute is already closed.")
    _close(req, dp, won=False)
    return dp


@route("GET", "/v1/disputes", "DisputeListParams", returns="dispute")
def list_disputes(req: Request) -> dict[str, Any]:
    p = req.params
    objs = req.store.all("dispute")
    objs = equal_filter(objs, p, ("charge", "payment_intent"))
    objs = created_filter(objs, p.get("created"))
    return list_response(req, objs, "/v1/disputes")
