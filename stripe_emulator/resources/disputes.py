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
