"""Coupons and promotion codes (promotion codes reference a coupon through `promotion`)."""
from __future__ import annotations

import copy
from decimal import Decimal
from typing import Any

from ..errors import StripeError, no_such
from ..events import diff, emit
from ..helpers import apply_metadata, get_or_404, ref_or_400
from ..listing import created_filter, list_response
from ..registry import Request, includable, object_type, route
from ..state import random_token

object_type("coupon")
object_type("promotion_code")
object_type("deleted_coupon")


def coupon_valid(store: Any, coupon: dict[str, Any]) -> bool:
    if coupon.get("max_redemptions") is not None and coupon["times_redeemed"] >= coupon["max_redemptions"]:
        return False
    if coupon.get("redeem_by") is not None and store.clock.now() > coupon["redeem_by"]:
        return False
    return True


@route("POST", "/v1/coupons", "CouponCreateParams", returns="coupon")
def create_coupon(req: Request) -> dict[str, Any]:
    p = req.params
    has_pct, has_amt = "percent_off" in p, "amount_off" in p
    if has_pct == has_amt:
        raise StripeError("Coupons must have either a `percent_off` or an `amount_off`, but not both.",
                          param="percent_off" if not has_pct else "amount_off")
    percent = None
    if has_pct:
        pct = Decimal(p["percent_off"])
        if pct <= 0 or pct > 100:
            raise StripeError("Invalid percent_off: must be greater than 0 and at most 100.", param="percent_off")
        # percent_off is a JSON number in Stripe's object (e.g. 25.5); it is a rate, never money.
        percent = int(pct) if pct == pct.to_integral() else float(pct)
    if has_amt and not p.get("currency"):
        raise StripeError("You must specify a currency when creating an amount_off coupon.", param="currency")
    duration = p.get("duration", "once")
    if duration == "repeating" and not p.get("duration_in_months"):
        raise StripeError("Missing required param: duration_in_months.", code="parameter_missing", param="duration_in_months")
    cid = p.get("id") or random_token(8)
    if req.store.get(cid) is not None:
        raise StripeError("Coupon already exists.", code="resource_already_exists", param="id")
    coupon = {
        "id": cid,
        "object": "coupon",
        "amount_off": p.get("amount_off"),
        "created": req.store.clock.now(),
        "currency": p["currency"].lower() if has_amt else None,
        "duration": duration,
        "duration_in_months": p.get("duration_in_months") if duration == "repeating" else None,
        "livemode": False,
        "max_redemptions": p.get("max_redemptions"),
        "metadata": {},
        "name": p.get("name"),
        "percent_off": percent,
        "redeem_by": p.get("redeem_by"),
        "times_redeemed": 0,
        "valid": True,
    }
    apply_metadata(coupon, p.get("metadata"))
    applies_to = p.get("applies_to")
    req.store.add(coupon, {"applies_to": applies_to.get("products") if applies_to else None})
    emit("coupon.created", coupon)
    return coupon


def _coupon(req: Request, cid: str) -> dict[str, Any]:
    c = req.store.get(cid, "coupon")
    if c is None:
        raise no_such("coupon", cid)
    c["valid"] = coupon_valid(req.store, c)
    return c


@route("GET", "/v1/coupons/{id}", "CouponRetrieveParams", returns="coupon")
def retrieve_coupon(req: Request) -> dict[str, Any]:
    return _coupon(req, req.path_params["id"])


@route("POST", "/v1/coupons/{id}", "CouponUpdateParams", returns="coupon")
def update_coupon(req: Request) -> dict[str, Any]:
    c = _coupon(req, req.path_params["id"])
    before = copy.deepcopy(c)
    if "name" in req.params:
        c["name"] = req.params["name"] or None
    apply_metadata(c, req.params.get("metadata"))
    prev = diff(before, c)
    if prev:
        emit("coupon.updated", c, prev)
    return c


@route("DELETE", "/v1/coupons/{id}", "CouponDeleteParams", returns="deleted_coupon")
def delete_coupon(req: Request) -> dict[str, Any]:
    c = _coupon(req, req.path_params["id"])
    req.store.remove(c["id"])
    emit("coupon.deleted", c)
    return {"id": c["id"], "object": "coupon", "deleted": True}


@route("GET", "/v1/coupons", "CouponListParams", returns="coupon")
def list_coupons(req: Request) -> dict[str, Any]:
    objs = created_filter(req.store.all("coupon"), req.params.get("created"))
    for c in objs:
        c["valid"] = coupon_valid(req.store, c)
    return list_response(req, objs, "/v1/coupons")


# ------------------------------------------------------------------ promotion codes

def promotion_code_usable(store: Any, promo: dict[str, Any], customer: str | None = None, amount: int | None = None) -> str | None:
    """None if `promo` can be applied now, else the reason (used by checkout)."""
    if not promo["active"]:
        return "This promotion code is inactive."
    if promo.get("expires_at") is not None and store.clock.now() > promo["expires_at"]:
        return "This promotion code has expired."
    if promo.get("max_redemptions") is not None and promo["times_redeemed"] >= promo["max_redemptions"]:
        return "This promotion code has been fully redeemed."
    if promo.get("customer") and customer and promo["customer"] != customer:
        return "This promotion code cannot be redeemed by this customer."
    r = promo["restrictions"]
    if r.get("minimum_amount") is not None and amount is not None and amount < r["minimum_amount"]:
        return "This promotion code requires a minimum amount."
    coupon = store.get(promo["promotion"]["coupon"], "coupon")
    if coupon is None or not coupon_valid(store, coupon):
        return "This promotion code's coupon is no longer valid."
    return None


@route("POST", "/v1/promotion_codes", "PromotionCodeCreateParams", returns="promotion_code")
def create_promotion_code(req: Request) -> dict[str, Any]:
    p = req.params
    promotion = p["promotion"]
    if promotion.get("type") != "coupon" or not promotion.get("coupon"):
        raise StripeError("Missing required param: promotion[coupon].", code="parameter_missing", param="promotion[coupon]")
    ref_or_400(req, promotion["coupon"], "coupon", "promotion[coupon]")
    if p.get("customer"):
        ref_or_400(req, p["customer"], "customer", "customer")
    code = p.get("code") or random_token(8).upper()
    for other in req.store.all("promotion_code"):
        if other["active"] and other["code"].lower() == code.lower():
            raise StripeError("An active promotion code with `code` already exists.", param="code")
    r = p.get("restrictions") or {}
    if r.get("minimum_amount") is not None and not r.get("minimum_amount_currency"):
        raise StripeError("You must specify `minimum_amount_currency` with `minimum_amount`.",
                          param="restrictions[minimum_amount_currency]")
    promo = {
        "id": "promo_" + random_token(24),
        "object": "promotion_code",
        "active": p.get("active", True),
        "code": code,
        "created": req.store.clock.now(),
        "customer": p.get("customer"),
        "customer_account": None,
        "expires_at": p.get("expires_at"),
        "livemode": False,
        "max_redemptions": p.get("max_redemptions"),
        "metadata": {},
        "promotion": {"coupon": promotion["coupon"], "type": "coupon"},
        "restrictions": {
            "first_time_transaction": bool(r.get("first_time_transaction", False)),
            "minimum_amount": r.get("minimum_amount"),
            "minimum_amount_currency": (r.get("minimum_amount_currency") or None) and r["minimum_amount_currency"].lower(),
        },
        "times_redeemed": 0,
    }
    apply_metadata(promo, p.get("metadata"))
    req.store.add(promo)
    emit("promotion_code.created", promo)
    return promo


@route("GET", "/v1/promotion_codes/{id}", "PromotionCodeRetrieveParams", returns="promotion_code")
def retrieve_promotion_code(req: Request) -> dict[str, Any]:
    return get_or_404(req, req.path_params["id"], "promotion_code", "promotion code")


@route("POST", "/v1/promotion_codes/{id}", "PromotionCodeUpdateParams", returns="promotion_code")
def update_promotion_code(req: Request) -> dict[str, Any]:
    promo = get_or_404(req, req.path_params["id"], "promotion_code", "promotion code")
    before = copy.deepcopy(promo)
    if "active" in req.params:
        promo["active"] = req.params["active"]
    apply_metadata(promo, req.params.get("metadata"))
    prev = diff(before, promo)
    if prev:
        emit("promotion_code.updated", promo, prev)
    return promo


@route("GET", "/v1/promotion_codes", "PromotionCodeListParams", returns="promotion_code")
def list_promotion_codes(req: Request) -> dict[str, Any]:
    p = req.params
    objs = req.store.all("promotion_code")
    if "active" in p:
        objs = [o for o in objs if o["active"] == p["active"]]
    if "code" in p:
        objs = [o for o in objs if o["code"].lower() == p["code"].lower()]
    if "coupon" in p:
        objs = [o for o in objs if o["promotion"]["coupon"] == p["coupon"]]
    if "customer" in p:
        objs = [o for o in objs if o.get("customer") == p["customer"]]
    objs = created_filter(objs, p.get("created"))
    return list_response(req, objs, "/v1/promotion_codes")


@includable("coupon", "applies_to")
def _applies_to(store: Any, coupon: dict[str, Any]) -> dict[str, Any] | None:
    products = store.private.get(coupon["id"], {}).get("applies_to")
    return {"products": list(products)} if products else None
