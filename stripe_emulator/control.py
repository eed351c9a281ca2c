"""Control API under /_emulator/ (no auth): reset, deliveries, trigger, request log, faults."""
from __future__ import annotations

from typing import Any

from .errors import StripeError
from .registry import TRIGGERS, HtmlResponse, Request, route


def _first(params: dict[str, Any], key: str, default: Any = None) -> Any:
    v = params.get(key, default)
    return v[0] if isinstance(v, list) and v else v


@route("POST", "/_emulator/reset", auth=False, idempotent=False)
def reset(req: Request) -> dict[str, Any]:
    req.emulator.reset()
    return {"ok": True}


@route("GET", "/_emulator/deliveries", auth=False)
def deliveries(req: Request) -> dict[str, Any]:
    rows = list(req.emulator.webhooks.deliveries)
    event = _first(req.params, "event")
    endpoint = _first(req.params, "endpoint")
    etype = _first(req.params, "type")
    if event:
        rows = [r for r in rows if r["event"] == event]
    if endpoint:
        rows = [r for r in rows if r["endpoint"] == endpoint]
    if etype:
        rows = [r for r in rows if r["type"] == etype]
    return {"object": "list", "data": rows, "pending": not req.emulator.webhooks.idle()}


@route("POST", "/_emulator/webhooks/pause", auth=False, idempotent=False)
def pause(req: Request) -> dict[str, Any]:
    req.emulator.webhooks.pause()
    return {"paused": True}


@route("POST", "/_emulator/webhooks/resume", auth=False, idempotent=False)
def resume(req: Request) -> dict[str, Any]:
    req.emulator.webhooks.resume()
    return {"paused": False}


@route("POST", "/_emulator/trigger", auth=False, idempotent=False)
def trigger(req: Request) -> dict[str, Any]:
    name = _first(req.params, "type") or _first(req.params, "event")
    fn = TRIGGERS.get(name or "")
    if fn is None:
        raise StripeError(
            f"Unknown trigger type: {name!r}. Known: {', '.join(sorted(TRIGGERS))}", param="type"
        )
    store = req.store
    before = set(store.order.get("event", []))
    result = fn(req.emulator)
    created = [i for i in store.order.get("event", []) if i not in before]
    return {
        "type": name,
        "events": [{"id": i, "type": store.objects[i]["type"]} for i in created if i in store.objects],
        "objects": result if isinstance(result, dict) else {},
    }


@route("GET", "/_emulator/requests", auth=False)
def requests_log(req: Request) -> dict[str, Any]:
    prefix = _first(req.params, "path_prefix") or ""
    method = (_first(req.params, "method") or "").upper()
    rows = [r for r in list(req.emulator.request_log) if r["path"].startswith(prefix) and (not method or r["method"] == method)]
    return {"object": "list", "data": rows, "count": len(rows)}


@route("DELETE", "/_emulator/requests", auth=False)
def clear_requests(req: Request) -> dict[str, Any]:
    with req.emulator._log_lock:
        req.emulator.request_log = []
    return {"ok": True}


@route("POST", "/_emulator/faults", auth=False, idempotent=False)
def add_fault(req: Request) -> dict[str, Any]:
    p = req.params
    mode = _first(p, "mode") or "status"
    if mode not in ("status", "drop"):
        raise StripeError("mode must be 'status' or 'drop'", param="mode")
    try:
        status = int(_first(p, "status") or 500)
        count = int(_first(p, "count") or 1)
    except ValueError:
        raise StripeError("status and count must be integers", param="status") from None
    fault = {
        "path_prefix": _first(p, "path_prefix") or "/v1/",
        "method": (_first(p, "method") or "").upper() or None,
        "status": status,
        "mode": mode,
        "remaining": count,  # -1 = until cleared
        "hits": 0,
    }
    with req.emulator._log_lock:
        req.emulator.faults.append(fault)
    return fault


@route("GET", "/_emulator/faults", auth=False)
def list_faults(req: Request) -> dict[str, Any]:
    return {"object": "list", "data": list(req.emulator.faults)}


@route("DELETE", "/_emulator/faults", auth=False)
def clear_faults(req: Request) -> dict[str, Any]:
    with req.emulator._log_lock:
        req.emulator.faults = []
    return {"ok": True}


@route("GET", "/_emulator/clock", auth=False)
def get_clock(req: Request) -> dict[str, Any]:
    return {"now": req.store.clock.now(), "offset": req.store.clock.offset}


@route("POST", "/_emulator/clock", auth=False, idempotent=False)
def set_clock(req: Request) -> dict[str, Any]:
    """Shift the emulator's global time: `advance=<seconds>` or `now=<unix seconds>` (never backwards)."""
    clock = req.store.clock
    try:
        if _first(req.params, "advance") is not None:
            delta = int(_first(req.params, "advance"))
        elif _first(req.params, "now") is not None:
            delta = int(_first(req.params, "now")) - clock.now()
        else:
            raise StripeError("Pass `advance` (seconds) or `now` (unix seconds).", param="advance")
    except ValueError:
        raise StripeError("`advance` and `now` must be integers.", param="advance") from None
    if delta < 0:
        raise StripeError("The emulator's clock cannot go backwards.", param="advance")
    clock.offset += delta
    return {"now": clock.now(), "offset": clock.offset}


@route("GET", "/_emulator/health", auth=False)
def health(req: Request) -> dict[str, Any]:
    return {"ok": True, "objects": len(req.store.objects)}


@route("GET", "/", auth=False)
def index(req: Request) -> HtmlResponse:
    return HtmlResponse("<!doctype html><title>Stripe emulator</title><h1>Stripe emulator</h1><p>API at /v1, control API at /_emulator/.</p>")
