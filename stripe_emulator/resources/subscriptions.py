"""Subscriptions and subscription items (classic billing mode), prorations, create_preview, and the time
machine that test clocks drive (trial end, renewals, dunning).

Shapes follow the pinned API version: `current_period_start/end` live on each subscription item, the first
invoice is `latest_invoice`, and a subscription's invoices point back to it through `parent`.

Proration (Stripe's classic algorithm): for an item changed at `proration_date` inside the period
[start, end), the unused time on the old price is credited and the remaining time on the new price is
charged, each amount = unit_amount * quantity * (end - proration_date) / (end - start), rounded to a
minor unit. The same function prices `POST /v1/invoices/create_preview`, so a preview with a given
`proration_date` equals what the real update with that date invoices.
"""
from __future__ import annotations

import copy
from typing import Any, Callable

from ..context import using
from ..errors import StripeError, state_error
from ..events import diff, emit
from ..helpers import apply_metadata, get_or_404, ref_or_400
from ..internal import internal_request
from ..listing import created_filter, list_response, search_response
from ..registry import Request, object_type, route, trigger
from ..state import new_id, random_token
from . import invoices as inv_mod
from .billing_common import DAY, add_interval, anchor_day_of, fmt_date, prorate
from .catalog import _create_price
from .customers import DELETE_HOOKS, build_customer
from .meters import usage_for
from .payment_methods import attach_payment_method, card_behaviour, resolve_payment_method

object_type("subscription")
object_type("subscription_item")
object_type("deleted_subscription_item")
object_type("plan")

ACTIVE_LIKE = ("active", "past_due", "trialing", "unpaid")
# fn(req, subscription, reason) after a subscription is canceled (reason: cancellation_requested | payment_failed);
# subscription schedules register here (they import subscriptions, never the other way round).
CANCEL_HOOKS: list[Callable[[Any, dict[str, Any], str], None]] = []
TRIAL_WILL_END_SECONDS = 3 * DAY
INCOMPLETE_EXPIRES_SECONDS = 23 * 3600


# ------------------------------------------------------------------ shapes

def plan_from_price(price: dict[str, Any]) -> dict[str, Any]:
    rec = price.get("recurring") or {}
    return {
        "id": price["id"],
        "object": "plan",
        "active": price["active"],
        "amount": price["unit_amount"],
        "amount_decimal": price["unit_amount_decimal"],
        "billing_scheme": price["billing_scheme"],
        "created": price["created"],
        "currency": price["currency"],
        "interval": rec.get("interval"),
        "interval_count": rec.get("interval_count"),
        "livemode": False,
        "metadata": copy.deepcopy(price.get("metadata") or {}),
        "meter": rec.get("meter"),
        "nickname": price.get("nickname"),
        "product": price["product"],
        "tiers_mode": price.get("tiers_mode"),
        "transform_usage": None,
        "trial_period_days": rec.get("trial_period_days"),
        "usage_type": rec.get("usage_type", "licensed"),
    }


def _item_price(store: Any, item: dict[str, Any]) -> dict[str, Any]:
    return store.objects[item["price"]["id"]]


def _is_metered(price: dict[str, Any]) -> bool:
    return (price.get("recurring") or {}).get("usage_type") == "metered"


def build_item(req: Any, sub: dict[str, Any], price: dict[str, Any], quantity: int | None, metadata: Any,
               period: tuple[int, int], created: int) -> dict[str, Any]:
    item = {
        "id": new_id("si", 14),
        "object": "subscription_item",
        "billing_thresholds": None,
        "created": created,
        "current_period_end": period[1],
        "current_period_start": period[0],
        "discounts": [],
        "metadata": {},
        "plan": plan_from_price(price),
        "price": copy.deepcopy(price),
        "quantity": None if _is_metered(price) else (1 if quantity is None else quantity),
        "subscription": sub["id"],
        "tax_rates": [],
    }
    apply_metadata(item, metadata)
    return item


def _items(req: Any, sub: dict[str, Any]) -> list[dict[str, Any]]:
    return [req.store.objects[i] for i in req.store.priv(sub["id"]).get("items", []) if i in req.store.objects]


def _sync_items(req: Any, sub: dict[str, Any]) -> None:
    items = _items(req, sub)
    sub["items"] = {"object": "list", "data": copy.deepcopy(items), "has_more": False,
                    "url": f"/v1/subscription_items?subscription={sub['id']}"}


def period_of(req: Any, sub: dict[str, Any]) -> tuple[int, int]:
    priv = req.store.priv(sub["id"])
    return priv["period_start"], priv["period_end"]


def _set_period(req: Any, sub: dict[str, Any], start: int, end: int) -> None:
    priv = req.store.priv(sub["id"])
    priv["period_start"], priv["period_end"] = start, end
    for item in _items(req, sub):
        item["current_period_start"], item["current_period_end"] = start, end
    _sync_items(req, sub)


def _interval(req: Any, sub: dict[str, Any]) -> tuple[str, int]:
    items = _items(req, sub)
    rec = _item_price(req.store, items[0])["recurring"] if items else {"interval": "month", "interval_count": 1}
    return rec["interval"], rec["interval_count"]


def _next_period_end(req: Any, sub: dict[str, Any], start: int) -> int:
    interval, count = _interval(req, sub)
    return add_interval(start, interval, count, req.store.priv(sub["id"]).get("anchor_day"))


def _now(req: Any, sub_or_customer: Any) -> int:
    cus = sub_or_customer["customer"] if isinstance(sub_or_customer, dict) else sub_or_customer
    return req.store.clock.now_for_customer(cus)


def build_subscription(req: Any, cus: dict[str, Any], currency: str, now: int) -> dict[str, Any]:
    sub_id = new_id("sub")
    return {
        "id": sub_id,
        "object": "subscription",
        "application": None,
        "application_fee_percent": None,
        "automatic_tax": {"disabled_reason": None, "enabled": False, "liability": None},
        "billing_cycle_anchor": now,
        "billing_cycle_anchor_config": None,
        "billing_mode": {"flexible": None, "type": "classic"},
        "billing_schedules": [],
        "billing_thresholds": None,
        "cancel_at": None,
        "cancel_at_period_end": False,
        "canceled_at": None,
        "cancellation_details": {"comment": None, "feedback": None, "reason": None},
        "collection_method": "charge_automatically",
        "created": now,
        "currency": currency,
        "customer": cus["id"],
        "customer_account": None,
        "days_until_due": None,
        "default_payment_method": None,
        "default_source": None,
        "default_tax_rates": [],
        "description": None,
        "discounts": [],
        "ended_at": None,
        "invoice_settings": {"account_tax_ids": None, "custom_fields": None, "description": None, "footer": None,
                             "issuer": {"type": "self"}},
        "items": {"object": "list", "data": [], "has_more": False, "url": f"/v1/subscription_items?subscription={sub_id}"},
        "latest_invoice": None,
        "livemode": False,
        "managed_payments": {"enabled": False},
        "metadata": {},
        "next_pending_invoice_item_invoice": None,
        "on_behalf_of": None,
        "pause_collection": None,
        "payment_settings": {"payment_method_options": None, "payment_method_types": None,
                             "save_default_payment_method": "off"},
        "pending_invoice_item_interval": None,
        "pending_setup_intent": None,
        "pending_update": None,
        "schedule": None,
        "start_date": now,
        "status": "incomplete",
        "test_clock": cus.get("test_clock"),
        "transfer_data": None,
        "trial_end": None,
        "trial_settings": {"end_behavior": {"missing_payment_method": "create_invoice"}},
        "trial_start": None,
    }


# ------------------------------------------------------------------ create

def _resolve_item_price(req: Any, item: dict[str, Any], param: str, currency: str | None) -> dict[str, Any]:
    if item.get("price"):
        price = ref_or_400(req, item["price"], "price", f"{param}[price]")
    elif item.get("plan"):
        price = ref_or_400(req, item["plan"], "price", f"{param}[plan]", "plan")
    elif item.get("price_data"):
        pd = item["price_data"]
        price = _create_price(req, {"currency": pd["currency"], "product": pd["product"],
                                    "recurring": pd["recurring"], "unit_amount": pd.get("unit_amount"),
                                    **({"unit_amount_decimal": pd["unit_amount_decimal"]} if "unit_amount_decimal" in pd else {})})
    else:
        raise StripeError("Missing required param: items[0][price].", code="parameter_missing", param=f"{param}[price]")
    if not price.get("recurring"):
        raise StripeError(
            f"The price specified is set to `type=one_time` but this field only accepts prices with `type=recurring`.",
            param=f"{param}[price]")
    if not price["active"] and not req.store.private.get(price["id"], {}).get("inline"):
        raise StripeError(f"The price specified is inactive. This field only accepts active prices.",
                          param=f"{param}[price]")
    if currency is not None and not inv_mod.price_offers_currency(req.store, price, currency):
        raise StripeError(f"The price specified ({price['id']}) does not support the currency `{currency}`.",
                          param=f"{param}[price]")
    return price


def create_subscription(
    req: Any, *, customer: dict[str, Any], items: list[dict[str, Any]], currency: str | None = None,
    trial_end: int | None = None, default_payment_method: str | None = None, metadata: Any = None,
    discounts: list[str] | None = None, payment_behavior: str = "allow_incomplete", off_session: bool = True,
    cancel_at_period_end: bool = False, description: str | None = None,
    collection_method: str = "charge_automatically", days_until_due: int | None = None,
    add_invoice_items: list[dict[str, Any]] | None = None, after_3ds_hook: str | None = None,
    session_payment_method: str | None = None, trial_settings: dict[str, Any] | None = None,
    schedule: str | None = None,
) -> dict[str, Any]:
    """Create a subscription, its first invoice, and pay it (the internal entry point of checkout too)."""
    store = req.store
    if not items:
        raise StripeError("Missing required param: items.", code="parameter_missing", param="items")
    prices = [_resolve_item_price(req, it, f"items[{i}]", currency) for i, it in enumerate(items)]
    if currency is None:
        currency = prices[0]["currency"]
    intervals = {(p["recurring"]["interval"], p["recurring"]["interval_count"]) for p in prices}
    if len(intervals) > 1:
        raise StripeError("Currently all items in a subscription must have the same billing interval.",
                          param="items")
    now = _now(req, customer["id"])
    pm_id = default_payment_method
    if pm_id:
        pm = ref_or_400(req, pm_id, "payment_method", "default_payment_method", "PaymentMethod")
        if pm.get("customer") != customer["id"]:
            raise StripeError(
                f"The customer does not have a payment method with the ID {pm_id}. The payment method must be "
                "attached to the customer.", param="default_payment_method", code="resource_missing")
    charge_pm = session_payment_method or pm_id or customer["invoice_settings"].get("default_payment_method")
    trialing = trial_end is not None and trial_end > now
    if payment_behavior == "error_if_incomplete" and not trialing and collection_method == "charge_automatically":
        behaviour = card_behaviour(req, charge_pm) if charge_pm else "no_pm"
        if behaviour == "no_pm":
            raise StripeError("This customer has no attached payment source or default payment method. Please "
                              "consider adding a default payment method.", code="resource_missing")
        if behaviour not in ("ok", "dispute", "3ds_setup"):
            fields = inv_mod.payments_core.decline_error_fields(behaviour if behaviour != "3ds" else "authentication_required")
            raise StripeError(fields["message"], status=402, type="card_error", code=fields["code"],
                              decline_code=fields.get("decline_code") or None)
    sub = build_subscription(req, customer, currency, now)
    sub["default_payment_method"] = pm_id
    sub["cancel_at_period_end"] = cancel_at_period_end
    sub["description"] = description
    sub["collection_method"] = collection_method
    sub["days_until_due"] = days_until_due
    _apply_trial_settings(sub, trial_settings)
    sub["schedule"] = schedule
    apply_metadata(sub, metadata)
    if trialing:
        sub["trial_start"], sub["trial_end"] = now, trial_end
        period = (now, trial_end)
    else:
        period = (now, 0)
    store.add(sub, {"items": [], "anchor_day": anchor_day_of(trial_end if trialing else now),
                    "period_start": period[0], "period_end": period[1]})
    for it, price in zip(items, prices):
        item = build_item(req, sub, price, it.get("quantity"), it.get("metadata"), period, now)
        store.add(item)
        store.priv(sub["id"])["items"].append(item["id"])
    if not trialing:
        period = (now, _next_period_end(req, sub, now))
    sub["billing_cycle_anchor"] = period[1] if trialing else now
    _set_period(req, sub, *period)
    if cancel_at_period_end:
        sub["cancel_at"] = period[1]
        sub["canceled_at"] = now
    sub["discounts"] = list(discounts or [])
    for disc_id in sub["discounts"]:
        d = store.get(disc_id, "discount")
        if d is not None:
            d["subscription"] = sub["id"]
    # one-off items to add to the first invoice
    for i, add in enumerate(add_invoice_items or []):
        price = ref_or_400(req, add["price"], "price", f"add_invoice_items[{i}][price]") if add.get("price") else None
        if price is None:
            continue
        qty = add.get("quantity", 1)
        unit = inv_mod.unit_amount_in(store, price, currency)
        inv_mod.invoice_item_obj(req, customer=customer["id"], amount=unit * qty, currency=currency,
                                 description=inv_mod.product_name(store, price), period=(now, now), price=price,
                                 quantity=qty, subscription=sub["id"], unit_amount=unit)
    # first invoice
    if trialing:
        lines = [inv_mod.subscription_item_line(
            store, sub=sub, item=item, currency=currency, period=period, amount=0,
            description=f"Trial period for {inv_mod.product_name(store, _item_price(store, item))}")
            for item in _items(req, sub)]
    else:
        lines = [inv_mod.subscription_item_line(store, sub=sub, item=item, currency=currency, period=period)
                 for item in _items(req, sub) if not _is_metered(_item_price(store, item))]
    inv = inv_mod.create_invoice(req, customer=customer, currency=currency, billing_reason="subscription_create",
                                 lines=lines, subscription=sub, period=(now, now), discounts=sub["discounts"],
                                 collection_method=collection_method, days_until_due=days_until_due,
                                 emit_created=False)
    sub["latest_invoice"] = inv["id"]
    # Status the subscription will most likely have; emitted in customer.subscription.created.
    if trialing:
        sub["status"] = "trialing"
    elif collection_method == "send_invoice":
        sub["status"] = "active"
    elif payment_behavior == "default_incomplete":
        sub["status"] = "incomplete"
    else:
        sub["status"] = "active" if (charge_pm and card_behaviour(req, charge_pm) in ("ok", "dispute")
                                     and inv["total"] > 0) or inv["total"] <= 0 else "incomplete"
    _sync_items(req, sub)
    # Stripe's order: customer.subscription.created, then invoice.created, invoice.finalized, payment events.
    emit("customer.subscription.created", sub)
    emit("invoice.created", inv)
    if collection_method == "send_invoice":
        inv_mod.finalize_invoice(req, inv)
        trial_will_end_if_due(req, sub, now)
        return sub
    if payment_behavior == "default_incomplete" and not trialing:
        inv_mod.finalize_invoice(req, inv, emit_paid_if_zero=True)
        if inv["status"] == "open":
            # The invoice's PaymentIntent waits for the client to confirm it (Stripe Elements flow); confirming
            # it through /v1/payment_intents/{id}/confirm pays the invoice (see invoices._confirm_route_wrapper).
            inv_mod.open_invoice_payment_intent(req, inv, payment_method=charge_pm)
        return sub
    inv_mod.finalize_invoice(req, inv)
    if inv["status"] == "open":
        err = inv_mod.attempt_payment(req, inv, payment_method=charge_pm, off_session=off_session, automatic=False)
        if err is not None and err["code"] == "invoice_payment_intent_requires_action" and after_3ds_hook:
            pi = store.get(store.priv(inv["id"]).get("payment_intent"), "payment_intent")
            if pi is not None:
                store.priv(pi["id"])["after_invoice_3ds"] = after_3ds_hook
        if err is not None and sub["status"] != "incomplete":
            before = copy.deepcopy(sub)
            sub["status"] = "incomplete"
            emit("customer.subscription.updated", sub, diff(before, sub))
    trial_will_end_if_due(req, sub, now)
    return sub


def _apply_trial_settings(sub: dict[str, Any], trial_settings: dict[str, Any] | None) -> None:
    behaviour = ((trial_settings or {}).get("end_behavior") or {}).get("missing_payment_method")
    if behaviour:
        sub["trial_settings"] = {"end_behavior": {"missing_payment_method": behaviour}}


def trial_will_end_if_due(req: Any, sub: dict[str, Any], now: int) -> None:
    """Stripe sends trial_will_end three days before the trial ends, or at once when less than that is left
    (later ones are scheduled by next_action for test clocks)."""
    priv = req.store.priv(sub["id"])
    if (sub["status"] == "trialing" and sub.get("trial_end") and not priv.get("trial_will_end_sent")
            and sub["trial_end"] - TRIAL_WILL_END_SECONDS <= now):
        priv["trial_will_end_sent"] = True
        emit("customer.subscription.trial_will_end", sub)


def _trial_end_param(req: Any, p: dict[str, Any], prices: list[dict[str, Any]] | None, now: int) -> int | None:
    if "trial_end" in p:
        te = p["trial_end"]
        if te == "now":
            return None
        te = int(te)
        if te <= now:
            raise StripeError("Invalid timestamp: must be an integer Unix timestamp in the future.", param="trial_end")
        if te > now + 730 * DAY:
            raise StripeError("Invalid timestamp: can be no more than two years in the future.", param="trial_end")
        return te
    if p.get("trial_period_days") is not None:
        days = p["trial_period_days"]
        if days < 0 or days > 730:
            raise StripeError("Invalid integer: must be between 0 and 730.", param="trial_period_days")
        return now + days * DAY if days else None
    if p.get("trial_from_plan") and prices:
        days = (prices[0].get("recurring") or {}).get("trial_period_days")
        return now + days * DAY if days else None
    return None


@route("POST", "/v1/subscriptions", "SubscriptionCreateParams", returns="subscription")
def create_route(req: Request) -> dict[str, Any]:
    p = req.params
    if not p.get("customer"):
        raise StripeError("Missing required param: customer.", code="parameter_missing", param="customer")
    cus = ref_or_400(req, p["customer"], "customer", "customer")
    now = _now(req, cus["id"])
    te = _trial_end_param(req, p, None, now)
    if p.get("trial_from_plan") and te is None and p.get("items"):
        prices = [req.store.get(it.get("price"), "price") for it in p["items"]]
        te = _trial_end_param(req, {"trial_from_plan": True}, [x for x in prices if x], now)
    if p.get("collection_method") == "send_invoice" and p.get("days_until_due") is None:
        raise StripeError("Missing required param: days_until_due.", code="parameter_missing", param="days_until_due")
    discounts = inv_mod._discounts_param(req, p.get("discounts"), customer=cus["id"])
    off = p.get("off_session", False)
    if p.get("cancel_at") is not None and not isinstance(p["cancel_at"], int):
        p = dict(p)
        p.pop("cancel_at")  # max_period_end / min_period_end: the first period end, set below
        p["cancel_at_period_end"] = True
    sub = _create_from_params(req, p, cus, te, discounts, off)
    if isinstance(p.get("cancel_at"), int):
        if p["cancel_at"] <= now:
            raise StripeError("cancel_at must be in the future.", param="cancel_at")
        sub["cancel_at"] = p["cancel_at"]
        sub["canceled_at"] = now
        sub["cancel_at_period_end"] = p["cancel_at"] == period_of(req, sub)[1]
    return sub


def _create_from_params(req: Any, p: dict[str, Any], cus: dict[str, Any], te: int | None, discounts: list[str],
                        off: Any) -> dict[str, Any]:
    return create_subscription(
        req, customer=cus, items=p.get("items") or [], currency=(p.get("currency") or "").lower() or None,
        trial_end=te, default_payment_method=p.get("default_payment_method"), metadata=p.get("metadata"),
        discounts=discounts, payment_behavior=p.get("payment_behavior", "allow_incomplete"),
        off_session=bool(off), cancel_at_period_end=p.get("cancel_at_period_end", False),
        description=p.get("description"), collection_method=p.get("collection_method", "charge_automatically"),
        days_until_due=p.get("days_until_due"), add_invoice_items=p.get("add_invoice_items"),
        trial_settings=p.get("trial_settings"),
    )


@route("GET", "/v1/subscriptions/{id}", "SubscriptionRetrieveParams", returns="subscription")
def retrieve_route(req: Request) -> dict[str, Any]:
    sub = get_or_404(req, req.path_params["id"], "subscription")
    expire_pending_update_if_due(req, sub)
    return sub


@route("GET", "/v1/subscriptions", "SubscriptionListParams", returns="subscription")
def list_route(req: Request) -> dict[str, Any]:
    p = req.params
    objs = req.store.all("subscription")
    status = p.get("status")
    if status is None:
        objs = [o for o in objs if o["status"] not in ("canceled", "incomplete_expired")]
    elif status == "ended":
        objs = [o for o in objs if o["status"] in ("canceled", "incomplete_expired")]
    elif status != "all":
        objs = [o for o in objs if o["status"] == status]
    if "customer" in p:
        objs = [o for o in objs if o["customer"] == p["customer"]]
    if "price" in p:
        objs = [o for o in objs if any(i["price"]["id"] == p["price"] for i in o["items"]["data"])]
    if "collection_method" in p:
        objs = [o for o in objs if o["collection_method"] == p["collection_method"]]
    if "test_clock" in p:
        objs = [o for o in objs if o.get("test_clock") == p["test_clock"]]
    objs = created_filter(objs, p.get("created"))
    return list_response(req, objs, "/v1/subscriptions")


@route("GET", "/v1/subscriptions/search", "SubscriptionSearchParams", returns="subscription")
def search_route(req: Request) -> dict[str, Any]:
    return search_response(req, req.store.all("subscription"), {"created", "metadata", "status"})


# ------------------------------------------------------------------ prorations

def proration_lines_for_change(
    req: Any, sub: dict[str, Any], item: dict[str, Any] | None, *, old: tuple[dict[str, Any], int] | None,
    new: tuple[dict[str, Any], int] | None, proration_date: int,
) -> list[dict[str, Any]]:
    """[(amount, description, price, quantity, item_id)] for one item going from `old` to `new` (price, qty)."""
    store = req.store
    start, end = period_of(req, sub)
    if sub["status"] not in ("active", "past_due") or not (start <= proration_date < end):
        return []
    out = []
    remaining, length = end - proration_date, end - start
    when = fmt_date(proration_date)
    cur = sub["currency"]
    if old is not None and not _is_metered(old[0]) and old[1]:
        price, qty = old
        full = inv_mod.unit_amount_in(store, price, cur) * qty
        amount = -prorate(full, remaining, length)
        if amount:
            out.append({"amount": amount, "price": price, "quantity": qty, "item": item["id"] if item else None,
                        "description": f"Unused time on {_qty_label(qty)}{inv_mod.product_name(store, price)} after {when}",
                        "period": (proration_date, end)})
    if new is not None and not _is_metered(new[0]) and new[1]:
        price, qty = new
        full = inv_mod.unit_amount_in(store, price, cur) * qty
        amount = prorate(full, remaining, length)
        if amount:
            out.append({"amount": amount, "price": price, "quantity": qty, "item": item["id"] if item else None,
                        "description": f"Remaining time on {_qty_label(qty)}{inv_mod.product_name(store, price)} after {when}",
                        "period": (proration_date, end)})
    return out


def _qty_label(qty: int) -> str:
    return f"{qty} × " if qty != 1 else ""


def _plan_item_changes(req: Any, sub: dict[str, Any], items_param: list[dict[str, Any]]) -> list[dict[str, Any]]:
    """Validate `items[]` of an update/preview into change records without mutating anything."""
    current = {i["id"]: i for i in _items(req, sub)}
    changes = []
    for idx, it in enumerate(items_param):
        param = f"items[{idx}]"
        if it.get("id"):
            item = current.get(it["id"])
            if item is None:
                raise StripeError(f"No such subscription item: '{it['id']}'", code="resource_missing", param=f"{param}[id]")
            old_price = _item_price(req.store, item)
            if it.get("deleted"):
                changes.append({"item": item, "old": (old_price, item["quantity"] or 0), "new": None, "param": it})
                continue
            new_price = _resolve_item_price(req, it, param, sub["currency"]) if (it.get("price") or it.get("plan") or it.get("price_data")) else old_price
            qty = None if _is_metered(new_price) else it.get("quantity", item["quantity"] or 1)
            changes.append({"item": item, "old": (old_price, item["quantity"] or 0), "new": (new_price, qty or 0),
                            "param": it})
        else:
            price = _resolve_item_price(req, it, param, sub["currency"])
            if any(_item_price(req.store, i)["id"] == price["id"] for i in current.values()):
                raise StripeError(
                    "Cannot add multiple subscription items with the same plan: " + price["id"], param=f"{param}[price]")
            changes.append({"item": None, "old": None, "new": (price, it.get("quantity", 1)), "param": it})
    for ch in changes:
        if ch["new"] is not None:
            rec = ch["new"][0]["recurring"]
            if (rec["interval"], rec["interval_count"]) != _interval(req, sub):
                ch["interval_change"] = True
    return changes


def _proration_records(req: Any, sub: dict[str, Any], changes: list[dict[str, Any]], when: int) -> list[dict[str, Any]]:
    out = []
    for ch in changes:
        old, new = ch["old"], ch["new"]
        if old is not None and new is not None and old[0]["id"] == new[0]["id"] and old[1] == new[1]:
            continue
        out.extend(proration_lines_for_change(req, sub, ch["item"], old=old, new=new, proration_date=when))
    return out


def _update_records(req: Any, sub: dict[str, Any], changes: list[dict[str, Any]], when: int, behavior: str,
                    interval_change: bool) -> list[dict[str, Any]]:
    """Proration records of an update (shared by the update itself and create_preview)."""
    if behavior == "none":
        return []
    if interval_change:
        # the new price is billed in full for the new cycle: only the unused time of the old one is credited
        credit_only = [dict(ch, new=None) for ch in changes if ch["old"] is not None
                       and (ch["new"] is None or ch["new"] != ch["old"])]
        return _proration_records(req, sub, credit_only, when)
    return _proration_records(req, sub, changes, when)


def _proration_line(req: Any, sub: dict[str, Any], rec: dict[str, Any]) -> dict[str, Any]:
    item = req.store.get(rec["item"], "subscription_item") if rec["item"] else {"id": None, "price": rec["price"], "quantity": rec["quantity"]}
    return inv_mod.subscription_item_line(
        req.store, sub=sub, item=item, currency=sub["currency"], period=rec["period"], quantity=rec["quantity"],
        amount=rec["amount"], description=rec["description"], proration=True)


# ------------------------------------------------------------------ update

@route("POST", "/v1/subscriptions/{id}", "SubscriptionUpdateParams", returns="subscription")
def update_route(req: Request) -> dict[str, Any]:
    sub = get_or_404(req, req.path_params["id"], "subscription")
    expire_pending_update_if_due(req, sub)
    return update_subscription(req, sub, req.params)


def _validate_update(req: Any, sub: dict[str, Any], p: dict[str, Any], changes: list[dict[str, Any]], now: int) -> None:
    remaining = len(_items(req, sub)) - sum(1 for ch in changes if ch["item"] is not None and ch["new"] is None) \
        + sum(1 for ch in changes if ch["item"] is None)
    if remaining < 1:
        raise StripeError("A subscription must have at least one active plan.", param="items")
    if p.get("default_payment_method"):
        pm = ref_or_400(req, p["default_payment_method"], "payment_method", "default_payment_method", "PaymentMethod")
        if pm.get("customer") != sub["customer"]:
            raise StripeError(
                f"The customer does not have a payment method with the ID {pm['id']}. The payment method must be "
                "attached to the customer.", param="default_payment_method", code="resource_missing")
    if p.get("trial_end") not in (None, "now") and int(p["trial_end"]) <= now:
        raise StripeError("Invalid timestamp: must be an integer Unix timestamp in the future.", param="trial_end")
    for i, d in enumerate(p.get("discounts") or []):
        if d.get("coupon"):
            ref_or_400(req, d["coupon"], "coupon", f"discounts[{i}][coupon]")
        if d.get("promotion_code"):
            ref_or_400(req, d["promotion_code"], "promotion_code", f"discounts[{i}][promotion_code]", "promotion code")
        if d.get("discount"):
            ref_or_400(req, d["discount"], "discount", f"discounts[{i}][discount]")


def update_subscription(req: Any, sub: dict[str, Any], p: dict[str, Any], *, invoice: bool = True) -> dict[str, Any]:
    """`invoice=False` applies a pending update whose invoice is already paid: the cycle restarts if the interval
    changes, but nothing is invoiced again."""
    store = req.store
    if p.get("payment_behavior") == "pending_if_incomplete" and sub["status"] not in ("canceled", "incomplete_expired"):
        return _update_pending_if_incomplete(req, sub, p)
    if sub["status"] in ("canceled", "incomplete_expired"):
        if sub["status"] == "canceled" and set(p) <= {"metadata", "cancellation_details", "expand"}:
            before = copy.deepcopy(sub)
            for k in ("comment", "feedback"):
                if k in (p.get("cancellation_details") or {}):
                    sub["cancellation_details"][k] = p["cancellation_details"][k] or None
            apply_metadata(sub, p.get("metadata"))
            if diff(before, sub):
                emit("customer.subscription.updated", sub, diff(before, sub))
            return sub
        raise state_error("A canceled subscription can only update its cancellation_details and metadata."
                          if sub["status"] == "canceled" else
                          "This subscription has expired and can no longer be updated.")
    now = _now(req, sub)
    before = copy.deepcopy(sub)
    behavior = p.get("proration_behavior", "create_prorations")
    proration_date = p.get("proration_date", now)
    changes = _plan_item_changes(req, sub, p.get("items") or [])
    # A new billing interval, or billing_cycle_anchor=now, restarts the cycle now and bills it at once.
    interval_change = any(ch.get("interval_change") for ch in changes) or (
        p.get("billing_cycle_anchor") == "now" and sub["status"] in ("active", "past_due"))
    payment_behavior = p.get("payment_behavior", "allow_incomplete")
    if payment_behavior == "error_if_incomplete" and (behavior == "always_invoice" or interval_change):
        pm = inv_mod.payment_method_for(req, {"default_payment_method": None, "customer": sub["customer"],
                                              "parent": {"subscription_details": {"subscription": sub["id"]}}})
        behaviour = card_behaviour(req, pm) if pm else "decline"
        if pm is None or behaviour not in ("ok", "dispute", "3ds_setup"):
            # Stripe refuses error_if_incomplete when the payment would need 3-D Secure: say so, not "declined".
            fields = inv_mod.payments_core.decline_error_fields(
                "authentication_required" if behaviour == "3ds" else behaviour)
            raise StripeError(fields["message"], status=402, type="card_error", code=fields["code"],
                              decline_code=fields.get("decline_code") or None)
    records = _update_records(req, sub, changes, proration_date, behavior, interval_change)
    _validate_update(req, sub, p, changes, now)
    # apply item changes (everything that can be refused was checked above: nothing is half-applied)
    for ch in changes:
        it = ch["param"]
        if ch["item"] is None:
            price, qty = ch["new"]
            start, end = period_of(req, sub)
            item = build_item(req, sub, price, qty, it.get("metadata"), (start, end), now)
            store.add(item)
            store.priv(sub["id"])["items"].append(item["id"])
            if records:
                for rec in records:
                    if rec["item"] is None and rec["price"]["id"] == price["id"]:
                        rec["item"] = item["id"]
        elif ch["new"] is None:
            store.priv(sub["id"])["items"].remove(ch["item"]["id"])
            store.remove(ch["item"]["id"])
        else:
            item = ch["item"]
            price, qty = ch["new"]
            item["price"] = copy.deepcopy(price)
            item["plan"] = plan_from_price(price)
            item["quantity"] = None if _is_metered(price) else qty
            apply_metadata(item, it.get("metadata"))
    if not _items(req, sub):
        raise StripeError("A subscription must have at least one active plan.", param="items")
    for k in ("description",):
        if k in p:
            sub[k] = p[k] or None
    if "default_payment_method" in p:
        if p["default_payment_method"]:
            pm = ref_or_400(req, p["default_payment_method"], "payment_method", "default_payment_method", "PaymentMethod")
            if pm.get("customer") != sub["customer"]:
                raise StripeError(
                    f"The customer does not have a payment method with the ID {pm['id']}. The payment method must be "
                    "attached to the customer.", param="default_payment_method", code="resource_missing")
        sub["default_payment_method"] = p["default_payment_method"] or None
    if "collection_method" in p:
        sub["collection_method"] = p["collection_method"]
    if "days_until_due" in p:
        sub["days_until_due"] = p["days_until_due"]
    if "discounts" in p:
        sub["discounts"] = inv_mod._discounts_param(req, p["discounts"] or [], customer=sub["customer"],
                                                    subscription=sub["id"])
    if "cancellation_details" in p:
        cd = p["cancellation_details"] or {}
        for k in ("comment", "feedback"):
            if k in cd:
                sub["cancellation_details"][k] = cd[k] or None
    _, period_end = period_of(req, sub)
    if "cancel_at_period_end" in p:
        if p["cancel_at_period_end"]:
            sub["cancel_at_period_end"] = True
            sub["cancel_at"] = period_end
            sub["canceled_at"] = now
            sub["cancellation_details"]["reason"] = "cancellation_requested"
        else:
            sub["cancel_at_period_end"] = False
            sub["cancel_at"] = None
            sub["canceled_at"] = None
            sub["cancellation_details"]["reason"] = None
    if "cancel_at" in p:
        ca = p["cancel_at"]
        if ca in ("", None):
            sub["cancel_at"] = None
            sub["canceled_at"] = None
            sub["cancel_at_period_end"] = False
            sub["cancellation_details"]["reason"] = None
        else:
            ca = period_end if ca in ("max_period_end", "min_period_end") else int(ca)
            sub["cancel_at"] = ca
            sub["cancel_at_period_end"] = ca == period_end
            sub["canceled_at"] = now
            sub["cancellation_details"]["reason"] = "cancellation_requested"
    apply_metadata(sub, p.get("metadata"))
    if "trial_settings" in p:
        _apply_trial_settings(sub, p["trial_settings"])
    # trial changes
    end_trial_now = p.get("trial_end") == "now" and sub["status"] == "trialing"
    if p.get("trial_end") not in (None, "now"):
        te = int(p["trial_end"])
        if te <= now:
            raise StripeError("Invalid timestamp: must be an integer Unix timestamp in the future.", param="trial_end")
        sub["trial_end"] = te
        store.priv(sub["id"])["trial_will_end_sent"] = False  # a new trial end gets its own notice
        if sub["status"] == "trialing" or sub["status"] == "active":
            if sub["status"] == "active":
                sub["trial_start"] = now
            sub["status"] = "trialing"
            _set_period(req, sub, period_of(req, sub)[0], te)
            store.priv(sub["id"])["anchor_day"] = anchor_day_of(te)
            sub["billing_cycle_anchor"] = te
    # prorations become invoice items (pending, or invoiced now)
    pending_ii = []
    for rec in records:
        ii = inv_mod.invoice_item_obj(
            req, customer=sub["customer"], amount=rec["amount"], currency=sub["currency"],
            description=rec["description"], period=rec["period"], price=rec["price"], quantity=rec["quantity"],
            proration=True, subscription=sub["id"], subscription_item=rec["item"],
            unit_amount=inv_mod.unit_amount_in(store, rec["price"], sub["currency"]))
        pending_ii.append(ii)
    _sync_items(req, sub)
    invoice_now = interval_change or end_trial_now or (behavior == "always_invoice" and (records or changes))
    if interval_change or end_trial_now:
        # A new billing interval (or the end of a trial) restarts the cycle now and bills the new period at once.
        if end_trial_now:
            sub["trial_end"] = now
        sub["status"] = "active" if sub["status"] == "trialing" else sub["status"]
        store.priv(sub["id"])["anchor_day"] = anchor_day_of(now)
        sub["billing_cycle_anchor"] = now
        _set_period(req, sub, now, 0)
        _set_period(req, sub, now, _next_period_end(req, sub, now))
        if sub["cancel_at_period_end"]:
            sub["cancel_at"] = period_of(req, sub)[1]
    prev = diff(before, sub)
    if invoice and invoice_now and sub["status"] not in ("incomplete",):
        start, end = period_of(req, sub)
        lines = []
        if interval_change or end_trial_now:
            lines = [inv_mod.subscription_item_line(store, sub=sub, item=item, currency=sub["currency"], period=(start, end))
                     for item in _items(req, sub) if not _is_metered(_item_price(store, item))]
        if prev:
            emit("customer.subscription.updated", sub, prev)
            prev = {}
        inv = inv_mod.create_invoice(req, customer=store.objects[sub["customer"]], currency=sub["currency"],
                                     billing_reason="subscription_update", lines=lines, subscription=sub,
                                     period=(now, now), discounts=sub["discounts"],
                                     collection_method=sub["collection_method"], days_until_due=sub["days_until_due"])
        before2 = copy.deepcopy(sub)
        sub["latest_invoice"] = inv["id"]
        inv_mod.finalize_invoice(req, inv)
        if inv["status"] == "open" and sub["collection_method"] == "charge_automatically":
            inv_mod.attempt_payment(req, inv, off_session=bool(p.get("off_session", True)), automatic=True)
        prev2 = diff(before2, sub)
        if prev2:
            emit("customer.subscription.updated", sub, prev2)
        return sub
    if prev:
        emit("customer.subscription.updated", sub, prev)
    trial_will_end_if_due(req, sub, now)
    return sub


# ------------------------------------------------------------------ pending updates (payment_behavior=pending_if_incomplete)
# Stripe's "Pending updates reference": only these parameters may build a pending update (metadata since
# 2026-05-27.dahlia, kept in pending_update.metadata and merged in when the update applies); everything else is
# refused. The update is applied only once its invoice is paid; otherwise the subscription keeps its items, price
# and status, carries `pending_update`, and its `latest_invoice` stays open until paid or until `expires_at`
# (the earlier of the trial end, the period end and 23 hours after the update), when the invoice is voided.
PENDING_UPDATE_PARAMS = frozenset({
    "expand", "payment_behavior", "proration_behavior", "proration_date", "billing_cycle_anchor", "items",
    "trial_end", "trial_from_plan", "add_invoice_items", "metadata"})
PENDING_UPDATE_ITEM_PARAMS = frozenset({"id", "price", "plan", "quantity"})
PENDING_UPDATE_MAX_SECONDS = 23 * 3600


def _check_pending_params(p: dict[str, Any]) -> None:
    for key in p:
        if key not in PENDING_UPDATE_PARAMS:
            raise StripeError(
                f"You cannot pass `{key}` when `payment_behavior` is `pending_if_incomplete`. Only the parameters "
                "supported by pending updates can be passed: https://stripe.com/docs/billing/pending-updates-reference",
                param=key)
    for idx, item in enumerate(p.get("items") or []):
        for key in item:
            if key not in PENDING_UPDATE_ITEM_PARAMS:
                raise StripeError(
                    f"You cannot pass `items[{idx}][{key}]` when `payment_behavior` is `pending_if_incomplete`. Only "
                    "the parameters supported by pending updates can be passed: "
                    "https://stripe.com/docs/billing/pending-updates-reference", param=f"items[{idx}][{key}]")


def check_pending_item_params(p: dict[str, Any]) -> None:
    """The subscription item endpoints take fewer parameters with pending updates (no metadata, no off_session)."""
    if p.get("payment_behavior") != "pending_if_incomplete":
        return
    for key in p:
        if key not in {"expand", "payment_behavior", "proration_behavior", "proration_date", "price", "plan",
                       "quantity", "subscription"}:
            raise StripeError(
                f"You cannot pass `{key}` when `payment_behavior` is `pending_if_incomplete`. Only the parameters "
                "supported by pending updates can be passed: https://stripe.com/docs/billing/pending-updates-reference",
                param=key)


def _pending_items_preview(req: Any, sub: dict[str, Any], changes: list[dict[str, Any]], now: int) -> list[dict[str, Any]]:
    """The subscription items as they will be once the pending update applies (nothing is stored)."""
    changed = {ch["item"]["id"]: ch for ch in changes if ch["item"] is not None}
    out = []
    for item in _items(req, sub):
        ch = changed.get(item["id"])
        if ch is None:
            out.append(copy.deepcopy(item))
        elif ch["new"] is not None:
            price, qty = ch["new"]
            preview = copy.deepcopy(item)
            preview["price"] = copy.deepcopy(price)
            preview["plan"] = plan_from_price(price)
            preview["quantity"] = None if _is_metered(price) else qty
            out.append(preview)
    for ch in changes:
        if ch["item"] is None:
            price, qty = ch["new"]
            out.append(build_item(req, sub, price, qty, None, period_of(req, sub), now))
    return out


def _update_pending_if_incomplete(req: Any, sub: dict[str, Any], p: dict[str, Any]) -> dict[str, Any]:
    store = req.store
    _check_pending_params(p)
    if sub["collection_method"] != "charge_automatically":
        raise StripeError("Pending updates are not supported for subscriptions with `collection_method=send_invoice`.",
                          param="payment_behavior")
    now = _now(req, sub)
    behavior = p.get("proration_behavior", "create_prorations")
    proration_date = p.get("proration_date", now)
    changes = _plan_item_changes(req, sub, p.get("items") or [])
    interval_change = any(ch.get("interval_change") for ch in changes) or (
        p.get("billing_cycle_anchor") == "now" and sub["status"] in ("active", "past_due"))
    end_trial_now = p.get("trial_end") == "now" and sub["status"] == "trialing"
    if not (interval_change or end_trial_now or (behavior == "always_invoice" and changes)):
        # Nothing to pay now: the update applies at once, as any other update.
        return update_subscription(req, sub, {k: v for k, v in p.items() if k != "payment_behavior"})
    _validate_update(req, sub, p, changes, now)
    records = _update_records(req, sub, changes, proration_date, behavior, interval_change)
    preview_items = _pending_items_preview(req, sub, changes, now)
    if sub["pending_update"]:
        # A new pending update replaces the previous one, whose invoice can no longer apply anything.
        _drop_pending_update(req, sub, event=None)
    for rec in records:
        inv_mod.invoice_item_obj(
            req, customer=sub["customer"], amount=rec["amount"], currency=sub["currency"],
            description=rec["description"], period=rec["period"], price=rec["price"], quantity=rec["quantity"],
            proration=True, subscription=sub["id"], subscription_item=rec["item"],
            unit_amount=inv_mod.unit_amount_in(store, rec["price"], sub["currency"]))
    lines = []
    if interval_change or end_trial_now:
        # the new cycle, billed in full now, as the applied update would bill it
        first = next((i for i in preview_items if not _is_metered(i["price"])), None)
        rec_ = (first or preview_items[0])["price"]["recurring"]
        end = add_interval(now, rec_["interval"], rec_["interval_count"], anchor_day_of(now))
        lines = [inv_mod.subscription_item_line(store, sub=sub, item=item, currency=sub["currency"], period=(now, end))
                 for item in preview_items if not _is_metered(item["price"])]
    inv = inv_mod.create_invoice(req, customer=store.objects[sub["customer"]], currency=sub["currency"],
                                 billing_reason="subscription_update", lines=lines, subscription=sub,
                                 period=(now, now), discounts=sub["discounts"],
                                 collection_method=sub["collection_method"], days_until_due=sub["days_until_due"])
    apply = {k: p[k] for k in ("items", "billing_cycle_anchor", "trial_end", "metadata") if k in p}
    apply["proration_behavior"] = "none"  # the prorations are on the invoice already
    start, period_end = period_of(req, sub)
    expires_at = min(now + PENDING_UPDATE_MAX_SECONDS, period_end,
                     sub["trial_end"] if sub["status"] == "trialing" and sub.get("trial_end") else period_end)
    store.priv(sub["id"])["pending_update"] = {"invoice": inv["id"], "params": apply, "announced": False}
    before = copy.deepcopy(sub)
    sub["latest_invoice"] = inv["id"]
    inv_mod.finalize_invoice(req, inv)
    if inv["status"] == "open":
        # The customer is present (off_session defaults to false on updates): 3-D Secure leaves the invoice's
        # PaymentIntent requires_action; no automatic retries, the pending update expires instead.
        inv_mod.attempt_payment(req, inv, off_session=False, automatic=False)
    pending = store.priv(sub["id"]).get("pending_update")
    if inv["status"] == "paid" or pending is None or pending["invoice"] != inv["id"]:
        return sub  # paid: on_invoice_paid applied the update
    pending["announced"] = True
    sub["pending_update"] = {
        "billing_cycle_anchor": now if interval_change else None,
        "discount": None,
        "discounts": None,
        "expires_at": expires_at,
        "metadata": dict(p["metadata"]) if p.get("metadata") else None,
        "subscription_items": preview_items,
        "trial_end": (now if p["trial_end"] == "now" else int(p["trial_end"])) if p.get("trial_end") else None,
        "trial_from_plan": p.get("trial_from_plan"),
    }
    emit("customer.subscription.updated", sub, diff(before, sub))
    return sub


def _pending_invoice_of(req: Any, sub: dict[str, Any] | None, inv: dict[str, Any]) -> dict[str, Any] | None:
    if sub is None:
        return None
    pending = req.store.priv(sub["id"]).get("pending_update")
    return pending if pending and pending["invoice"] == inv["id"] else None


def _apply_pending_update(req: Any, sub: dict[str, Any]) -> None:
    pending = req.store.priv(sub["id"]).pop("pending_update")
    announced = pending["announced"]
    sub["pending_update"] = None
    update_subscription(req, sub, dict(pending["params"]), invoice=False)
    if announced:
        emit("customer.subscription.pending_update_applied", sub)


def _drop_pending_update(req: Any, sub: dict[str, Any], *, event: str | None) -> None:
    pending = req.store.priv(sub["id"]).pop("pending_update", None)
    before = copy.deepcopy(sub)
    sub["pending_update"] = None
    inv = req.store.get(pending["invoice"], "invoice") if pending else None
    if inv is not None and inv["status"] == "open":
        inv_mod.void_invoice(req, inv)
    if event:
        emit(event, sub)
    prev = diff(before, sub)
    if prev:
        emit("customer.subscription.updated", sub, prev)


def expire_pending_update_if_due(req: Any, sub: dict[str, Any]) -> None:
    """A pending update past its `expires_at` is dropped (invoice voided) the next time anyone looks."""
    pu = sub.get("pending_update")
    if pu and _now(req, sub) >= pu["expires_at"]:
        _drop_pending_update(req, sub, event="customer.subscription.pending_update_expired")


# ------------------------------------------------------------------ resume (a subscription paused at trial end)

@route("POST", "/v1/subscriptions/{id}/resume", "SubscriptionResumeParams", returns="subscription")
def resume_route(req: Request) -> dict[str, Any]:
    """Resume a paused subscription: a new cycle starts now and is invoiced at once (billing_cycle_anchor=now,
    the only anchor a subscription paused at trial end can take)."""
    sub = get_or_404(req, req.path_params["id"], "subscription")
    if sub["status"] != "paused":
        raise state_error("Only a paused subscription can be resumed.", code="subscription_not_paused")
    store = req.store
    now = _now(req, sub)
    before = copy.deepcopy(sub)
    sub["status"] = "active"
    store.priv(sub["id"])["anchor_day"] = anchor_day_of(now)
    sub["billing_cycle_anchor"] = now
    _set_period(req, sub, now, 0)
    _set_period(req, sub, now, _next_period_end(req, sub, now))
    _sync_items(req, sub)
    start, end = period_of(req, sub)
    lines = [inv_mod.subscription_item_line(store, sub=sub, item=item, currency=sub["currency"], period=(start, end))
             for item in _items(req, sub) if not _is_metered(_item_price(store, item))]
    inv = inv_mod.create_invoice(req, customer=store.objects[sub["customer"]], currency=sub["currency"],
                                 billing_reason="subscription_update", lines=lines, subscription=sub,
                                 period=(now, now), discounts=sub["discounts"],
                                 collection_method=sub["collection_method"], days_until_due=sub["days_until_due"],
                                 emit_created=False)
    sub["latest_invoice"] = inv["id"]
    emit("customer.subscription.resumed", sub)
    emit("customer.subscription.updated", sub, diff(before, sub))
    emit("invoice.created", inv)
    inv_mod.finalize_invoice(req, inv)
    if inv["status"] == "open" and sub["collection_method"] == "charge_automatically":
        inv_mod.attempt_payment(req, inv, automatic=True)
    return sub


# ------------------------------------------------------------------ cancel

@route("DELETE", "/v1/subscriptions/{id}", "SubscriptionCancelParams", returns="subscription")
def cancel_route(req: Request) -> dict[str, Any]:
    sub = get_or_404(req, req.path_params["id"], "subscription")
    if sub["status"] in ("canceled", "incomplete_expired"):
        raise StripeError(f"No such subscription: '{sub['id']}'", status=404, code="resource_missing", param="id")
    p = req.params
    cd = p.get("cancellation_details") or {}
    for k in ("comment", "feedback"):
        if k in cd:
            sub["cancellation_details"][k] = cd[k] or None
    cancel_subscription(req, sub, prorate_now=bool(p.get("prorate")), invoice_now=bool(p.get("invoice_now")),
                        reason="cancellation_requested")
    return sub


def cancel_subscription(req: Any, sub: dict[str, Any], *, prorate_now: bool = False, invoice_now: bool = False,
                        reason: str = "cancellation_requested", at: int | None = None) -> None:
    store = req.store
    now = at if at is not None else _now(req, sub)
    if prorate_now:
        for item in _items(req, sub):
            price = _item_price(store, item)
            for rec in proration_lines_for_change(req, sub, item, old=(price, item["quantity"] or 0), new=None,
                                                  proration_date=now):
                inv_mod.invoice_item_obj(
                    req, customer=sub["customer"], amount=rec["amount"], currency=sub["currency"],
                    description=rec["description"], period=rec["period"], price=price, quantity=rec["quantity"],
                    proration=True, subscription=sub["id"], subscription_item=item["id"],
                    unit_amount=inv_mod.unit_amount_in(store, price, sub["currency"]))
    if invoice_now:
        lines = _metered_usage_lines(req, sub, *period_of(req, sub), until=now)
        pending = [ii for ii in store.all("invoiceitem") if ii["customer"] == sub["customer"] and ii["invoice"] is None]
        if lines or pending:
            inv = inv_mod.create_invoice(req, customer=store.objects[sub["customer"]], currency=sub["currency"],
                                         billing_reason="subscription_cycle", lines=lines, subscription=sub,
                                         period=(period_of(req, sub)[0], now))
            sub["latest_invoice"] = inv["id"]
            inv_mod.finalize_invoice(req, inv)
            if inv["status"] == "open":
                inv_mod.attempt_payment(req, inv, automatic=False)
    for inv in store.all("invoice"):
        if inv_mod.invoice_subscription(req, inv) is sub and inv["status"] == "open":
            if sub["status"] == "incomplete":
                inv_mod.void_invoice(req, inv)
            else:
                # automatic collection stops with the subscription; the invoice stays open
                inv["next_payment_attempt"] = None
                inv["auto_advance"] = False
    sub["status"] = "canceled"
    sub["canceled_at"] = now if not sub.get("cancel_at_period_end") or sub.get("canceled_at") is None else sub["canceled_at"]
    if reason != "cancellation_requested" or not sub["cancel_at_period_end"]:
        sub["canceled_at"] = now
    sub["ended_at"] = now
    sub["cancellation_details"]["reason"] = sub["cancellation_details"].get("reason") or reason
    if reason == "payment_failed":
        sub["cancellation_details"]["reason"] = "payment_failed"
    _sync_items(req, sub)
    emit("customer.subscription.deleted", sub)
    for hook in CANCEL_HOOKS:
        hook(req, sub, sub["cancellation_details"]["reason"] or reason)


def _cancel_customer_subscriptions(req: Any, cus: dict[str, Any]) -> None:
    for sub in req.store.all("subscription"):
        if sub["customer"] == cus["id"] and sub["status"] not in ("canceled", "incomplete_expired"):
            cancel_subscription(req, sub, reason="cancellation_requested")


DELETE_HOOKS.append(_cancel_customer_subscriptions)


@route("DELETE", "/v1/subscriptions/{id}/discount", "SubscriptionDeleteDiscountParams", returns="discount")
def delete_discount_route(req: Request) -> dict[str, Any]:
    sub = get_or_404(req, req.path_params["id"], "subscription")
    if not sub["discounts"]:
        raise StripeError(f"No active discount for subscription: '{sub['id']}'", status=404, code="resource_missing")
    disc = req.store.get(sub["discounts"][0], "discount") or {"id": sub["discounts"][0]}
    before = copy.deepcopy(sub)
    sub["discounts"] = sub["discounts"][1:]
    emit("customer.subscription.updated", sub, diff(before, sub))
    return {"id": disc["id"], "object": "discount", "deleted": True, "checkout_session": disc.get("checkout_session"),
            "customer": disc.get("customer"), "customer_account": None, "invoice": None, "invoice_item": None,
            "promotion_code": disc.get("promotion_code"), "source": disc.get("source"), "start": disc.get("start"),
            "subscription": sub["id"], "subscription_item": None}


# ------------------------------------------------------------------ subscription items

@route("GET", "/v1/subscription_items", "SubscriptionItemListParams", returns="subscription_item")
def list_items_route(req: Request) -> dict[str, Any]:
    sub = ref_or_400(req, req.params["subscription"], "subscription", "subscription")
    return list_response(req, list(reversed(_items(req, sub))), "/v1/subscription_items")


@route("GET", "/v1/subscription_items/{id}", "SubscriptionItemRetrieveParams", returns="subscription_item")
def retrieve_item_route(req: Request) -> dict[str, Any]:
    return get_or_404(req, req.path_params["id"], "subscription_item", "subscription item")


@route("POST", "/v1/subscription_items", "SubscriptionItemCreateParams", returns="subscription_item")
def create_item_route(req: Request) -> dict[str, Any]:
    p = req.params
    sub = ref_or_400(req, p["subscription"], "subscription", "subscription")
    check_pending_item_params(p)
    item_p = {k: p[k] for k in ("price", "price_data", "plan", "quantity", "metadata") if k in p}
    upd = {"items": [item_p], **{k: p[k] for k in ("proration_behavior", "proration_date", "payment_behavior") if k in p}}
    before_ids = set(req.store.priv(sub["id"])["items"])
    update_subscription(req, sub, upd)
    new_id_ = next((i for i in req.store.priv(sub["id"])["items"] if i not in before_ids), None)
    if new_id_ is None and sub["pending_update"]:
        # pending_if_incomplete, not paid: the item exists only in the pending update so far
        return next(i for i in sub["pending_update"]["subscription_items"] if i["id"] not in before_ids)
    return req.store.objects[new_id_]


@route("POST", "/v1/subscription_items/{id}", "SubscriptionItemUpdateParams", returns="subscription_item")
def update_item_route(req: Request) -> dict[str, Any]:
    item = get_or_404(req, req.path_params["id"], "subscription_item", "subscription item")
    sub = req.store.objects[item["subscription"]]
    p = req.params
    check_pending_item_params(p)
    item_p = {"id": item["id"], **{k: p[k] for k in ("price", "price_data", "plan", "quantity", "metadata") if k in p}}
    upd = {"items": [item_p], **{k: p[k] for k in ("proration_behavior", "proration_date", "payment_behavior", "off_session") if k in p}}
    update_subscription(req, sub, upd)
    return item


@route("DELETE", "/v1/subscription_items/{id}", "SubscriptionItemDeleteParams", returns="deleted_subscription_item")
def delete_item_route(req: Request) -> dict[str, Any]:
    item = get_or_404(req, req.path_params["id"], "subscription_item", "subscription item")
    sub = req.store.objects[item["subscription"]]
    p = req.params
    upd = {"items": [{"id": item["id"], "deleted": True}],
           **{k: p[k] for k in ("proration_behavior", "proration_date") if k in p}}
    update_subscription(req, sub, upd)
    return {"id": item["id"], "object": "subscription_item", "deleted": True}


# ------------------------------------------------------------------ invoice hooks (registered in invoices.py)

def on_invoice_paid(req: Any, inv: dict[str, Any]) -> None:
    sub = inv_mod.invoice_subscription(req, inv)
    if sub is None:
        return
    if _pending_invoice_of(req, sub, inv) is not None:
        _apply_pending_update(req, sub)
        return
    if sub["status"] in ("incomplete", "past_due", "unpaid"):
        # only when no other invoice of the subscription is still open
        others = [i for i in req.store.all("invoice") if i is not inv and i["status"] == "open"
                  and inv_mod.invoice_subscription(req, i) is sub]
        if others and sub["status"] != "incomplete":
            return
        before = copy.deepcopy(sub)
        sub["status"] = "trialing" if sub.get("trial_end") and sub["trial_end"] > _now(req, sub) else "active"
        emit("customer.subscription.updated", sub, diff(before, sub))


def on_invoice_payment_failed(req: Any, inv: dict[str, Any], *, final: bool) -> None:
    sub = inv_mod.invoice_subscription(req, inv)
    if sub is None or sub["status"] in ("canceled", "incomplete_expired", "incomplete"):
        return
    if _pending_invoice_of(req, sub, inv) is not None:
        return  # a pending update's invoice: the subscription stays as it is (the update waits or expires)
    if inv["billing_reason"] == "subscription_create":
        return
    if final:
        action = inv_mod.billing_settings(req.emulator)["after_final_failure"]
        if action == "cancel":
            cancel_subscription(req, sub, reason="payment_failed")
            return
        if action == "unpaid" and sub["status"] != "unpaid":
            before = copy.deepcopy(sub)
            sub["status"] = "unpaid"
            emit("customer.subscription.updated", sub, diff(before, sub))
            return
    if sub["status"] in ("active", "trialing"):
        before = copy.deepcopy(sub)
        sub["status"] = "past_due"
        emit("customer.subscription.updated", sub, diff(before, sub))


inv_mod.PAID_HOOKS.append(on_invoice_paid)
inv_mod.PAYMENT_FAILED_HOOKS.append(on_invoice_payment_failed)


# ------------------------------------------------------------------ renewals (driven by test clocks)

def _metered_usage_lines(req: Any, sub: dict[str, Any], start: int, end: int, until: int | None = None) -> list[dict[str, Any]]:
    store = req.store
    lines = []
    stop = until if until is not None else end
    for item in _items(req, sub):
        price = _item_price(store, item)
        if not _is_metered(price):
            continue
        meter_id = price["recurring"].get("meter")
        qty = usage_for(store, meter_id, sub["customer"], start, stop) if meter_id else 0
        line = inv_mod.subscription_item_line(store, sub=sub, item=item, currency=sub["currency"],
                                              period=(start, stop), quantity=qty)
        lines.append(line)
    return lines


def next_action(req: Any, sub: dict[str, Any]) -> tuple[int, str] | None:
    """(time, action) of the next thing that happens to `sub` by itself, or None."""
    status = sub["status"]
    priv = req.store.priv(sub["id"])
    if status in ("canceled", "incomplete_expired"):
        return None
    if status == "incomplete":
        return sub["created"] + INCOMPLETE_EXPIRES_SECONDS, "expire_incomplete"
    candidates: list[tuple[int, str]] = []
    start, end = period_of(req, sub)
    if status == "trialing" and sub.get("trial_end"):
        twe = sub["trial_end"] - TRIAL_WILL_END_SECONDS
        if not priv.get("trial_will_end_sent"):
            candidates.append((twe, "trial_will_end"))
        candidates.append((sub["trial_end"], "trial_end"))
    if sub.get("cancel_at") and sub["cancel_at"] < end:
        candidates.append((sub["cancel_at"], "cancel"))
    if sub.get("pending_update"):
        candidates.append((sub["pending_update"]["expires_at"], "expire_pending_update"))
    if status in ("active", "past_due", "unpaid"):
        if sub.get("cancel_at_period_end") or sub.get("cancel_at") == end:
            candidates.append((end, "cancel"))
        else:
            upcoming = end - inv_mod.UPCOMING_DAYS * DAY
            if priv.get("upcoming_sent_for") != end and upcoming > start:
                candidates.append((upcoming, "upcoming"))
            candidates.append((end, "renew"))
    return min(candidates) if candidates else None


def run_action(req: Any, sub: dict[str, Any], when: int, action: str) -> None:
    store = req.store
    priv = store.priv(sub["id"])
    if action == "expire_incomplete":
        before = copy.deepcopy(sub)
        for inv in store.all("invoice"):
            if inv_mod.invoice_subscription(req, inv) is sub and inv["status"] == "open":
                inv_mod.void_invoice(req, inv)
        sub["status"] = "incomplete_expired"
        sub["ended_at"] = when
        emit("customer.subscription.updated", sub, diff(before, sub))
        emit("customer.subscription.deleted", sub)
    elif action == "expire_pending_update":
        _drop_pending_update(req, sub, event="customer.subscription.pending_update_expired")
    elif action == "trial_will_end":
        priv["trial_will_end_sent"] = True
        emit("customer.subscription.trial_will_end", sub)
    elif action == "upcoming":
        priv["upcoming_sent_for"] = period_of(req, sub)[1]
        if sub["collection_method"] == "charge_automatically":
            preview = _preview_for(req, sub, records=[], next_period=True)
            preview["id"] = None  # Stripe: the upcoming invoice in this event has no id
            emit("invoice.upcoming", preview)
    elif action == "cancel":
        start, end = period_of(req, sub)
        usage = _metered_usage_lines(req, sub, start, end, until=when)
        if any(ln["amount"] for ln in usage):
            inv = inv_mod.create_invoice(req, customer=store.objects[sub["customer"]], currency=sub["currency"],
                                         billing_reason="subscription_cycle", lines=usage, subscription=sub,
                                         period=(start, when))
            sub["latest_invoice"] = inv["id"]
        cancel_subscription(req, sub, reason="cancellation_requested", at=when)
    elif action == "trial_end" and _trial_end_without_payment_method(req, sub, when):
        return
    elif action in ("renew", "trial_end"):
        _renew(req, sub, when, from_trial=action == "trial_end")


def _trial_end_without_payment_method(req: Any, sub: dict[str, Any], when: int) -> bool:
    """trial_settings[end_behavior][missing_payment_method] at trial end: `cancel` or `pause` instead of the
    first invoice when nothing could pay it (`create_invoice`, the default, bills as usual). True if handled."""
    behaviour = sub["trial_settings"]["end_behavior"]["missing_payment_method"]
    if behaviour == "create_invoice" or sub["collection_method"] != "charge_automatically":
        return False
    probe = {"default_payment_method": None, "customer": sub["customer"],
             "parent": {"subscription_details": {"subscription": sub["id"]}}}
    if inv_mod.payment_method_for(req, probe) is not None:
        return False
    if behaviour == "cancel":
        cancel_subscription(req, sub, reason="cancellation_requested", at=when)
        return True
    # pause: no invoice until the subscription is resumed (POST /v1/subscriptions/{id}/resume)
    before = copy.deepcopy(sub)
    sub["status"] = "paused"
    _sync_items(req, sub)
    emit("customer.subscription.updated", sub, diff(before, sub))
    emit("customer.subscription.paused", sub)
    return True


def _renew(req: Any, sub: dict[str, Any], when: int, *, from_trial: bool) -> None:
    store = req.store
    before = copy.deepcopy(sub)
    old_start, old_end = period_of(req, sub)
    usage = [] if from_trial else _metered_usage_lines(req, sub, old_start, old_end)
    if from_trial:
        sub["status"] = "active"
        store.priv(sub["id"])["anchor_day"] = anchor_day_of(when)
        sub["billing_cycle_anchor"] = when
    new_end = _next_period_end(req, sub, when)
    _set_period(req, sub, when, new_end)
    if sub.get("cancel_at_period_end"):
        sub["cancel_at"] = new_end
    lines = [inv_mod.subscription_item_line(store, sub=sub, item=item, currency=sub["currency"], period=(when, new_end))
             for item in _items(req, sub) if not _is_metered(_item_price(store, item))]
    lines = usage + lines
    inv = inv_mod.create_invoice(req, customer=store.objects[sub["customer"]], currency=sub["currency"],
                                 billing_reason="subscription_cycle", lines=lines, subscription=sub,
                                 period=(old_start, when), discounts=sub["discounts"],
                                 collection_method=sub["collection_method"], days_until_due=sub["days_until_due"],
                                 emit_created=False)
    # Stripe's order: the subscription's new period first, then invoice.created (finalized an hour later).
    sub["latest_invoice"] = inv["id"]
    emit("customer.subscription.updated", sub, diff(before, sub))
    emit("invoice.created", inv)


# ------------------------------------------------------------------ create_preview

def _preview_for(req: Any, sub: dict[str, Any], *, records: list[dict[str, Any]], next_period: bool,
                 planned: list[dict[str, Any]] | None = None,
                 extra_lines: list[dict[str, Any]] | None = None) -> dict[str, Any]:
    store = req.store
    cus = store.objects[sub["customer"]]
    start, end = period_of(req, sub)
    lines = [_proration_line(req, sub, rec) for rec in records] + list(extra_lines or [])
    # pending invoice items of the customer (not yet on an invoice)
    for ii in reversed(store.all("invoiceitem")):
        if ii["customer"] == sub["customer"] and ii["invoice"] is None and ii["currency"] == sub["currency"]:
            lines.append(inv_mod._line_from_invoice_item(store, ii))
    if next_period:
        items = _items(req, sub)
        prices = {i["id"]: (_item_price(store, i), i["quantity"]) for i in items}
        for ch in planned or []:
            if ch["item"] is not None and ch["new"] is None:
                prices.pop(ch["item"]["id"], None)
            elif ch["item"] is not None:
                prices[ch["item"]["id"]] = ch["new"]
            else:
                prices[new_id("si", 14)] = ch["new"]
        nxt_end = _next_period_end(req, sub, end)
        for si_id, (price, qty) in prices.items():
            if _is_metered(price):
                continue
            item = {"id": si_id, "price": price, "quantity": qty}
            lines.append(inv_mod.subscription_item_line(store, sub=sub, item=item, currency=sub["currency"],
                                                        period=(end, nxt_end)))
    inv = inv_mod.build_invoice(req, customer=cus, currency=sub["currency"], billing_reason="upcoming",
                                subscription=sub, period=(start, end) if next_period else (_now(req, sub), _now(req, sub)))
    inv["id"] = "upcoming_in_" + random_token(24)
    inv["discounts"] = list(sub["discounts"])
    inv["created"] = end if next_period else _now(req, sub)
    store.private[inv["id"]] = {"lines": lines}
    try:
        inv_mod.recompute(req, inv)
    finally:
        store.private.pop(inv["id"], None)
    inv["amount_due"] = max(0, inv["total"] + (cus.get("balance") or 0))
    inv["amount_remaining"] = inv["amount_due"]
    inv["starting_balance"] = cus.get("balance") or 0
    inv["auto_advance"] = False
    inv["automatically_finalizes_at"] = None
    if next_period and sub["collection_method"] == "charge_automatically":
        inv["next_payment_attempt"] = end  # when the renewal invoice will be charged
    return inv


# /v1/invoices/create_preview lives here, not in invoices.py: previews are built from subscriptions
@route("POST", "/v1/invoices/create_preview", "InvoiceCreatePreviewParams", returns="invoice")
def preview_invoice(req: Request) -> dict[str, Any]:
    p = req.params
    sd = p.get("subscription_details") or {}
    if not p.get("subscription") and p.get("customer") and not sd.get("items"):
        # Like Stripe: with only a customer, the preview is the next invoice of the customer's subscription.
        live = [s for s in req.store.all("subscription") if s["customer"] == p["customer"]
                and s["status"] in ("active", "past_due", "trialing", "unpaid")]
        if live:
            p = dict(p, subscription=live[0]["id"])
    if p.get("subscription"):
        sub = ref_or_400(req, p["subscription"], "subscription", "subscription")
        if p.get("customer") and p["customer"] != sub["customer"]:
            raise StripeError("The subscription does not belong to the given customer.", param="customer")
        if sub["status"] in ("canceled", "incomplete_expired"):
            raise StripeError("No upcoming invoices for customer: " + sub["customer"], code="invoice_upcoming_none")
        now = _now(req, sub)
        when = sd.get("proration_date", now)
        behavior = sd.get("proration_behavior", "create_prorations")
        changes = _plan_item_changes(req, sub, sd.get("items") or [])
        interval_change = any(ch.get("interval_change") for ch in changes) or (
            sd.get("billing_cycle_anchor") == "now" and sub["status"] in ("active", "past_due"))
        records = _update_records(req, sub, changes, when, behavior, interval_change)
        if interval_change:
            # what the update invoices at once: the credit, then the new items for a whole new cycle
            prices = {i["id"]: (_item_price(req.store, i), i["quantity"]) for i in _items(req, sub)}
            for ch in changes:
                if ch["item"] is not None and ch["new"] is None:
                    prices.pop(ch["item"]["id"], None)
                else:
                    prices[ch["item"]["id"] if ch["item"] else new_id("si", 14)] = ch["new"]
            first = next(iter(prices.values()))[0]["recurring"]
            end = add_interval(when, first["interval"], first["interval_count"])
            extra = [inv_mod.subscription_item_line(req.store, sub=sub, item={"id": k, "price": pr, "quantity": q},
                                                    currency=sub["currency"], period=(when, end))
                     for k, (pr, q) in prices.items() if not _is_metered(pr)]
            return _preview_for(req, sub, records=records, next_period=False, extra_lines=extra)
        if sd.get("cancel_now"):
            records = []
            for item in _items(req, sub):
                price = _item_price(req.store, item)
                records += proration_lines_for_change(req, sub, item, old=(price, item["quantity"] or 0), new=None,
                                                      proration_date=when)
            return _preview_for(req, sub, records=records, next_period=False)
        if sd.get("cancel_at_period_end"):
            return _preview_for(req, sub, records=records, next_period=False)
        if behavior == "always_invoice":
            return _preview_for(req, sub, records=records, next_period=False)
        return _preview_for(req, sub, records=records, next_period=True, planned=changes)
    if not p.get("customer"):
        raise StripeError("Missing required param: customer.", code="parameter_missing", param="customer")
    cus = ref_or_400(req, p["customer"], "customer", "customer")
    items = sd.get("items") or []
    if not items:
        # the customer's pending invoice items as a one-off invoice
        pending = [ii for ii in reversed(req.store.all("invoiceitem")) if ii["customer"] == cus["id"] and ii["invoice"] is None]
        if not pending and not p.get("invoice_items"):
            raise StripeError(f"No upcoming invoices for customer: {cus['id']}", status=404, code="invoice_upcoming_none")
        currency = (p.get("currency") or (pending[0]["currency"] if pending else "usd")).lower()
        inv = inv_mod.build_invoice(req, customer=cus, currency=currency, billing_reason="manual")
        inv["id"] = "upcoming_in_" + random_token(24)
        lines = [inv_mod._line_from_invoice_item(req.store, ii) for ii in pending]
        req.store.private[inv["id"]] = {"lines": lines}
        try:
            inv_mod.recompute(req, inv)
        finally:
            req.store.private.pop(inv["id"], None)
        return inv
    # preview of a new subscription for the customer
    currency = (p.get("currency") or "").lower() or None
    prices = [_resolve_item_price(req, it, f"subscription_details[items][{i}]", currency) for i, it in enumerate(items)]
    currency = currency or prices[0]["currency"]
    now = _now(req, cus["id"])
    fake = build_subscription(req, cus, currency, now)
    lines = []
    end = add_interval(now, prices[0]["recurring"]["interval"], prices[0]["recurring"]["interval_count"])
    for it, price in zip(items, prices):
        if _is_metered(price):
            continue
        item = {"id": new_id("si", 14), "price": price, "quantity": it.get("quantity", 1)}
        lines.append(inv_mod.subscription_item_line(req.store, sub=fake, item=item, currency=currency, period=(now, end)))
    inv = inv_mod.build_invoice(req, customer=cus, currency=currency, billing_reason="subscription_create")
    inv["id"] = "upcoming_in_" + random_token(24)
    inv["parent"] = None
    for ln in lines:
        ln["subscription"] = None
        ln["parent"]["subscription_item_details"]["subscription"] = None
    req.store.private[inv["id"]] = {"lines": lines}
    try:
        inv_mod.recompute(req, inv)
    finally:
        req.store.private.pop(inv["id"], None)
    return inv


# ------------------------------------------------------------------ triggers

def trigger_subscription(emulator: Any, token: str) -> dict[str, Any]:
    """Product + monthly price + customer with a card + subscription, like `stripe trigger`."""
    with emulator.store.lock, using(emulator):
        req = internal_request(emulator)
        price = _create_price(req, {"currency": "usd", "unit_amount": 2000, "recurring": {"interval": "month"},
                                    "product_data": {"name": "myproduct"}})
        cus = build_customer(req, {"name": "Jenny Rosen", "email": "jenny.rosen@example.com"})
        req.store.add(cus)
        emit("customer.created", cus)
        pm = resolve_payment_method(req, token)
        attach_payment_method(req, pm, cus)
        before = copy.deepcopy(cus)
        cus["invoice_settings"]["default_payment_method"] = pm["id"]
        emit("customer.updated", cus, diff(before, cus))
        sub = create_subscription(req, customer=cus, items=[{"price": price["id"], "quantity": 1}])
        return {"customer": cus["id"], "subscription": sub["id"], "invoice": sub["latest_invoice"],
                "price": price["id"]}


@trigger("customer.subscription.created")
def _t_sub_created(emulator: Any) -> dict[str, Any]:
    return trigger_subscription(emulator, "pm_card_visa")


@trigger("customer.subscription.updated")
def _t_sub_updated(emulator: Any) -> dict[str, Any]:
    out = trigger_subscription(emulator, "pm_card_visa")
    with emulator.store.lock, using(emulator):
        req = internal_request(emulator)
        sub = emulator.store.objects[out["subscription"]]
        update_subscription(req, sub, {"metadata": {"foo": "bar"}})
    return out


@trigger("customer.subscription.deleted")
def _t_sub_deleted(emulator: Any) -> dict[str, Any]:
    out = trigger_subscription(emulator, "pm_card_visa")
    with emulator.store.lock, using(emulator):
        req = internal_request(emulator)
        cancel_subscription(req, emulator.store.objects[out["subscription"]])
    return out


@trigger("customer.subscription.trial_will_end")
def _t_trial_will_end(emulator: Any) -> dict[str, Any]:
    out = trigger_subscription(emulator, "pm_card_visa")
    with emulator.store.lock, using(emulator):
        sub = emulator.store.objects[out["subscription"]]
        emit("customer.subscription.trial_will_end", sub)
    return out


# The invoice triggers are a subscription's first invoice (as `stripe trigger invoice.paid` does).
@trigger("invoice.paid")
def _t_invoice_paid(emulator: Any) -> dict[str, Any]:
    return trigger_subscription(emulator, "pm_card_visa")


@trigger("invoice.payment_succeeded")
def _t_invoice_payment_succeeded(emulator: Any) -> dict[str, Any]:
    return trigger_subscription(emulator, "pm_card_visa")


@trigger("invoice.payment_failed")
def _t_invoice_payment_failed(emulator: Any) -> dict[str, Any]:
    return trigger_subscription(emulator, "pm_card_chargeCustomerFail")


@trigger("invoice.created")
def _t_invoice_created(emulator: Any) -> dict[str, Any]:
    return trigger_subscription(emulator, "pm_card_visa")


@trigger("invoice.finalized")
def _t_invoice_finalized(emulator: Any) -> dict[str, Any]:
    return trigger_subscription(emulator, "pm_card_visa")


__all__ = ["create_subscription", "update_subscription", "cancel_subscription", "next_action", "run_action",
           "preview_invoice", "on_invoice_paid", "on_invoice_payment_failed"]
