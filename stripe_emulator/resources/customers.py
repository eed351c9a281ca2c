"""Customers: CRUD, list, search; customer.created/updated/deleted events."""
from __future__ import annotations

import copy
from typing import Any

from ..errors import StripeError, no_such
from ..events import diff, emit
from ..helpers import address, apply_metadata, get_or_404, merged, ref_or_400
from ..listing import created_filter, list_response, search_response
from ..registry import Request, includable, object_type, route, trigger
from ..state import new_id, random_token
from .payment_methods import attach_payment_method, check_attachable, resolve_payment_method

object_type("customer")
object_type("deleted_customer")

_SIMPLE = ["description", "email", "name", "phone", "preferred_locales", "tax_exempt", "next_invoice_sequence", "balance"]


def build_customer(req: Request, p: dict[str, Any]) -> dict[str, Any]:
    store = req.store
    test_clock = p.get("test_clock")
    if test_clock:
        ref_or_400(req, test_clock, "test_helpers.test_clock", "test_clock", "test clock")
    cus: dict[str, Any] = {
        "id": new_id("cus", 14),
        "object": "customer",
        "address": address(p.get("address")),
        "balance": p.get("balance", 0),
        "created": store.clock.now_for_test_clock(test_clock),
        "currency": None,
        "default_source": None,
        "delinquent": False,
        "description": p.get("description"),
        "discount": None,
        "email": p.get("email"),
        "invoice_prefix": p.get("invoice_prefix") or random_token(8).upper(),
        "invoice_settings": {
            "custom_fields": None,
            "default_payment_method": None,
            "footer": None,
            "rendering_options": None,
        },
        "livemode": False,
        "metadata": {},
        "name": p.get("name"),
        "next_invoice_sequence": p.get("next_invoice_sequence", 1),
        "phone": p.get("phone"),
        "preferred_locales": p.get("preferred_locales") or [],
        "shipping": _shipping(p.get("shipping")),
        "tax_exempt": p.get("tax_exempt") or "none",
        "test_clock": test_clock,
    }
    apply_metadata(cus, p.get("metadata"))
    _invoice_settings(req, cus, p.get("invoice_settings"))
    return cus


def _shipping(value: Any) -> dict[str, Any] | None:
    if not value:
        return None
    return {"address": address(value.get("address")), "name": value.get("name"), "phone": value.get("phone")}


def _invoice_settings(req: Request, cus: dict[str, Any], value: Any) -> None:
    if not value:
        return
    s = cus["invoice_settings"]
    if "default_payment_method" in value:
        pm_id = value["default_payment_method"]
        if pm_id:
            pm = ref_or_400(req, pm_id, "payment_method", "invoice_settings[default_payment_method]", "PaymentMethod")
            if pm.get("customer") != cus["id"]:
                raise StripeError(
                    f"The customer does not have a payment method with the ID {pm_id}. The payment method must be "
                    "attached to the customer.", param="invoice_settings[default_payment_method]",
                    code="resource_missing",
                )
        s["default_payment_method"] = pm_id or None
    if "footer" in value:
        s["footer"] = value["footer"] or None
    if "custom_fields" in value:
        s["custom_fields"] = value["custom_fields"] or None
    if "rendering_options" in value:
        ro = value["rendering_options"]
        s["rendering_options"] = None if ro == "" else {
            "amount_tax_display": ro.get("amount_tax_display") or None, "template": ro.get("template")
        }


@route("POST", "/v1/customers", "CustomerCreateParams", returns="customer")
def create_customer(req: Request) -> dict[str, Any]:
    p = req.params
    pm = None
    if p.get("payment_method"):
        # A test id such as `pm_card_visa` is accepted here as everywhere; a card that cannot be attached
        # fails the request before any customer exists, as on Stripe.
        pm = resolve_payment_method(req, p["payment_method"])
        check_attachable(req, pm, None)
    cus = build_customer(req, p)
    req.store.add(cus)
    if pm is not None:
        attach_payment_method(req, pm, cus)
    emit("customer.created", cus)
    return cus


@route("GET", "/v1/customers/{id}", "CustomerRetrieveParams", returns="customer")
def retrieve_customer(req: Request) -> dict[str, Any]:
    oid = req.path_params["id"]
    cus = req.store.get(oid, "customer")
    if cus is None:
        if req.store.deleted.get(oid) == "customer":
            return {"id": oid, "object": "customer", "deleted": True}
        raise no_such("customer", oid)
    return cus


@route("POST", "/v1/customers/{id}", "CustomerUpdateParams", returns="customer")
def update_customer(req: Request) -> dict[str, Any]:
    cus = get_or_404(req, req.path_params["id"], "customer")
    before = copy.deepcopy(cus)
    p = req.params
    for name in ("description", "email", "name", "phone"):
        if name in p:
            cus[name] = p[name] or None
    if "balance" in p:
        cus["balance"] = p["balance"]
    if "preferred_locales" in p:
        cus["preferred_locales"] = p["preferred_locales"] or []
    if "tax_exempt" in p:
        cus["tax_exempt"] = p["tax_exempt"] or "none"
    if "next_invoice_sequence" in p:
        cus["next_invoice_sequence"] = p["next_invoice_sequence"]
    if "invoice_prefix" in p:
        cus["invoice_prefix"] = p["invoice_prefix"]
    if "address" in p:
        cus["address"] = None if p["address"] == "" else address(merged(cus.get("address"), p["address"]))
    if "shipping" in p:
        cus["shipping"] = _shipping(p["shipping"])
    if "default_source" in p:
        cus["default_source"] = p["default_source"] or None
    apply_metadata(cus, p.get("metadata"))
    _invoice_settings(req, cus, p.get("invoice_settings"))
    prev = diff(before, cus)
    if prev:
        emit("customer.updated", cus, prev)
    return cus


@route("DELETE", "/v1/customers/{id}", "CustomerDeleteParams", returns="deleted_customer")
def delete_customer(req: Request) -> dict[str, Any]:
    cus = get_or_404(req, req.path_params["id"], "customer")
    delete_customer_obj(req, cus)
    return {"id": cus["id"], "object": "customer", "deleted": True}


def delete_customer_obj(req: Any, cus: dict[str, Any]) -> None:
    store = req.store
    # Stripe cancels the customer's subscriptions and detaches payment methods when deleting.
    for hook in DELETE_HOOKS:
        hook(req, cus)
    for pm in store.all("payment_method"):
        if pm.get("customer") == cus["id"]:
            pm["customer"] = None
    store.remove(cus["id"])
    emit("customer.deleted", cus)


# EMU-B: append fn(req, customer) to cancel subscriptions etc. before a customer is deleted.
DELETE_HOOKS: list[Any] = []


@route("GET", "/v1/customers", "CustomerListParams", returns="customer")
def list_customers(req: Request) -> dict[str, Any]:
    p = req.params
    objs = req.store.all("customer")
    if "email" in p:
        objs = [c for c in objs if c.get("email") == p["email"]]
    if "test_clock" in p:
        objs = [c for c in objs if c.get("test_clock") == p["test_clock"]]
    else:
        objs = [c for c in objs if not c.get("test_clock")]
    objs = created_filter(objs, p.get("created"))
    return list_response(req, objs, "/v1/customers")


@route("GET", "/v1/customers/search", "CustomerSearchParams", returns="customer")
def search_customers(req: Request) -> dict[str, Any]:
    return search_response(req, req.store.all("customer"), {"email", "name", "phone", "metadata", "created"})


@trigger("customer.created")
def trigger_customer_created(emulator: Any) -> dict[str, Any]:
    from ..context import using

    with emulator.store.lock, using(emulator):
        req = _internal_request(emulator)
        cus = build_customer(req, {"name": "Jenny Rosen", "email": "jenny.rosen@example.com"})
        emulator.store.add(cus)
        emit("customer.created", cus)
        return {"customer": cus["id"]}


@trigger("customer.deleted")
def trigger_customer_deleted(emulator: Any) -> dict[str, Any]:
    from ..context import using

    with emulator.store.lock, using(emulator):
        req = _internal_request(emulator)
        cus = build_customer(req, {"name": "Jenny Rosen", "email": "jenny.rosen@example.com"})
        emulator.store.add(cus)
        emit("customer.created", cus)
        delete_customer_obj(req, cus)
        return {"customer": cus["id"]}


def _internal_request(emulator: Any) -> Request:
    from ..internal import internal_request

    return internal_request(emulator)


# Stripe's "includable" customer fields (returned only with expand[]); dj-stripe asks for `sources`.
@includable("customer", "sources")
def _sources(store: Any, cus: dict[str, Any]) -> dict[str, Any]:
    return {"object": "list", "data": [], "has_more": False, "url": f"/v1/customers/{cus['id']}/sources"}


@includable("customer", "subscriptions")
def _subscriptions(store: Any, cus: dict[str, Any]) -> dict[str, Any]:
    subs = [copy.deepcopy(s) for s in store.all("subscription")
            if s.get("customer") == cus["id"] and s.get("status") != "canceled"]
    return {"object": "list", "data": subs[:10], "has_more": len(subs) > 10,
            "url": f"/v1/customers/{cus['id']}/subscriptions"}


@includable("customer", "tax_ids")
def _tax_ids(store: Any, cus: dict[str, Any]) -> dict[str, Any]:
    return {"object": "list", "data": [], "has_more": False, "url": f"/v1/customers/{cus['id']}/tax_ids"}


@includable("customer", "tax")
def _tax(store: Any, cus: dict[str, Any]) -> dict[str, Any]:
    return {"automatic_tax": "unrecognized_location", "ip_address": None, "location": None, "provider": "stripe"}


@includable("customer", "cash_balance")
def _cash_balance(store: Any, cus: dict[str, Any]) -> None:
    return None


@includable("customer", "invoice_credit_balance")
def _invoice_credit_balance(store: Any, cus: dict[str, Any]) -> dict[str, Any]:
    return {}
