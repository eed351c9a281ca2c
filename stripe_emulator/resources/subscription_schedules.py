"""Subscription schedules (`/v1/subscription_schedules`): create from a subscription or from scratch, update the
phases, release, cancel; test clocks drive the phase transitions.

States: not_started (a future start_date; the clock creates the subscription then) -> active -> released
(`/release`, or the last phase ends with end_behavior=release: the subscription keeps running on its own) |
completed (the last phase ends with end_behavior=cancel: the subscription is canceled) | canceled (`/cancel`, or
the subscription was canceled; `aborted` too when that was dunning).

A phase runs from its start_date to its end_date (given, or `duration`, or one billing period of its first price
when neither is). At a phase boundary the subscription's items are replaced by the next phase's through
subscriptions.update_subscription, with the phase's `proration_behavior` (nothing to prorate when the boundary is
the period end, the usual "downgrade at period end"); that runs before the renewal due at the same instant, so the
renewal bills the new phase's prices. Events: subscription_schedule.created/updated/released/canceled/completed/
aborted, and `expiring` 7 days before the last phase ends.
"""
from __future__ import annotations

import copy
from typing import Any

from ..errors import StripeError, state_error
from ..events import diff, emit
from ..helpers import apply_metadata, get_or_404, ref_or_400
from ..listing import created_filter, list_response
from ..registry import Request, object_type, route
from ..state import new_id
from . import subscriptions as subs
from . import test_clocks
from .billing_common import DAY, add_interval, anchor_day_of

object_type("subscription_schedule")

EXPIRING_DAYS = 7
ENDED = ("released", "completed", "canceled")


# ------------------------------------------------------------------ shapes

def _default_settings(p: dict[str, Any] | None, base: dict[str, Any] | None = None) -> dict[str, Any]:
    p = p or {}
    ds = copy.deepcopy(base) if base else {
        "application_fee_percent": None,
        "automatic_tax": {"disabled_reason": None, "enabled": False, "liability": None},
        "billing_cycle_anchor": "automatic",
        "billing_thresholds": None,
        "collection_method": "charge_automatically",
        "default_payment_method": None,
        "description": None,
        "invoice_settings": {"account_tax_ids": None, "custom_fields": None, "days_until_due": None,
                             "description": None, "footer": None, "issuer": {"type": "self"}},
        "on_behalf_of": None,
        "transfer_data": None,
    }
    for k in ("billing_cycle_anchor", "collection_method", "default_payment_method", "description"):
        if k in p:
            ds[k] = p[k] or None
    if "days_until_due" in (p.get("invoice_settings") or {}):
        ds["invoice_settings"]["days_until_due"] = p["invoice_settings"]["days_until_due"]
    return ds


def _phase_item(req: Any, it: dict[str, Any], prefix: str) -> dict[str, Any]:
    if it.get("price"):
        price = ref_or_400(req, it["price"], "price", f"{prefix}[price]")
    elif it.get("plan"):
        price = ref_or_400(req, it["plan"], "price", f"{prefix}[plan]", "plan")
    elif it.get("price_data"):
        pd = it["price_data"]
        price = subs._create_price(req, {"currency": pd["currency"], "product": pd["product"],
                                         "recurring": pd["recurring"], "unit_amount": pd.get("unit_amount")})
        req.store.priv(price["id"])["inline"] = True
    else:
        raise StripeError(f"Missing required param: {prefix}[price].", code="parameter_missing", param=f"{prefix}[price]")
    if not price.get("recurring"):
        raise StripeError("The price specified is set to `type=one_time` but this field only accepts prices with "
                          "`type=recurring`.", param=f"{prefix}[price]")
    item = {"billing_thresholds": None, "discounts": [], "metadata": {}, "plan": subs.plan_from_price(price),
            "price": price["id"], "quantity": None if subs._is_metered(price) else it.get("quantity", 1),
            "tax_rates": []}
    apply_metadata(item, it.get("metadata"))
    return item


def _build_phases(req: Any, phases_p: list[dict[str, Any]], start: int, *,
                  keep_first_start: int | None = None) -> list[dict[str, Any]]:
    """Phases with concrete start/end dates, each starting where the previous one ends."""
    if not phases_p:
        raise StripeError("Missing required param: phases.", code="parameter_missing", param="phases")
    out: list[dict[str, Any]] = []
    cursor = start
    for i, ph in enumerate(phases_p):
        prefix = f"phases[{i}]"
        if not ph.get("items"):
            raise StripeError(f"Missing required param: {prefix}[items].", code="parameter_missing",
                              param=f"{prefix}[items]")
        items = [_phase_item(req, it, f"{prefix}[items][{j}]") for j, it in enumerate(ph["items"])]
        if i == 0 and keep_first_start is not None:
            sd = ph.get("start_date", keep_first_start)
            if sd not in (keep_first_start, "now"):
                raise StripeError("You can not modify the start date of the current phase.",
                                  param=f"{prefix}[start_date]")
            cursor = keep_first_start
        first_price = req.store.objects[items[0]["price"]]
        rec = first_price["recurring"]
        if "end_date" in ph and "duration" in ph:
            raise StripeError(f"You may only specify one of {prefix}[end_date] and {prefix}[duration].",
                              param=f"{prefix}[duration]")
        if "end_date" in ph:
            end = ph["end_date"]
        elif "duration" in ph:
            d = ph["duration"]
            end = add_interval(cursor, d["interval"], d.get("interval_count", 1), anchor_day_of(cursor))
        else:
            end = add_interval(cursor, rec["interval"], rec["interval_count"], anchor_day_of(cursor))
        if end <= cursor:
            raise StripeError(f"The end date of phase {i} must be after its start date.", param=f"{prefix}[end_date]")
        trial_end = ph.get("trial_end")
        if ph.get("trial") and trial_end is None:
            trial_end = end
        out.append({
            "add_invoice_items": [],
            "application_fee_percent": None,
            "billing_cycle_anchor": ph.get("billing_cycle_anchor"),
            "billing_thresholds": None,
            "collection_method": ph.get("collection_method"),
            "currency": (ph.get("currency") or first_price["currency"]).lower(),
            "default_payment_method": ph.get("default_payment_method"),
            "default_tax_rates": [],
            "description": ph.get("description") or None,
            "discounts": [],
            "end_date": end,
            "invoice_settings": None,
            "items": items,
            "metadata": dict(ph.get("metadata") or {}),
            "on_behalf_of": None,
            "proration_behavior": ph.get("proration_behavior", "create_prorations"),
            "start_date": cursor,
            "transfer_data": None,
            "trial_end": trial_end,
        })
        cursor = end
    return out


def _set_current(sched: dict[str, Any], idx: int | None, store: Any) -> None:
    store.priv(sched["id"])["phase"] = idx
    if idx is None:
        sched["current_phase"] = None
    else:
        ph = sched["phases"][idx]
        sched["current_phase"] = {"end_date": ph["end_date"], "start_date": ph["start_date"]}


def _build_schedule(req: Any, cus: dict[str, Any], now: int, p: dict[str, Any]) -> dict[str, Any]:
    sched = {
        "id": new_id("sub_sched"),
        "object": "subscription_schedule",
        "application": None,
        "billing_mode": {"flexible": None, "type": "classic"},
        "canceled_at": None,
        "completed_at": None,
        "created": now,
        "current_phase": None,
        "customer": cus["id"],
        "customer_account": None,
        "default_settings": _default_settings(p.get("default_settings")),
        "end_behavior": p.get("end_behavior", "release"),
        "livemode": False,
        "metadata": {},
        "phases": [],
        "released_at": None,
        "released_subscription": None,
        "status": "not_started",
        "subscription": None,
        "test_clock": cus.get("test_clock"),
    }
    apply_metadata(sched, p.get("metadata"))
    return sched


# ------------------------------------------------------------------ subscription <-> phase

def _start_subscription(req: Any, sched: dict[str, Any]) -> dict[str, Any]:
    """Phase 0 begins: create its subscription (first invoice and payment as a direct create would)."""
    store = req.store
    ph = sched["phases"][0]
    ds = sched["default_settings"]
    sub = subs.create_subscription(
        req, customer=store.objects[sched["customer"]],
        items=[{"price": it["price"], "quantity": it["quantity"], "metadata": it["metadata"]} for it in ph["items"]],
        currency=ph["currency"], trial_end=ph["trial_end"],
        default_payment_method=ph["default_payment_method"] or ds["default_payment_method"],
        description=ph["description"] or ds["description"], metadata=ph["metadata"] or None,
        collection_method=ph["collection_method"] or ds["collection_method"],
        days_until_due=ds["invoice_settings"]["days_until_due"], schedule=sched["id"],
    )
    sched["subscription"] = sub["id"]
    sched["status"] = "active"
    _set_current(sched, 0, store)
    return sub


def _items_update(req: Any, sub: dict[str, Any], phase: dict[str, Any]) -> list[dict[str, Any]]:
    """`items` for update_subscription that turn the subscription's items into the phase's: same price -> new
    quantity; otherwise an existing item takes the new price (its id is kept, as Stripe does); the rest go."""
    current = subs._items(req, sub)
    wanted = list(phase["items"])
    out: list[dict[str, Any]] = []
    left = []
    for item in current:
        match = next((w for w in wanted if w["price"] == item["price"]["id"]), None)
        if match is not None:
            wanted.remove(match)
            out.append({"id": item["id"], "quantity": match["quantity"]} if match["quantity"] is not None
                       else {"id": item["id"]})
        else:
            left.append(item)
    for item in left:
        if wanted:
            w = wanted.pop(0)
            out.append({"id": item["id"], "price": w["price"],
                        **({"quantity": w["quantity"]} if w["quantity"] is not None else {})})
        else:
            out.append({"id": item["id"], "deleted": True})
    for w in wanted:
        out.append({"price": w["price"], **({"quantity": w["quantity"]} if w["quantity"] is not None else {})})
    return out


def _apply_phase(req: Any, sched: dict[str, Any], idx: int, when: int, proration_behavior: str | None = None) -> None:
    sub = req.store.get(sched["subscription"], "subscription")
    if sub is None or sub["status"] in ("canceled", "incomplete_expired"):
        return
    phase = sched["phases"][idx]
    behaviour = proration_behavior or phase["proration_behavior"]
    if when >= subs.period_of(req, sub)[1]:
        behaviour = "none"  # a boundary at the period end leaves nothing to prorate
    upd: dict[str, Any] = {"items": _items_update(req, sub, phase), "proration_behavior": behaviour}
    if phase["metadata"]:
        upd["metadata"] = phase["metadata"]
    if phase["default_payment_method"]:
        upd["default_payment_method"] = phase["default_payment_method"]
    subs.update_subscription(req, sub, upd)


# ------------------------------------------------------------------ clock-driven work

def _next_work(req: Any, sched: dict[str, Any]) -> list[tuple[int, int, Any]]:
    status = sched["status"]
    if status in ENDED:
        return []
    priv = req.store.priv(sched["id"])
    if status == "not_started":
        return [(sched["phases"][0]["start_date"], -1, lambda when, s=sched: _run_start(req, s, when))]
    work: list[tuple[int, int, Any]] = []
    last_end = sched["phases"][-1]["end_date"]
    if priv.get("expiring_sent_for") != last_end:
        work.append((max(last_end - EXPIRING_DAYS * DAY, sched["current_phase"]["start_date"]), 0,
                     lambda when, s=sched: _run_expiring(req, s, when)))
    # -1: before the renewal due at the same instant, so the renewal bills the next phase's prices
    work.append((sched["current_phase"]["end_date"], -1, lambda when, s=sched: _run_phase_end(req, s, when)))
    return work


def _clock_work(req: Any, customers: set[str]) -> list[tuple[int, int, Any]]:
    out: list[tuple[int, int, Any]] = []
    for sched in req.store.all("subscription_schedule"):
        if sched["customer"] in customers:
            out.extend(_next_work(req, sched))
    return out


test_clocks.WORK_SOURCES.append(_clock_work)


def _run_start(req: Any, sched: dict[str, Any], when: int) -> None:
    before = copy.deepcopy(sched)
    _start_subscription(req, sched)
    emit("subscription_schedule.updated", sched, diff(before, sched))


def _run_expiring(req: Any, sched: dict[str, Any], when: int) -> None:
    req.store.priv(sched["id"])["expiring_sent_for"] = sched["phases"][-1]["end_date"]
    emit("subscription_schedule.expiring", sched)


def _run_phase_end(req: Any, sched: dict[str, Any], when: int) -> None:
    idx = req.store.priv(sched["id"])["phase"]
    before = copy.deepcopy(sched)
    if idx + 1 < len(sched["phases"]):
        _set_current(sched, idx + 1, req.store)
        _apply_phase(req, sched, idx + 1, when)
        emit("subscription_schedule.updated", sched, diff(before, sched))
        return
    sub = req.store.get(sched["subscription"], "subscription")
    _set_current(sched, None, req.store)
    if sched["end_behavior"] == "cancel":
        sched["status"] = "completed"
        sched["completed_at"] = when
        if sub is not None and sub["status"] not in ("canceled", "incomplete_expired"):
            subs.cancel_subscription(req, sub, reason="cancellation_requested", at=when)
        emit("subscription_schedule.completed", sched, diff(before, sched))
    else:
        _release(req, sched, when)
        sched["completed_at"] = when
        emit("subscription_schedule.released", sched, diff(before, sched))


def _release(req: Any, sched: dict[str, Any], when: int) -> None:
    sub = req.store.get(sched["subscription"], "subscription")
    sched["status"] = "released"
    sched["released_at"] = when
    sched["released_subscription"] = sched["subscription"]
    sched["subscription"] = None
    _set_current(sched, None, req.store)
    if sub is not None:
        sb = copy.deepcopy(sub)
        sub["schedule"] = None
        emit("customer.subscription.updated", sub, diff(sb, sub))


def _on_subscription_canceled(req: Any, sub: dict[str, Any], reason: str) -> None:
    sched = req.store.get(sub.get("schedule"), "subscription_schedule")
    if sched is None or sched["status"] in ENDED:
        return
    before = copy.deepcopy(sched)
    sched["status"] = "canceled"
    sched["canceled_at"] = sub.get("ended_at") or subs._now(req, sub)
    _set_current(sched, None, req.store)
    emit("subscription_schedule.canceled", sched, diff(before, sched))
    if reason == "payment_failed":
        emit("subscription_schedule.aborted", sched)


subs.CANCEL_HOOKS.append(_on_subscription_canceled)


# ------------------------------------------------------------------ routes

@route("POST", "/v1/subscription_schedules", "SubscriptionScheduleCreateParams", returns="subscription_schedule")
def create_schedule(req: Request) -> dict[str, Any]:
    p = req.params
    store = req.store
    if p.get("from_subscription"):
        if any(k in p for k in ("phases", "start_date", "end_behavior", "default_settings", "customer")):
            raise StripeError("You cannot set `phases`, `start_date`, `end_behavior`, `default_settings` or "
                              "`customer` when creating a schedule from a subscription.", param="from_subscription")
        sub = ref_or_400(req, p["from_subscription"], "subscription", "from_subscription")
        if sub["status"] in ("canceled", "incomplete_expired"):
            raise state_error("You cannot create a schedule from a canceled subscription.", param="from_subscription")
        if sub.get("schedule"):
            raise state_error(f"The subscription {sub['id']} is already attached to a schedule.",
                              param="from_subscription")
        cus = store.objects[sub["customer"]]
        now = subs._now(req, sub)
        sched = _build_schedule(req, cus, now, {"metadata": p.get("metadata")})
        sched["default_settings"]["collection_method"] = sub["collection_method"]
        sched["default_settings"]["default_payment_method"] = sub["default_payment_method"]
        start, end = subs.period_of(req, sub)
        phase_p = {"items": [{"price": it["price"]["id"], "quantity": it["quantity"], "metadata": it["metadata"]}
                             if it["quantity"] is not None else {"price": it["price"]["id"]}
                             for it in subs._items(req, sub)],
                   "end_date": end, "metadata": dict(sub["metadata"])}
        if sub["status"] == "trialing":
            phase_p["trial_end"] = sub["trial_end"]
        sched["phases"] = _build_phases(req, [phase_p], start)
        sched["phases"][0]["proration_behavior"] = "create_prorations"
        sched["status"] = "active"
        sched["subscription"] = sub["id"]
        store.add(sched, {"phase": 0})
        _set_current(sched, 0, store)
        before = copy.deepcopy(sub)
        sub["schedule"] = sched["id"]
        emit("subscription_schedule.created", sched)
        emit("customer.subscription.updated", sub, diff(before, sub))
        return sched
    if not p.get("customer"):
        raise StripeError("Missing required param: customer.", code="parameter_missing", param="customer")
    cus = ref_or_400(req, p["customer"], "customer", "customer")
    now = subs._now(req, cus["id"])
    start = p.get("start_date", "now")
    start = now if start == "now" or start <= now else start
    sched = _build_schedule(req, cus, now, p)
    sched["phases"] = _build_phases(req, p.get("phases") or [], start)
    store.add(sched, {"phase": None})
    if start <= now:
        # The subscription (and its first invoice) starts at once; subscription_schedule.created follows its
        # events so that it carries the subscription's id.
        _start_subscription(req, sched)
    emit("subscription_schedule.created", sched)
    return sched


@route("GET", "/v1/subscription_schedules/{schedule}", "SubscriptionScheduleRetrieveParams",
       returns="subscription_schedule")
def retrieve_schedule(req: Request) -> dict[str, Any]:
    return get_or_404(req, req.path_params["schedule"], "subscription_schedule", "subscription schedule",
                      param="schedule")


@route("POST", "/v1/subscription_schedules/{schedule}", "SubscriptionScheduleUpdateParams",
       returns="subscription_schedule")
def update_schedule(req: Request) -> dict[str, Any]:
    sched = retrieve_schedule(req)
    if sched["status"] in ENDED:
        raise state_error(f"You cannot update a subscription schedule that is {sched['status']}.")
    p = req.params
    store = req.store
    before = copy.deepcopy(sched)
    if "end_behavior" in p:
        sched["end_behavior"] = p["end_behavior"]
    if "default_settings" in p:
        sched["default_settings"] = _default_settings(p["default_settings"], sched["default_settings"])
    apply_metadata(sched, p.get("metadata"))
    if "phases" in p:
        now = subs._now(req, sched["customer"])
        if sched["status"] == "active":
            idx = store.priv(sched["id"])["phase"]
            # phases that have ended are history: the update starts with the current phase
            phases = _build_phases(req, p["phases"], sched["phases"][idx]["start_date"],
                                   keep_first_start=sched["phases"][idx]["start_date"])
            if phases[0]["end_date"] <= now:
                raise StripeError("The current phase must end in the future.", param="phases[0][end_date]")
            sched["phases"] = sched["phases"][:idx] + phases
            _set_current(sched, idx, store)
            sub = store.get(sched["subscription"], "subscription")
            wanted = sorted((it["price"], it["quantity"]) for it in phases[0]["items"])
            have = sorted((it["price"]["id"], it["quantity"]) for it in subs._items(req, sub)) if sub else wanted
            if wanted != have:
                _apply_phase(req, sched, idx, now, p.get("proration_behavior"))
        else:
            start = p["phases"][0].get("start_date", sched["phases"][0]["start_date"])
            start = now if start == "now" or start <= now else start
            sched["phases"] = _build_phases(req, p["phases"], start)
            if start <= now:
                _start_subscription(req, sched)
    prev = diff(before, sched)
    if prev:
        emit("subscription_schedule.updated", sched, prev)
    return sched


@route("POST", "/v1/subscription_schedules/{schedule}/release", "SubscriptionScheduleReleaseParams",
       returns="subscription_schedule")
def release_schedule(req: Request) -> dict[str, Any]:
    sched = retrieve_schedule(req)
    if sched["status"] not in ("active", "not_started"):
        raise state_error(f"You cannot release a subscription schedule that is currently {sched['status']}.")
    before = copy.deepcopy(sched)
    _release(req, sched, subs._now(req, sched["customer"]))
    emit("subscription_schedule.released", sched, diff(before, sched))
    return sched


@route("POST", "/v1/subscription_schedules/{schedule}/cancel", "SubscriptionScheduleCancelParams",
       returns="subscription_schedule")
def cancel_schedule(req: Request) -> dict[str, Any]:
    sched = retrieve_schedule(req)
    if sched["status"] not in ("active", "not_started"):
        raise state_error(f"You cannot cancel a subscription schedule that is currently {sched['status']}.")
    p = req.params
    sub = req.store.get(sched["subscription"], "subscription")
    if sub is not None and sub["status"] not in ("canceled", "incomplete_expired"):
        # cancels the schedule too, through the subscription's cancel hook (subscription_schedule.canceled)
        subs.cancel_subscription(req, sub, prorate_now=p.get("prorate", True), invoice_now=p.get("invoice_now", True))
        return sched
    before = copy.deepcopy(sched)
    sched["status"] = "canceled"
    sched["canceled_at"] = subs._now(req, sched["customer"])
    _set_current(sched, None, req.store)
    emit("subscription_schedule.canceled", sched, diff(before, sched))
    return sched


@route("GET", "/v1/subscription_schedules", "SubscriptionScheduleListParams", returns="subscription_schedule")
def list_schedules(req: Request) -> dict[str, Any]:
    p = req.params
    objs = req.store.all("subscription_schedule")
    if "customer" in p:
        objs = [s for s in objs if s["customer"] == p["customer"]]
    if "scheduled" in p:
        objs = [s for s in objs if (s["status"] == "not_started") == p["scheduled"]]
    for key in ("canceled_at", "completed_at", "released_at", "created"):
        if key in p:
            objs = [s for s in created_filter(objs, p[key], key=key)]
    return list_response(req, objs, "/v1/subscription_schedules")
