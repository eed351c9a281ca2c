"""Billing meters, meter events (deduplicated by `identifier`), event summaries and adjustments.

Meter events have no id in Stripe; they are kept in one private ledger (persisted with the state). An event
whose `identifier` was already used for the same event name is accepted again but counted once: the
emulator answers with the event stored first (Stripe enforces identifier uniqueness over a rolling 24 h or
more, rejecting the copy asynchronously; clients that retry with the same identifier must not double count).
"""
from __future__ import annotations

import copy
from decimal import Decimal, InvalidOperation
from typing import Any

from ..errors import StripeError
from ..helpers import get_or_404
from ..listing import list_response
from ..registry import Request, object_type, route
from ..state import random_token
from .billing_common import DAY, sdk_params_name

object_type("billing.meter")
object_type("billing.meter_event")
object_type("billing.meter_event_summary")
object_type("billing.meter_event_adjustment")

_LEDGER = "__emu_b_meter_events__"
PAST_LIMIT = 35 * DAY
FUTURE_LIMIT = 5 * 60


def _ledger(store: Any) -> dict[str, Any]:
    led = store.private.get(_LEDGER)
    if led is None:
        led = store.private[_LEDGER] = {"events": [], "identifiers": {}}
    return led


def _meter_for_event(store: Any, event_name: str) -> dict[str, Any] | None:
    for m in store.all("billing.meter"):
        if m["event_name"] == event_name and m["status"] == "active":
            return m
    return None


def _number(value: Any) -> Decimal:
    return Decimal(str(value))


def _json_number(d: Decimal) -> int | float:
    # usage quantities, not money: a JSON number like Stripe's aggregated_value
    return int(d) if d == d.to_integral_value() else float(d)


def usage_for(store: Any, meter_id: str, customer: str, start: int, end: int) -> int:
    """Aggregated usage of `customer` on a meter in [start, end), as a whole quantity to bill."""
    total = _aggregate(store, meter_id, customer, start, end)
    return int(total.to_integral_value())


def _aggregate(store: Any, meter_id: str, customer: str, start: int, end: int) -> Decimal:
    meter = store.get(meter_id, "billing.meter")
    if meter is None:
        return Decimal(0)
    formula = meter["default_aggregation"]["formula"]
    rows = [e for e in _ledger(store)["events"]
            if e["event_name"] == meter["event_name"] and e["customer"] == customer and not e["canceled"]
            and start <= e["timestamp"] < end]
    if formula == "count":
        return Decimal(len(rows))
    if formula == "last":
        return _number(max(rows, key=lambda e: e["timestamp"])["value"]) if rows else Decimal(0)
    return sum((_number(e["value"]) for e in rows), Decimal(0))


# ------------------------------------------------------------------ meters

@route("POST", "/v1/billing/meters", sdk_params_name("billing.MeterCreateParams"), returns="billing.meter")
def create_meter(req: Request) -> dict[str, Any]:
    p = req.params
    for m in req.store.all("billing.meter"):
        if m["event_name"] == p["event_name"] and m["status"] == "active":
            raise StripeError(f"An active meter with event_name `{p['event_name']}` already exists.", param="event_name")
    now = req.store.clock.now()
    cm = p.get("customer_mapping") or {}
    vs = p.get("value_settings") or {}
    formula = p["default_aggregation"]["formula"]
    meter = {
        "id": "mtr_test_" + random_token(32),
        "object": "billing.meter",
        "created": now,
        "customer_mapping": {"event_payload_key": cm.get("event_payload_key", "stripe_customer_id"),
                             "type": cm.get("type", "by_id")},
        "default_aggregation": {"formula": formula},
        "display_name": p["display_name"],
        "event_name": p["event_name"],
        "event_time_window": p.get("event_time_window"),
        "livemode": False,
        "status": "active",
        "status_transitions": {"deactivated_at": None},
        "updated": now,
        "value_settings": {"event_payload_key": vs.get("event_payload_key", "value")},
    }
    req.store.add(meter)
    return meter


@route("GET", "/v1/billing/meters/{id}", sdk_params_name("billing.MeterRetrieveParams"), returns="billing.meter")
def retrieve_meter(req: Request) -> dict[str, Any]:
    return get_or_404(req, req.path_params["id"], "billing.meter", "billing meter")


@route("POST", "/v1/billing/meters/{id}", sdk_params_name("billing.MeterUpdateParams"), returns="billing.meter")
def update_meter(req: Request) -> dict[str, Any]:
    meter = get_or_404(req, req.path_params["id"], "billing.meter", "billing meter")
    if "display_name" in req.params:
        meter["display_name"] = req.params["display_name"]
        meter["updated"] = req.store.clock.now()
    return meter


@route("GET", "/v1/billing/meters", sdk_params_name("billing.MeterListParams"), returns="billing.meter")
def list_meters(req: Request) -> dict[str, Any]:
    objs = req.store.all("billing.meter")
    if "status" in req.params:
        objs = [m for m in objs if m["status"] == req.params["status"]]
    return list_response(req, objs, "/v1/billing/meters")


@route("POST", "/v1/billing/meters/{id}/deactivate", sdk_params_name("billing.MeterDeactivateParams"), returns="billing.meter")
def deactivate_meter(req: Request) -> dict[str, Any]:
    meter = get_or_404(req, req.path_params["id"], "billing.meter", "billing meter")
    if meter["status"] != "active":
        raise StripeError("This meter is already inactive.")
    now = req.store.clock.now()
    meter["status"] = "inactive"
    meter["status_transitions"]["deactivated_at"] = now
    meter["updated"] = now
    return meter


@route("POST", "/v1/billing/meters/{id}/reactivate", sdk_params_name("billing.MeterReactivateParams"), returns="billing.meter")
def reactivate_meter(req: Request) -> dict[str, Any]:
    meter = get_or_404(req, req.path_params["id"], "billing.meter", "billing meter")
    if meter["status"] == "active":
        raise StripeError("This meter is already active.")
    meter["status"] = "active"
    meter["status_transitions"]["deactivated_at"] = None
    meter["updated"] = req.store.clock.now()
    return meter


# ------------------------------------------------------------------ meter events

@route("POST", "/v1/billing/meter_events", sdk_params_name("billing.MeterEventCreateParams"), returns="billing.meter_event")
def create_meter_event(req: Request) -> dict[str, Any]:
    p = req.params
    store = req.store
    meter = _meter_for_event(store, p["event_name"])
    if meter is None:
        raise StripeError(f"No active meter was found matching the event_name `{p['event_name']}`.",
                          param="event_name", code="resource_missing")
    payload = p["payload"] if isinstance(p["payload"], dict) else {}
    cus_key = meter["customer_mapping"]["event_payload_key"]
    val_key = meter["value_settings"]["event_payload_key"]
    customer = payload.get(cus_key)
    if not customer:
        raise StripeError(f"Missing required payload key: `{cus_key}`.", param=f"payload[{cus_key}]",
                          code="parameter_missing")
    cus = store.get(customer, "customer")
    if cus is None:
        raise StripeError(f"No such customer: '{customer}'", param=f"payload[{cus_key}]", code="resource_missing")
    raw_value = payload.get(val_key, "1" if meter["default_aggregation"]["formula"] == "count" else None)
    if raw_value is None:
        raise StripeError(f"Missing required payload key: `{val_key}`.", param=f"payload[{val_key}]",
                          code="parameter_missing")
    try:
        value = _number(raw_value)
    except InvalidOperation:
        raise StripeError(f"The value `{raw_value}` for payload key `{val_key}` must be a number.",
                          param=f"payload[{val_key}]") from None
    if meter["default_aggregation"]["formula"] == "sum" and value < 0:
        raise StripeError("Meter event values must be non-negative.", param=f"payload[{val_key}]")
    now = store.clock.now_for_customer(customer)
    ts = p.get("timestamp", now)
    if ts < now - PAST_LIMIT or ts > now + FUTURE_LIMIT:
        raise StripeError("Timestamp must be within the past 35 calendar days or up to 5 minutes in the future.",
                          param="timestamp")
    led = _ledger(store)
    identifier = p.get("identifier") or random_token(32)
    key = f"{p['event_name']}\x00{identifier}"
    if key in led["identifiers"]:
        return _event_obj(led["events"][led["identifiers"][key]])
    row = {"event_name": p["event_name"], "identifier": identifier, "customer": customer, "value": str(raw_value),
           "timestamp": ts, "created": now, "canceled": False, "payload": {k: str(v) for k, v in payload.items()}}
    led["identifiers"][key] = len(led["events"])
    led["events"].append(row)
    return _event_obj(row)


def _event_obj(row: dict[str, Any]) -> dict[str, Any]:
    return {"object": "billing.meter_event", "created": row["created"], "event_name": row["event_name"],
            "identifier": row["identifier"], "livemode": False, "payload": copy.deepcopy(row["payload"]),
            "timestamp": row["timestamp"]}


@route("POST", "/v1/billing/meter_event_adjustments", sdk_params_name("billing.MeterEventAdjustmentCreateParams"),
       returns="billing.meter_event_adjustment")
def create_adjustment(req: Request) -> dict[str, Any]:
    p = req.params
    if p["type"] != "cancel":
        raise StripeError("Invalid type: must be cancel", param="type")
    identifier = (p.get("cancel") or {}).get("identifier")
    if not identifier:
        raise StripeError("Missing required param: cancel[identifier].", param="cancel[identifier]",
                          code="parameter_missing")
    led = _ledger(req.store)
    idx = led["identifiers"].get(f"{p['event_name']}\x00{identifier}")
    if idx is None:
        raise StripeError(f"No meter event with identifier `{identifier}` was found for event_name "
                          f"`{p['event_name']}`.", param="cancel[identifier]", code="resource_missing")
    row = led["events"][idx]
    if req.store.clock.now_for_customer(row["customer"]) - row["created"] > DAY:
        raise StripeError("Meter events can only be canceled within 24 hours of being reported.",
                          param="cancel[identifier]")
    row["canceled"] = True
    return {"object": "billing.meter_event_adjustment", "cancel": {"identifier": identifier},
            "event_name": p["event_name"], "livemode": False, "status": "complete", "type": "cancel"}


# ------------------------------------------------------------------ summaries

@route("GET", "/v1/billing/meters/{id}/event_summaries", sdk_params_name("billing.MeterEventSummaryListParams"),
       returns="billing.meter_event_summary")
def list_summaries(req: Request) -> dict[str, Any]:
    meter = get_or_404(req, req.path_params["id"], "billing.meter", "billing meter")
    p = req.params
    start, end = p["start_time"], p["end_time"]
    if end <= start:
        raise StripeError("end_time must be after start_time.", param="end_time")
    if req.store.get(p["customer"], "customer") is None:
        raise StripeError(f"No such customer: '{p['customer']}'", param="customer", code="resource_missing")
    window = p.get("value_grouping_window")
    step = {"hour": 3600, "day": DAY}.get(window or "", end - start)
    if window and (start % step or end % step):
        raise StripeError(f"start_time and end_time must be aligned to {window} boundaries.", param="start_time")
    bounds = []
    t = start
    while t < end:
        bounds.append((t, min(t + step, end)))
        t += step
    summaries = [{
        "id": "mtrusg_" + random_token(24),
        "object": "billing.meter_event_summary",
        "aggregated_value": _json_number(_aggregate(req.store, meter["id"], p["customer"], s, e)),
        "end_time": e,
        "livemode": False,
        "meter": meter["id"],
        "start_time": s,
    } for s, e in bounds]
    summaries.reverse()  # newest window first, like Stripe's lists
    # ids are generated per request, so paginate by position instead of by id
    limit = p.get("limit", 10)
    return {"object": "list", "data": summaries[:limit], "has_more": len(summaries) > limit,
            "url": f"/v1/billing/meters/{meter['id']}/event_summaries"}


__all__ = ["usage_for"]
