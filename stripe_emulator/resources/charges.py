"""Charges: the object a confirmation creates, capture, update, list/search and the receipt page.

Internal API: `build_charge`, `capture_charge`.
"""
from __future__ import annotations

import copy
import html
from typing import Any

from ..errors import StripeError, state_error
from ..events import diff, emit
from ..helpers import apply_metadata, fmt_money, get_or_404, ref_or_400
from ..listing import created_filter, equal_filter, list_response, search_response
from ..registry import HtmlResponse, Request, object_type, route
from ..state import new_id, random_token
from .balance_transactions import create_balance_transaction
from .hosted_page import simple_page as _page

object_type("charge")


def _now_for(req: Any, customer: str | None) -> int:
    return req.store.clock.now_for_customer(customer)


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
    if not succeeded and (failure or {}).get("decline_code") == "fraudulent":
        # Radar's block (pm_card_radarBlock, pm_card_riskLevelHighest): never sent to the card network.
        outcome.update({"network_status": "not_sent_to_network", "reason": "highest_risk_level",
                        "seller_message": "Stripe blocked this payment as too risky.", "type": "blocked"})
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
