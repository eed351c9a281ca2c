"""Legacy plans (`/v1/plans`). A plan is a recurring price seen through the older `plan` shape: creating a plan
creates a price with the same id (so `items[][price]` and `items[][plan]` both take it), and every recurring
price is listed and retrievable as a plan, as on Stripe."""
from __future__ import annotations

import copy
from typing import Any

from ..errors import StripeError
from ..events import diff, emit
from ..helpers import apply_metadata
from ..listing import created_filter, list_response
from ..registry import Request, object_type, route
from .catalog import _create_price
from .subscriptions import plan_from_price

object_type("plan")
object_type("deleted_plan")


def _plan_price(req: Request, oid: str) -> dict[str, Any]:
    price = req.store.get(oid, "price")
    if price is None or not price.get("recurring") or req.store.priv(oid).get("plan_deleted"):
        raise StripeError(f"No such plan: '{oid}'", status=404, code="resource_missing", param="id")
    return price


@route("POST", "/v1/plans", "PlanCreateParams", returns="plan")
def create_plan(req: Request) -> dict[str, Any]:
    p = req.params
    if p.get("id") and p["id"] in req.store.objects:
        raise StripeError("Plan already exists.", code="resource_already_exists", param="id")
    if p.get("billing_scheme", "per_unit") == "per_unit" and "amount" not in p and "amount_decimal" not in p:
        raise StripeError("Missing required param: amount.", code="parameter_missing", param="amount")
    product = p.get("product")
    if product is None:
        raise StripeError("Missing required param: product.", code="parameter_missing", param="product")
    price_p: dict[str, Any] = {
        "currency": p["currency"],
        "recurring": {k: v for k, v in {"interval": p["interval"], "interval_count": p.get("interval_count"),
                                        "usage_type": p.get("usage_type"), "meter": p.get("meter"),
                                        "trial_period_days": p.get("trial_period_days")}.items() if v is not None},
        **({"product": product} if isinstance(product, str) else {"product_data": product}),
        **{k: p[k] for k in ("active", "nickname", "metadata", "billing_scheme", "tiers", "tiers_mode") if k in p},
    }
    if "amount" in p:
        price_p["unit_amount"] = p["amount"]
    if "amount_decimal" in p:
        price_p["unit_amount_decimal"] = p["amount_decimal"]
    price = _create_price(req, price_p, price_id=p.get("id"))
    plan = plan_from_price(price)
    if p.get("transform_usage"):
        plan["transform_usage"] = dict(p["transform_usage"])
        req.store.priv(price["id"])["transform_usage"] = plan["transform_usage"]
    emit("plan.created", plan)
    return plan


def _plan(req: Request, price: dict[str, Any]) -> dict[str, Any]:
    plan = plan_from_price(price)
    plan["transform_usage"] = req.store.priv(price["id"]).get("transform_usage")
    return plan


@route("GET", "/v1/plans/{id}", "PlanRetrieveParams", returns="plan")
def retrieve_plan(req: Request) -> dict[str, Any]:
    return _plan(req, _plan_price(req, req.path_params["id"]))


@route("POST", "/v1/plans/{id}", "PlanUpdateParams", returns="plan")
def update_plan(req: Request) -> dict[str, Any]:
    price = _plan_price(req, req.path_params["id"])
    p = req.params
    before_price = copy.deepcopy(price)
    before = _plan(req, price)
    if "product" in p:
        if req.store.get(p["product"], "product") is None:
            raise StripeError(f"No such product: '{p['product']}'", code="resource_missing", param="product")
        price["product"] = p["product"]
    if "active" in p:
        price["active"] = p["active"]
    if "nickname" in p:
        price["nickname"] = p["nickname"] or None
    if "trial_period_days" in p:
        price["recurring"]["trial_period_days"] = p["trial_period_days"]
    apply_metadata(price, p.get("metadata"))
    plan = _plan(req, price)
    if diff(before, plan):
        emit("plan.updated", plan, diff(before, plan))
        emit("price.updated", price, diff(before_price, price))
    return plan


@route("DELETE", "/v1/plans/{id}", "PlanDeleteParams", returns="deleted_plan")
def delete_plan(req: Request) -> dict[str, Any]:
    price = _plan_price(req, req.path_params["id"])
    plan = _plan(req, price)
    # Existing subscriptions keep billing a deleted plan (their items point at the price), so the price stays in
    # the store, inactive; only the plans API forgets it.
    req.store.priv(price["id"])["plan_deleted"] = True
    price["active"] = False
    emit("plan.deleted", plan)
    return {"id": plan["id"], "object": "plan", "deleted": True}


@route("GET", "/v1/plans", "PlanListParams", returns="plan")
def list_plans(req: Request) -> dict[str, Any]:
    p = req.params
    prices = [pr for pr in req.store.all("price")
              if pr.get("recurring") and not req.store.priv(pr["id"]).get("plan_deleted")]
    if "active" in p:
        prices = [pr for pr in prices if pr["active"] == p["active"]]
    if "product" in p:
        prices = [pr for pr in prices if pr["product"] == p["product"]]
    prices = created_filter(prices, p.get("created"))
    return list_response(req, [_plan(req, pr) for pr in prices], "/v1/plans")
