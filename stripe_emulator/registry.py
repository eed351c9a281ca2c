"""Routes, served object types and triggers, registered by resource modules at import time.

    from stripe_emulator.registry import route, object_type, trigger

    object_type("customer", builder=build_customer_sample)    # for the shape test registry

    @route("POST", "/v1/customers", "CustomerCreateParams", returns="customer")
    def create_customer(req: Request) -> dict: ...

Path patterns use `{name}` placeholders (one path segment each); they arrive in `req.path_params`.
"""
from __future__ import annotations

import re
import threading
from dataclasses import dataclass, field
from typing import Any, Callable

from .state import Store


@dataclass
class Request:
    method: str
    path: str
    path_params: dict[str, str]
    params: dict[str, Any]  # validated and coerced (ints/bools), or the raw parsed form
    store: Store
    emulator: Any  # the Emulator (server.py); gives base_url, events, webhooks
    request_id: str
    idempotency_key: str | None = None
    api_version: str | None = None
    headers: dict[str, str] = field(default_factory=dict)
    raw_query: dict[str, Any] = field(default_factory=dict)

    @property
    def base_url(self) -> str:
        return self.emulator.public_url

    def expand_list(self) -> list[str]:
        return list(self.params.get("expand") or [])


@dataclass
class HtmlResponse:
    """Non-JSON answer (hosted pages, receipts, PDFs, redirects)."""

    body: bytes | str = b""
    status: int = 200
    content_type: str = "text/html; charset=utf-8"
    headers: dict[str, str] = field(default_factory=dict)

    @classmethod
    def redirect(cls, location: str, status: int = 303) -> "HtmlResponse":
        return cls(b"", status=status, headers={"Location": location})


@dataclass
class Route:
    method: str
    pattern: str
    params: str | None  # name of the SDK TypedDict in stripe.params, None for control/hosted routes
    handler: Callable[[Request], Any]
    regex: re.Pattern[str]
    returns: str | None = None  # object type (for documentation and the parameter test)
    auth: bool = True
    idempotent: bool = True  # POSTs honour Idempotency-Key


ROUTES: list[Route] = []
# Exact-match fast path: (method, path) -> Route for patterns without placeholders.
_STATIC: dict[tuple[str, str], Route] = {}
_DYNAMIC: list[Route] = []

# object type -> info for the shape test and docs
OBJECT_TYPES: dict[str, dict[str, Any]] = {}

# trigger name -> fn(emulator) creating objects and events like `stripe trigger <name>`
TRIGGERS: dict[str, Callable[[Any], Any]] = {}

_lock = threading.Lock()


def _compile(pattern: str) -> re.Pattern[str]:
    out = "^"
    for part in re.split(r"(\{[a-z_]+\})", pattern):
        if part.startswith("{"):
            out += f"(?P<{part[1:-1]}>[^/]+)"
        else:
            out += re.escape(part)
    return re.compile(out + "$")


def route(
    method: str,
    pattern: str,
    params: str | None = None,
    *,
    returns: str | None = None,
    auth: bool = True,
    idempotent: bool = True,
) -> Callable[[Callable[[Request], Any]], Callable[[Request], Any]]:
    def deco(fn: Callable[[Request], Any]) -> Callable[[Request], Any]:
        r = Route(method.upper(), pattern, params, fn, _compile(pattern), returns, auth, idempotent)
        with _lock:
            ROUTES.append(r)
            if "{" in pattern:
                # Literal segments win over placeholders (`/v1/customers/search` vs `/{id}`).
                _DYNAMIC.append(r)
                _DYNAMIC.sort(key=lambda x: (-x.pattern.count("/"), x.pattern.count("{")))
            else:
                _STATIC[(r.method, pattern)] = r
        return fn

    return deco


def match(method: str, path: str) -> tuple[Route | None, dict[str, str], bool]:
    """(route, path params, path exists with another method)."""
    r = _STATIC.get((method, path))
    if r is not None:
        return r, {}, True
    path_known = any(k[1] == path for k in _STATIC)
    for r in _DYNAMIC:
        m = r.regex.match(path)
        if m:
            if r.method == method:
                return r, m.groupdict(), True
            path_known = True
    return None, {}, path_known


def object_type(name: str, **info: Any) -> None:
    """Declare an object type the emulator serves (the shape test walks this registry)."""
    OBJECT_TYPES[name] = info


def trigger(name: str) -> Callable[[Callable[[Any], Any]], Callable[[Any], Any]]:
    def deco(fn: Callable[[Any], Any]) -> Callable[[Any], Any]:
        TRIGGERS[name] = fn
        return fn

    return deco

# (object type, field) -> fn(store, obj) for Stripe's "includable" fields, returned only when requested with
# expand[] (e.g. price.currency_options, price.tiers).
INCLUDABLE: dict[tuple[str, str], Callable[[Any, dict[str, Any]], Any]] = {}


def includable(object_type_name: str, field_name: str) -> Callable[[Callable[[Any, dict[str, Any]], Any]], Callable[[Any, dict[str, Any]], Any]]:
    def deco(fn: Callable[[Any, dict[str, Any]], Any]) -> Callable[[Any, dict[str, Any]], Any]:
        INCLUDABLE[(object_type_name, field_name)] = fn
        return fn

    return deco
