"""Balance transactions: what each charge, refund and dispute does to the account balance.

Internal API: `card_fee`, `create_balance_transaction`.
"""
from __future__ import annotations

from typing import Any

from ..helpers import get_or_404
from ..listing import created_filter, equal_filter, list_response
from ..registry import Request, object_type, route
from ..state import new_id

object_type("balance_transaction")

DAY = 86400


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
