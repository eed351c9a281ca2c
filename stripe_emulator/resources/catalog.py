"""Products and prices (one-time, recurring, metered with a billing meter, lookup keys, currency options)."""
from __future__ import annotations

import copy
from decimal import Decimal, InvalidOperation
from typing import Any

from ..errors import StripeError, no_such, state_error
from ..events import diff, emit
from ..helpers import apply_metadata, get_or_404
from ..listing import created_filter, equal_filter, list_response, search_response
from ..registry import Request, includable, object_type, route
from ..state import new_id

object_type("product")
object_type("price")
object_type("deleted_product")


# ------------------------------------------------------------------ products

def _product(req: Request, p: dict[str, Any]) -> dict[str, Any]:
    now = req.store.clock.now()
    pid = p.get("id") or new_id("prod", 14)
    if pid in req.store.objects:
        raise StripeError(f"Product already exists.", code="resource_already_exists", param="id")
    prod = {
        "id": pid,
        "object": "product",
        "active": p.get("active", True),
        "created": now,
        "default_price": None,
        "description": p.get("description") or None,
        "images": list(p.get("images") or []),
        "livemode": False,
        "marketing_features": [{"name": f.get("name")} for f in (p.get("marketing_features") or [])],
        "metadata": {},
        "name": p["name"],
        "package_dimensions": p.get("package_dimensions") or None,
        "shippable": p.get("shippable"),
        "statement_descriptor": p.get("statement_descriptor") or None,
        "tax_code": p.get("tax_code") or None,
        "type": p.get("type", "service"),
        "unit_label": p.get("unit_label") or None,
        "updated": now,
        "url": p.get("url") or None,
    }
    apply_metadata(prod, p.get("metadata"))
    return prod


@route("POST", "/v1/products", "ProductCreateParams", returns="product")
def create_product(req: Request) -> dict[str, Any]:
    p = req.params
    prod = _product(req, p)
    req.store.add(prod)
    emit("product.created", prod)
    if p.get("default_price_data"):
        d = dict(p["default_price_data"])
        d["product"] = prod["id"]
        price = _create_price(req, d)
        prod["default_price"] = price["id"]
    return prod


@route("GET", "/v1/products/{id}", "ProductRetrieveParams", returns="product")
def retrieve_product(req: Request) -> dict[str, Any]:
    return get_or_404(req, req.path_params["id"], "product")


@route("POST", "/v1/products/{id}", "ProductUpdateParams", returns="product")
def update_product(req: Request) -> dict[str, Any]:
    prod = get_or_404(req, req.path_params["id"], "product")
    before = copy.deepcopy(prod)
    p = req.params
    for k in ("active", "shippable"):
        if k in p:
            prod[k] = p[k]
    for k in ("name",):
        if k in p:
            prod[k] = p[k]
    for k in ("description", "statement_descriptor", "tax_code", "unit_label", "url"):
        if k in p:
            prod[k] = p[k] or None
    if "images" in p:
        prod["images"] = list(p["images"] or [])
    if "marketing_features" in p:
        prod["marketing_features"] = [{"name": f.get("name")} for f in (p["marketing_features"] or [])]
    if "package_dimensions" in p:
        prod["package_dimensions"] = p["package_dimensions"] or None
    if "default_price" in p:
        if p["default_price"]:
            price = req.store.get(p["default_price"], "price")
            if price is None or price["product"] != prod["id"]:
                raise StripeError(f"No such price: '{p['default_price']}'", code="resource_missing", param="default_price")
            if not price["active"]:
                raise StripeError("The default price must be active.", param="default_price")
        prod["default_price"] = p["default_price"] or None
    apply_metadata(prod, p.get("metadata"))
    prev = diff(before, prod)
    if prev:
        prod["updated"] = req.store.clock.now()
        emit("product.updated", prod, prev)
    return prod


@route("DELETE", "/v1/products/{id}", "ProductDeleteParams", returns="deleted_product")
def delete_product(req: Request) -> dict[str, Any]:
    prod = get_or_404(req, req.path_params["id"], "product")
    if any(pr["product"] == prod["id"] for pr in req.store.all("price")):
        raise state_error("This product cannot be deleted because it has one or more user-created prices.",
                          )
    req.store.remove(prod["id"])
    emit("product.deleted", prod)
    return {"id": prod["id"], "object": "product", "deleted": True}


@route("GET", "/v1/products", "ProductListParams", returns="product")
def list_products(req: Request) -> dict[str, Any]:
    p = req.params
    objs = req.store.all("product")
    if "active" in p:
        objs = [o for o in objs if o["active"] == p["active"]]
    if "ids" in p:
        ids = set(p["ids"])
        objs = [o for o in objs if o["id"] in ids]
    if "shippable" in p:
        objs = [o for o in objs if o.get("shippable") == p["shippable"]]
    if "url" in p:
        objs = [o for o in objs if o.get("url") == p["url"]]
    objs = created_filter(objs, p.get("created"))
    return list_response(req, objs, "/v1/products")


@route("GET", "/v1/products/search", "ProductSearchParams", returns="product")
def search_products(req: Request) -> dict[str, Any]:
    return search_response(req, req.store.all("product"), {"active", "created", "description", "metadata", "name", "shippable", "url"})


# ------------------------------------------------------------------ prices

def _decimal_str(value: Any, param: str) -> str:
    try:
        d = Decimal(str(value))
    except InvalidOperation:
        raise StripeError(f"Invalid decimal: {value}", param=param) from None
    return format(d.normalize(), "f") if d != d.to_integral() else str(int(d))


def _price_amounts(src: dict[str, Any], param_prefix: str, allow_missing: bool = False) -> tuple[int | None, str | None, Any]:
    if "unit_amount" in src and "unit_amount_decimal" in src:
        raise StripeError("You may only specify one of these parameters: unit_amount, unit_amount_decimal.",
                          param=f"{param_prefix}unit_amount_decimal")
    if "unit_amount" in src:
        ua = src["unit_amount"]
        if ua < 0:
            raise StripeError("This value must be greater than or equal to 0.", param=f"{param_prefix}unit_amount")
        return ua, str(ua), None
    if "unit_amount_decimal" in src:
        dec = _decimal_str(src["unit_amount_decimal"], f"{param_prefix}unit_amount_decimal")
        whole = Decimal(dec)
        return (int(whole) if whole == whole.to_integral() else None), dec, None
    if src.get("custom_unit_amount"):
        cua = src["custom_unit_amount"]
        return None, None, {"maximum": cua.get("maximum"), "minimum": cua.get("minimum"), "preset": cua.get("preset")}
    return None, None, None


def _create_price(req: Request, p: dict[str, Any], *, price_id: str | None = None) -> dict[str, Any]:
    """`price_id`: a caller-chosen id (legacy plans take one: `POST /v1/plans id=gold`)."""
    store = req.store
    if "product" in p and "product_data" in p:
        raise StripeError("You may only specify one of these parameters: product, product_data.", param="product_data")
    if "product" in p:
        prod = store.get(p["product"], "product")
        if prod is None:
            raise StripeError(f"No such product: '{p['product']}'", code="resource_missing", param="product")
    elif "product_data" in p:
        pd = dict(p["product_data"])
        prod = _product(req, {k: v for k, v in pd.items() if k in ("name", "active", "metadata", "statement_descriptor", "tax_code", "unit_label", "id")})
        store.add(prod)
        emit("product.created", prod)
    else:
        raise StripeError("Missing required param: product.", code="parameter_missing", param="product")
    billing_scheme = p.get("billing_scheme", "per_unit")
    unit_amount, unit_amount_decimal, custom = _price_amounts(p, "")
    tiers = None
    if billing_scheme == "tiered":
        if not p.get("tiers") or not p.get("tiers_mode"):
            raise StripeError("Missing required param: tiers.", code="parameter_missing", param="tiers")
        tiers = []
        for t in p["tiers"]:
            up_to = t.get("up_to")
            tiers.append({"flat_amount": t.get("flat_amount"), "flat_amount_decimal": str(t["flat_amount"]) if "flat_amount" in t else t.get("flat_amount_decimal"),
                          "unit_amount": t.get("unit_amount"), "unit_amount_decimal": str(t["unit_amount"]) if "unit_amount" in t else t.get("unit_amount_decimal"),
                          "up_to": None if up_to == "inf" else up_to})
    elif unit_amount_decimal is None and custom is None:
        raise StripeError("Missing required param: unit_amount.", code="parameter_missing", param="unit_amount")
    recurring = None
    if p.get("recurring"):
        r = p["recurring"]
        usage_type = r.get("usage_type", "licensed")
        meter = r.get("meter")
        if usage_type == "metered" and not meter:
            raise StripeError("You must provide `recurring[meter]` when `recurring[usage_type]` is `metered`: "
                              "usage-based prices are backed by a billing meter.", param="recurring[meter]")
        if meter and usage_type != "metered":
            raise StripeError("`recurring[meter]` can only be set when `recurring[usage_type]` is `metered`.",
                              param="recurring[meter]")
        if meter and store.get(meter, "billing.meter") is None:
            raise StripeError(f"No such billing meter: '{meter}'", code="resource_missing", param="recurring[meter]")
        interval_count = r.get("interval_count", 1)
        limits = {"day": 365, "week": 52, "month": 12, "year": 1}
        if interval_count < 1 or interval_count > limits[r["interval"]]:
            raise StripeError("Invalid interval_count: the maximum billing period is one year.", param="recurring[interval_count]")
        recurring = {"interval": r["interval"], "interval_count": interval_count, "meter": meter,
                     "trial_period_days": r.get("trial_period_days"), "usage_type": usage_type}
    currency = p["currency"].lower()
    currency_options = None
    if p.get("currency_options"):
        currency_options = {}
        for cur, opt in p["currency_options"].items():
            cur = cur.lower()
            if cur == currency:
                raise StripeError("currency_options cannot include the price's own currency.", param=f"currency_options[{cur}]")
            ua, uad, cu = _price_amounts(opt, f"currency_options[{cur}][")
            if uad is None and cu is None and not opt.get("tiers"):
                raise StripeError("Missing required param: unit_amount.", code="parameter_missing",
                                  param=f"currency_options[{cur}][unit_amount]")
            currency_options[cur] = {"custom_unit_amount": cu, "tax_behavior": opt.get("tax_behavior", "unspecified"),
                                     "unit_amount": ua, "unit_amount_decimal": uad}
    lookup_key = p.get("lookup_key") or None
    if lookup_key:
        holders = [pr for pr in store.all("price") if pr.get("lookup_key") == lookup_key]
        if holders and not p.get("transfer_lookup_key"):
            raise StripeError(f"A price (`{holders[0]['id']}`) already uses that lookup key.", param="lookup_key")
        for old in holders:
            before = copy.deepcopy(old)
            old["lookup_key"] = None
            emit("price.updated", old, diff(before, old))
    price = {
        "id": price_id or new_id("price"),
        "object": "price",
        "active": p.get("active", True),
        "billing_scheme": billing_scheme,
        "created": store.clock.now(),
        "currency": currency,
        "custom_unit_amount": custom,
        "livemode": False,
        "lookup_key": lookup_key,
        "metadata": {},
        "nickname": p.get("nickname") or None,
        "product": prod["id"],
        "recurring": recurring,
        "tax_behavior": p.get("tax_behavior", "unspecified"),
        "tiers_mode": p.get("tiers_mode") if billing_scheme == "tiered" else None,
        "transform_quantity": p.get("transform_quantity") or None,
        "type": "recurring" if recurring else "one_time",
        "unit_amount": unit_amount,
        "unit_amount_decimal": unit_amount_decimal,
    }
    apply_metadata(price, p.get("metadata"))
    store.add(price, {"currency_options": currency_options, "tiers": tiers})
    emit("price.created", price)
    return price


@includable("price", "currency_options")
def _currency_options(store: Any, price: dict[str, Any]) -> Any:
    opts = copy.deepcopy(store.private.get(price["id"], {}).get("currency_options") or {})
    opts[price["currency"]] = {"custom_unit_amount": price["custom_unit_amount"], "tax_behavior": price["tax_behavior"],
                               "unit_amount": price["unit_amount"], "unit_amount_decimal": price["unit_amount_decimal"]}
    return opts


@includable("price", "tiers")
def _tiers(store: Any, price: dict[str, Any]) -> Any:
    return copy.deepcopy(store.private.get(price["id"], {}).get("tiers"))


def price_amount_for(store: Any, price: dict[str, Any], currency: str | None) -> int | None:
    """Unit amount of a price in `currency` (its own or one of its currency_options); None if not offered."""
    if currency is None or currency.lower() == price["currency"]:
        return price["unit_amount"]
    opts = store.private.get(price["id"], {}).get("currency_options") or {}
    opt = opts.get(currency.lower())
    return None if opt is None else opt["unit_amount"]


def price_unit_decimal_for(store: Any, price: dict[str, Any], currency: str | None) -> Decimal | None:
    """
    Unit amount of a price in `currency` as a Decimal of minor units, including fractional `unit_amount_decimal`
    prices (metered usage at 0.2 cents a call); None if the price is not offered in that currency.
    """
    if currency is None or currency.lower() == price["currency"]:
        source: dict[str, Any] | None = price
    else:
        source = (store.private.get(price["id"], {}).get("currency_options") or {}).get(currency.lower())
    if source is None:
        return None
    if source.get("unit_amount_decimal") not in (None, ""):
        return Decimal(str(source["unit_amount_decimal"]))
    return None if source.get("unit_amount") is None else Decimal(source["unit_amount"])


def price_offers_currency(store: Any, price: dict[str, Any], currency: str | None) -> bool:
    """Whether a price can be charged in `currency` (whole or fractional unit amount in it)."""
    return price_unit_decimal_for(store, price, currency) is not None


@route("POST", "/v1/prices", "PriceCreateParams", returns="price")
def create_price(req: Request) -> dict[str, Any]:
    return _create_price(req, req.params)


@route("GET", "/v1/prices/{id}", "PriceRetrieveParams", returns="price")
def retrieve_price(req: Request) -> dict[str, Any]:
    return get_or_404(req, req.path_params["id"], "price")


@route("POST", "/v1/prices/{id}", "PriceUpdateParams", returns="price")
def update_price(req: Request) -> dict[str, Any]:
    price = get_or_404(req, req.path_params["id"], "price")
    before = copy.deepcopy(price)
    p = req.params
    if "active" in p:
        price["active"] = p["active"]
    if "nickname" in p:
        price["nickname"] = p["nickname"] or None
    if "tax_behavior" in p:
        price["tax_behavior"] = p["tax_behavior"]
    if "lookup_key" in p:
        key = p["lookup_key"] or None
        if key:
            holders = [pr for pr in req.store.all("price") if pr.get("lookup_key") == key and pr["id"] != price["id"]]
            if holders and not p.get("transfer_lookup_key"):
                raise StripeError(f"A price (`{holders[0]['id']}`) already uses that lookup key.", param="lookup_key")
            for old in holders:
                ob = copy.deepcopy(old)
                old["lookup_key"] = None
                emit("price.updated", old, diff(ob, old))
        price["lookup_key"] = key
    if "currency_options" in p:
        opts = req.store.priv(price["id"]).get("currency_options") or {}
        for cur, opt in (p["currency_options"] or {}).items():
            ua, uad, cu = _price_amounts(opt, f"currency_options[{cur}][")
            opts[cur.lower()] = {"custom_unit_amount": cu, "tax_behavior": opt.get("tax_behavior", "unspecified"),
                                 "unit_amount": ua, "unit_amount_decimal": uad}
        req.store.priv(price["id"])["currency_options"] = opts
    apply_metadata(price, p.get("metadata"))
    prev = diff(before, price)
    if prev:
        emit("price.updated", price, prev)
    return price


@route("GET", "/v1/prices", "PriceListParams", returns="price")
def list_prices(req: Request) -> dict[str, Any]:
    p = req.params
    objs = req.store.all("price")
    if "active" in p:
        objs = [o for o in objs if o["active"] == p["active"]]
    objs = equal_filter(objs, p, ("currency", "product", "type"))
    if "lookup_keys" in p:
        keys = set(p["lookup_keys"])
        objs = [o for o in objs if o.get("lookup_key") in keys]
    if "recurring" in p:
        r = p["recurring"]
        objs = [o for o in objs if o.get("recurring")
                and all(o["recurring"].get(k) == v for k, v in r.items())]
    objs = created_filter(objs, p.get("created"))
    return list_response(req, objs, "/v1/prices")


@route("GET", "/v1/prices/search", "PriceSearchParams", returns="price")
def search_prices(req: Request) -> dict[str, Any]:
    return search_response(req, req.store.all("price"), {"active", "created", "currency", "lookup_key", "metadata", "product", "type"})


__all__ = ["price_amount_for", "price_offers_currency", "price_unit_decimal_for", "no_such"]


# dj-stripe lists a product's entitlement features when syncing it. Entitlements are not emulated, so a
# product never has any: the list is served (validated like Stripe's) and always empty.
@route("GET", "/v1/products/{product}/features", "ProductFeatureListParams", returns="product_feature")
def list_product_features(req: Request) -> dict[str, Any]:
    prod_id = req.path_params["product"]
    get_or_404(req, prod_id, "product")
    return list_response(req, [], f"/v1/products/{prod_id}/features")
