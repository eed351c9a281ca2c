"""Test clocks: customers created with `test_clock` live at the clock's `frozen_time`; advancing it runs,
in time order, everything that would have happened to their subscriptions and invoices meanwhile.

Scheduled work per step (the earliest first; each runs with the clock set to its own moment, so events carry
that time):
- trial: `customer.subscription.trial_will_end` 3 days before `trial_end`, then the trial ends (new period,
  `subscription_cycle` invoice);
- renewal at the period end: new period on the items, a draft invoice that Stripe finalizes one hour later
  (`automatically_finalizes_at`), then payment with the default payment method;
- `invoice.upcoming` 7 days before a renewal;
- failed payments are retried 3, 5 and 7 days after the first failure (invoices.RETRY_SCHEDULE_DAYS); after
  the last one the subscription is canceled (or set `unpaid`, per POST /_emulator/billing_settings);
- incomplete subscriptions expire after 23 hours; `cancel_at` / `cancel_at_period_end` cancel on time.

The advance request answers the clock with status `advancing` (as Stripe does) but the work is finished
before the response is sent, so the next retrieve already shows `ready`.
"""
from __future__ import annotations

import copy
from typing import Any, Callable

from ..errors import StripeError
from ..events import emit
from ..helpers import get_or_404
from ..listing import list_response
from ..registry import Request, object_type, route
from ..state import new_id
from . import async_payments
from . import invoices as inv_mod
from . import subscriptions as subs
from .billing_common import DAY, sdk_params_name
from .customers import delete_customer_obj

object_type("test_helpers.test_clock")
object_type("deleted_test_helpers.test_clock")

MAX_STEPS = 20000
# Other clock-driven objects (subscription schedules) plug in here instead of being imported:
# fn(req, customer_ids) -> [(time, priority, run)] where run(when) does the work. Lower priority runs first at
# the same time (subscriptions 0, invoice finalization 1, retries 2).
WORK_SOURCES: list[Callable[[Any, set[str]], list[tuple[int, int, Callable[[int], None]]]]] = []


@route("POST", "/v1/test_helpers/test_clocks", sdk_params_name("test_helpers.TestClockCreateParams"),
       returns="test_helpers.test_clock")
def create_clock(req: Request) -> dict[str, Any]:
    p = req.params
    now = req.store.clock.now()
    clock = {
        "id": new_id("clock"),
        "object": "test_helpers.test_clock",
        "created": now,
        "deletes_after": now + 30 * DAY,
        "frozen_time": p["frozen_time"],
        "livemode": False,
        "name": p.get("name"),
        "status": "ready",
        "status_details": {},
    }
    req.store.add(clock)
    emit("test_helpers.test_clock.created", clock)
    return clock


@route("GET", "/v1/test_helpers/test_clocks/{id}", sdk_params_name("test_helpers.TestClockRetrieveParams"),
       returns="test_helpers.test_clock")
def retrieve_clock(req: Request) -> dict[str, Any]:
    oid = req.path_params["id"]
    clock = req.store.get(oid, "test_helpers.test_clock")
    if clock is None:
        if req.store.deleted.get(oid) == "test_helpers.test_clock":
            return {"id": oid, "object": "test_helpers.test_clock", "deleted": True}
        raise StripeError(f"No such test_clock: '{oid}'", status=404, code="resource_missing", param="id")
    return clock


@route("GET", "/v1/test_helpers/test_clocks", sdk_params_name("test_helpers.TestClockListParams"),
       returns="test_helpers.test_clock")
def list_clocks(req: Request) -> dict[str, Any]:
    return list_response(req, req.store.all("test_helpers.test_clock"), "/v1/test_helpers/test_clocks")


@route("DELETE", "/v1/test_helpers/test_clocks/{id}", sdk_params_name("test_helpers.TestClockDeleteParams"),
       returns="deleted_test_helpers.test_clock")
def delete_clock(req: Request) -> dict[str, Any]:
    clock = get_or_404(req, req.path_params["id"], "test_helpers.test_clock", "test_clock")
    # Stripe deletes the clock's customers (and so cancels their subscriptions) with it.
    for cus in req.store.all("customer"):
        if cus.get("test_clock") == clock["id"]:
            delete_customer_obj(req, cus)
    req.store.remove(clock["id"])
    emit("test_helpers.test_clock.deleted", clock)
    return {"id": clock["id"], "object": "test_helpers.test_clock", "deleted": True}


def _due_work(req: Any, clock_id: str) -> list[tuple[int, int, str, dict[str, Any], Any]]:
    """(time, priority, kind, object, action) of everything scheduled for the clock's customers."""
    store = req.store
    customers = {c["id"] for c in store.all("customer") if c.get("test_clock") == clock_id}
    work: list[tuple[int, int, str, dict[str, Any], Any]] = []
    if not customers:
        return work
    for sub in store.all("subscription"):
        if sub["customer"] in customers:
            nxt = subs.next_action(req, sub)
            if nxt is not None:
                work.append((nxt[0], 0, "subscription", sub, nxt[1]))
    for source in WORK_SOURCES:
        for when, priority, run in source(req, customers):
            work.append((when, priority, "hook", {}, run))
    for inv in store.all("invoice"):
        if inv["customer"] not in customers:
            continue
        if inv["status"] == "draft" and inv["auto_advance"] and inv.get("automatically_finalizes_at"):
            work.append((inv["automatically_finalizes_at"], 1, "invoice", inv, "finalize"))
        elif (inv["status"] == "open" and inv["collection_method"] == "charge_automatically"
              and inv.get("next_payment_attempt") and inv["auto_advance"]):
            work.append((inv["next_payment_attempt"], 2, "invoice", inv, "retry"))
    return work


def advance(req: Any, clock: dict[str, Any], target: int) -> None:
    for _ in range(MAX_STEPS):
        due = [w for w in _due_work(req, clock["id"]) if w[0] <= target]
        if not due:
            break
        when, _, kind, obj, action = min(due, key=lambda w: (w[0], w[1]))
        clock["frozen_time"] = max(clock["frozen_time"], when)
        if kind == "subscription":
            subs.run_action(req, obj, when, action)
        elif kind == "hook":
            action(when)
        elif action == "finalize":
            inv_mod.finalize_invoice(req, obj)
            if obj["status"] == "open" and obj["collection_method"] == "charge_automatically":
                inv_mod.attempt_payment(req, obj, automatic=True)
            elif obj["status"] == "open":
                emit("invoice.sent", obj)
        else:
            inv_mod.attempt_payment(req, obj, automatic=True)
    else:
        raise StripeError("The test clock could not finish advancing (too many scheduled events).", status=500,
                          type="api_error")
    clock["frozen_time"] = target


@route("POST", "/v1/test_helpers/test_clocks/{id}/advance", sdk_params_name("test_helpers.TestClockAdvanceParams"),
       returns="test_helpers.test_clock")
def advance_clock(req: Request) -> dict[str, Any]:
    clock = get_or_404(req, req.path_params["id"], "test_helpers.test_clock", "test_clock")
    target = req.params["frozen_time"]
    if clock["status"] != "ready":
        raise StripeError("The test clock is currently advancing; wait for it to be ready.")
    if target <= clock["frozen_time"]:
        raise StripeError("The frozen time must be after the test clock's current frozen time.", param="frozen_time")
    clock["status"] = "advancing"
    clock["status_details"] = {"advancing": {"target_frozen_time": target}}
    emit("test_helpers.test_clock.advancing", clock)
    answer = copy.deepcopy(clock)
    try:
        advance(req, clock, target)
        async_payments.expire_due(req)  # Boleto vouchers / Pix codes of the clock's customers may now be past due
    finally:
        clock["status"] = "ready"
        clock["status_details"] = {}
    emit("test_helpers.test_clock.ready", clock)
    return answer
