"""Events: `emit(type, obj, previous_attributes)` stores an `event` and queues its webhooks."""
from __future__ import annotations

import copy
from typing import Any

import stripe

from .context import current_emulator, current_request
from .state import new_id

# Stripe keeps events retrievable for 30 days.
EVENT_RETENTION_SECONDS = 30 * 24 * 3600
API_VERSION = stripe.api_version


def _event_time(emulator: Any, obj: dict[str, Any]) -> int:
    clock = emulator.store.clock
    if obj.get("object") == "customer":
        return clock.now_for_test_clock(obj.get("test_clock"))
    if obj.get("object") == "test_helpers.test_clock":
        return int(obj.get("frozen_time") or clock.now())
    if obj.get("test_clock"):
        return clock.now_for_test_clock(obj["test_clock"])
    cus = obj.get("customer")
    if isinstance(cus, dict):
        cus = cus.get("id")
    return clock.now_for_customer(cus)


def emit(event_type: str, obj: dict[str, Any], previous_attributes: dict[str, Any] | None = None) -> dict[str, Any]:
    """Create the `event` for a state change (snapshotting `obj` now) and queue its delivery."""
    emulator = current_emulator()
    store = emulator.store
    req = current_request()
    data: dict[str, Any] = {"object": copy.deepcopy(obj)}
    if previous_attributes is not None:
        data["previous_attributes"] = copy.deepcopy(previous_attributes)
    event = {
        "id": new_id("evt"),
        "object": "event",
        "api_version": API_VERSION,
        "created": _event_time(emulator, obj),
        "data": data,
        "livemode": False,
        "pending_webhooks": 0,
        "request": {
            "id": (req.request_id or None) if req is not None else None,
            "idempotency_key": req.idempotency_key if req is not None else None,
        },
        "type": event_type,
    }
    with store.lock:
        store.add(event)
        store.priv(event["id"])["emitted_at"] = store.clock.now()
        emulator.webhooks.enqueue(event)
    return event


def diff(before: dict[str, Any], after: dict[str, Any]) -> dict[str, Any]:
    """Stripe's `previous_attributes`: old values of the top-level keys that changed."""
    prev: dict[str, Any] = {}
    for key, old in before.items():
        new = after.get(key)
        if old != new:
            if isinstance(old, dict) and isinstance(new, dict) and key != "metadata":
                sub = diff(old, new)
                prev[key] = sub if sub else old
            else:
                prev[key] = copy.deepcopy(old)
    return prev
