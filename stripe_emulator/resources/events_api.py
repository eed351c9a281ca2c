"""Events list/retrieve (30-day window) and webhook endpoints CRUD."""
from __future__ import annotations

import copy
from urllib.parse import urlsplit
from typing import Any

from ..errors import StripeError, no_such
from ..events import EVENT_RETENTION_SECONDS, API_VERSION
from ..helpers import apply_metadata, get_or_404
from ..listing import created_filter, list_response
from ..registry import Request, object_type, route
from ..state import new_id, random_token

object_type("event")
object_type("webhook_endpoint")
object_type("deleted_webhook_endpoint")


def _visible(req: Request, ev: dict[str, Any]) -> bool:
    emitted = req.store.private.get(ev["id"], {}).get("emitted_at", ev["created"])
    return emitted >= req.store.clock.now() - EVENT_RETENTION_SECONDS


@route("GET", "/v1/events/{id}", "EventRetrieveParams", returns="event")
def retrieve_event(req: Request) -> dict[str, Any]:
    ev = req.store.get(req.path_params["id"], "event")
    if ev is None or not _visible(req, ev):
        raise no_such("event", req.path_params["id"])
    return ev


@route("GET", "/v1/events", "EventListParams", returns="event")
def list_events(req: Request) -> dict[str, Any]:
    p = req.params
    objs = [e for e in req.store.all("event") if _visible(req, e)]
    if "type" in p:
        pattern = p["type"]
        if pattern.endswith(".*"):
            objs = [e for e in objs if e["type"].startswith(pattern[:-1])]
        else:
            objs = [e for e in objs if e["type"] == pattern]
    if "types" in p:
        types = set(p["types"])
        objs = [e for e in objs if e["type"] in types]
    if "delivery_success" in p:
        want = p["delivery_success"]
        objs = [e for e in objs if (e["pending_webhooks"] == 0) == want]
    objs = created_filter(objs, p.get("created"))
    return list_response(req, objs, "/v1/events")


# ------------------------------------------------------------------ webhook endpoints

def _check_url(url: str) -> None:
    parts = urlsplit(url)
    if parts.scheme not in ("http", "https") or not parts.netloc:
        raise StripeError(f"Invalid URL: {url}. URLs must begin with http:// or https://", param="url",
                          code="url_invalid")


def _check_events(events: list[str]) -> None:
    for e in events:
        if e != "*" and ("." not in e or " " in e):
            raise StripeError(f"Invalid enabled_events: {e} is not a valid event type.", param="enabled_events")


@route("POST", "/v1/webhook_endpoints", "WebhookEndpointCreateParams", returns="webhook_endpoint")
def create_webhook_endpoint(req: Request) -> dict[str, Any]:
    p = req.params
    _check_events(p["enabled_events"])
    _check_url(p["url"])
    ep = {
        "id": new_id("we"),
        "object": "webhook_endpoint",
        "api_version": p.get("api_version"),
        "application": None,
        "created": req.store.clock.now(),
        "description": p.get("description") or None,
        "enabled_events": list(p["enabled_events"]),
        "livemode": False,
        "metadata": {},
        "status": "enabled",
        "url": p["url"],
    }
    apply_metadata(ep, p.get("metadata"))
    secret = "whsec_" + random_token(32)
    req.store.add(ep, {"secret": secret})
    # Stripe returns the signing secret only in the create response.
    out = copy.deepcopy(ep)
    out["secret"] = secret
    return out


@route("GET", "/v1/webhook_endpoints/{id}", "WebhookEndpointRetrieveParams", returns="webhook_endpoint")
def retrieve_webhook_endpoint(req: Request) -> dict[str, Any]:
    return get_or_404(req, req.path_params["id"], "webhook_endpoint", "webhook endpoint")


@route("POST", "/v1/webhook_endpoints/{id}", "WebhookEndpointUpdateParams", returns="webhook_endpoint")
def update_webhook_endpoint(req: Request) -> dict[str, Any]:
    ep = get_or_404(req, req.path_params["id"], "webhook_endpoint", "webhook endpoint")
    p = req.params
    if "enabled_events" in p:
        _check_events(p["enabled_events"])
        ep["enabled_events"] = list(p["enabled_events"])
    if "url" in p:
        _check_url(p["url"])
        ep["url"] = p["url"]
    if "description" in p:
        ep["description"] = p["description"] or None
    if "disabled" in p:
        ep["status"] = "disabled" if p["disabled"] else "enabled"
    apply_metadata(ep, p.get("metadata"))
    return ep


@route("DELETE", "/v1/webhook_endpoints/{id}", "WebhookEndpointDeleteParams", returns="deleted_webhook_endpoint")
def delete_webhook_endpoint(req: Request) -> dict[str, Any]:
    ep = get_or_404(req, req.path_params["id"], "webhook_endpoint", "webhook endpoint")
    req.store.remove(ep["id"])
    return {"id": ep["id"], "object": "webhook_endpoint", "deleted": True}


@route("GET", "/v1/webhook_endpoints", "WebhookEndpointListParams", returns="webhook_endpoint")
def list_webhook_endpoints(req: Request) -> dict[str, Any]:
    return list_response(req, req.store.all("webhook_endpoint"), "/v1/webhook_endpoints")


__all__ = ["API_VERSION"]
