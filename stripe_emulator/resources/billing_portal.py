"""Billing Portal configurations and sessions, and the hosted portal page at the session's `url`.

The page lets the customer change plan among the configuration's prices (prorated with the configuration's
`proration_behavior`), replace the card (the new card becomes the customer's and the subscriptions' default
payment method, and open invoices of past_due/unpaid subscriptions are retried with it at once, like Stripe's
automatic collection after a payment method update), cancel at period end (or immediately, per the
configuration), renew a subscription set to cancel, see invoices, and go back to `return_url`.

Configurations created through the API are never the default (`is_default: false`, as in Stripe, where the
default is the Dashboard's). A session created without `configuration` uses the emulator's default one, made
on first use (invoice history, card update, cancel at period end, no plan changes): Stripe requires saving the
portal settings in the Dashboard first, and there is no Dashboard here.
"""
from __future__ import annotations

import copy
from typing import Any
from urllib.parse import quote

from ..errors import StripeError
from ..events import diff, emit
from ..helpers import apply_metadata, fmt_money, get_or_404, ref_or_400
from ..listing import list_response
from ..registry import HtmlResponse, Request, object_type, route
from ..state import new_id
from . import invoices as inv_mod
from . import payments_core
from .billing_common import esc, fmt_date, page, sdk_params_name
from .payment_methods import attach_payment_method, card_behaviour, create_card_payment_method
from .subscriptions import cancel_subscription, update_subscription

object_type("billing_portal.configuration")
object_type("billing_portal.session")

_REFUSED_AT_SETUP = ("decline", "insufficient_funds", "lost_card", "expired", "incorrect_cvc")


# ------------------------------------------------------------------ configurations

def _features(p: dict[str, Any] | None, base: dict[str, Any] | None = None) -> tuple[dict[str, Any], list[dict[str, Any]] | None]:
    p = p or {}
    f = copy.deepcopy(base) if base else {
        "customer_update": {"allowed_updates": [], "enabled": False},
        "invoice_history": {"enabled": False},
        "payment_method_update": {"enabled": False, "payment_method_configuration": None},
        "subscription_cancel": {"cancellation_reason": {"enabled": False, "options": []}, "enabled": False,
                                "mode": "at_period_end", "proration_behavior": "none"},
        "subscription_update": {"billing_cycle_anchor": None, "default_allowed_updates": [], "enabled": False,
                                "proration_behavior": "none", "schedule_at_period_end": {"conditions": []},
                                "trial_update_behavior": "end_trial"},
    }
    products = None
    cu = p.get("customer_update")
    if cu:
        f["customer_update"]["enabled"] = cu.get("enabled", f["customer_update"]["enabled"])
        if "allowed_updates" in cu:
            f["customer_update"]["allowed_updates"] = list(cu["allowed_updates"] or [])
    if p.get("invoice_history"):
        f["invoice_history"]["enabled"] = p["invoice_history"].get("enabled", False)
    pmu = p.get("payment_method_update")
    if pmu:
        f["payment_method_update"]["enabled"] = pmu.get("enabled", False)
    sc = p.get("subscription_cancel")
    if sc:
        t = f["subscription_cancel"]
        for k in ("enabled", "mode", "proration_behavior"):
            if k in sc:
                t[k] = sc[k]
        if "cancellation_reason" in sc:
            cr = sc["cancellation_reason"]
            t["cancellation_reason"] = {"enabled": cr.get("enabled", False), "options": list(cr.get("options") or [])}
    su = p.get("subscription_update")
    if su:
        t = f["subscription_update"]
        for k in ("enabled", "proration_behavior", "trial_update_behavior", "billing_cycle_anchor"):
            if k in su:
                t[k] = su[k]
        if "default_allowed_updates" in su:
            t["default_allowed_updates"] = list(su["default_allowed_updates"] or [])
        if "schedule_at_period_end" in su:
            t["schedule_at_period_end"] = {"conditions": [{"type": c["type"]} for c in
                                                          (su["schedule_at_period_end"].get("conditions") or [])]}
        if "products" in su:
            products = [{"product": pr["product"], "prices": list(pr.get("prices") or [])} for pr in (su["products"] or [])]
    return f, products


def _check_products(req: Any, products: list[dict[str, Any]] | None) -> None:
    for i, pr in enumerate(products or []):
        ref_or_400(req, pr["product"], "product", f"features[subscription_update][products][{i}][product]")
        for j, price_id in enumerate(pr["prices"]):
            price = ref_or_400(req, price_id, "price", f"features[subscription_update][products][{i}][prices][{j}]")
            if price["product"] != pr["product"] or not price.get("recurring"):
                raise StripeError(f"The price {price_id} must be a recurring price of product {pr['product']}.",
                                  param=f"features[subscription_update][products][{i}][prices][{j}]")


def create_configuration(req: Any, p: dict[str, Any], *, is_default: bool = False) -> dict[str, Any]:
    """Configurations made through the API are never the default one (in Stripe that is the Dashboard's)."""
    now = req.store.clock.now()
    features, products = _features(p.get("features"))
    _check_products(req, products)
    if features["subscription_update"]["enabled"] and not products:
        raise StripeError("You must specify at least one product in `features[subscription_update][products]` "
                          "when subscription updates are enabled.", param="features[subscription_update][products]")
    bp = p.get("business_profile") or {}
    conf = {
        "id": new_id("bpc"),
        "object": "billing_portal.configuration",
        "active": True,
        "application": None,
        "business_profile": {"headline": bp.get("headline") or None,
                             "privacy_policy_url": bp.get("privacy_policy_url"),
                             "terms_of_service_url": bp.get("terms_of_service_url")},
        "created": now,
        "default_return_url": p.get("default_return_url") or None,
        "features": features,
        "is_default": is_default,
        "livemode": False,
        "login_page": {"enabled": bool((p.get("login_page") or {}).get("enabled")), "url": None},
        "metadata": {},
        "name": p.get("name"),
        "updated": now,
    }
    if conf["login_page"]["enabled"]:
        conf["login_page"]["url"] = f"{req.emulator.public_url}/_emulator/portal/login/{conf['id']}"
    apply_metadata(conf, p.get("metadata"))
    req.store.add(conf, {"products": products or []})
    emit("billing_portal.configuration.created", conf)
    return conf


@route("POST", "/v1/billing_portal/configurations", sdk_params_name("billing_portal.ConfigurationCreateParams"),
       returns="billing_portal.configuration")
def create_configuration_route(req: Request) -> dict[str, Any]:
    return create_configuration(req, req.params)


@route("GET", "/v1/billing_portal/configurations/{id}", sdk_params_name("billing_portal.ConfigurationRetrieveParams"),
       returns="billing_portal.configuration")
def retrieve_configuration(req: Request) -> dict[str, Any]:
    return get_or_404(req, req.path_params["id"], "billing_portal.configuration", "configuration")


@route("POST", "/v1/billing_portal/configurations/{id}", sdk_params_name("billing_portal.ConfigurationUpdateParams"),
       returns="billing_portal.configuration")
def update_configuration(req: Request) -> dict[str, Any]:
    conf = get_or_404(req, req.path_params["id"], "billing_portal.configuration", "configuration")
    p = req.params
    before = copy.deepcopy(conf)
    if "active" in p:
        if not p["active"] and conf["is_default"]:
            raise StripeError("The default configuration cannot be deactivated.", param="active")
        conf["active"] = p["active"]
    if "business_profile" in p:
        bp = p["business_profile"] or {}
        for k in ("headline", "privacy_policy_url", "terms_of_service_url"):
            if k in bp:
                conf["business_profile"][k] = bp[k] or None
    if "default_return_url" in p:
        conf["default_return_url"] = p["default_return_url"] or None
    if "name" in p:
        conf["name"] = p["name"] or None
    if "features" in p:
        features, products = _features(p["features"], conf["features"])
        if products is not None:
            _check_products(req, products)
            req.store.priv(conf["id"])["products"] = products
        conf["features"] = features
    apply_metadata(conf, p.get("metadata"))
    prev = diff(before, conf)
    if prev:
        conf["updated"] = req.store.clock.now()
        emit("billing_portal.configuration.updated", conf, prev)
    return conf


@route("GET", "/v1/billing_portal/configurations", sdk_params_name("billing_portal.ConfigurationListParams"),
       returns="billing_portal.configuration")
def list_configurations(req: Request) -> dict[str, Any]:
    p = req.params
    # The account's default configuration exists before any session (Stripe's is the Dashboard's): listing
    # finds it, so a client can set its `default_return_url` and then open sessions without `return_url`.
    _default_configuration(req)
    objs = req.store.all("billing_portal.configuration")
    if "active" in p:
        objs = [c for c in objs if c["active"] == p["active"]]
    if "is_default" in p:
        objs = [c for c in objs if c["is_default"] == p["is_default"]]
    return list_response(req, objs, "/v1/billing_portal/configurations")


# ------------------------------------------------------------------ sessions

@route("POST", "/_emulator/portal_settings", auth=False, idempotent=False)
def set_portal_settings(req: Request) -> dict[str, Any]:
    """The Dashboard's portal settings: `default_return_url` of the default configuration (created if needed)."""
    conf = _default_configuration(req)
    value = req.params.get("default_return_url")
    if isinstance(value, list):
        value = value[0] if value else None
    if value is not None:
        before = copy.deepcopy(conf)
        conf["default_return_url"] = value or None
        if diff(before, conf):
            conf["updated"] = req.store.clock.now()
            emit("billing_portal.configuration.updated", conf, diff(before, conf))
    return conf


def _default_configuration(req: Any) -> dict[str, Any]:
    for c in req.store.all("billing_portal.configuration"):
        if c["is_default"]:
            return c
    return create_configuration(req, {"features": {
        "invoice_history": {"enabled": True}, "payment_method_update": {"enabled": True},
        "subscription_cancel": {"enabled": True, "mode": "at_period_end"},
        "customer_update": {"enabled": True, "allowed_updates": ["email", "address"]}}}, is_default=True)


@route("POST", "/v1/billing_portal/sessions", sdk_params_name("billing_portal.SessionCreateParams"),
       returns="billing_portal.session")
def create_session(req: Request) -> dict[str, Any]:
    p = req.params
    if not p.get("customer"):
        raise StripeError("Missing required param: customer.", code="parameter_missing", param="customer")
    cus = ref_or_400(req, p["customer"], "customer", "customer")
    if p.get("configuration"):
        conf = ref_or_400(req, p["configuration"], "billing_portal.configuration", "configuration", "configuration")
        if not conf["active"]:
            raise StripeError("The configuration is not active.", param="configuration")
    else:
        conf = _default_configuration(req)
    return_url = p.get("return_url") or conf.get("default_return_url")
    if not return_url:
        raise StripeError("You must provide a `return_url` or set a `default_return_url` on the configuration.",
                          param="return_url")
    fd = p.get("flow_data")
    flow = None
    if fd:
        ac = fd.get("after_completion") or {}
        flow = {
            "after_completion": {
                "hosted_confirmation": ({"custom_message": (ac.get("hosted_confirmation") or {}).get("custom_message")}
                                        if ac.get("type") == "hosted_confirmation" else None),
                "redirect": ({"return_url": (ac.get("redirect") or {}).get("return_url")}
                             if ac.get("type") == "redirect" else None),
                "type": ac.get("type", "portal_homepage"),
            },
            "subscription_cancel": ({"retention": None, "subscription": fd["subscription_cancel"]["subscription"]}
                                    if fd.get("subscription_cancel") else None),
            "subscription_update": ({"subscription": fd["subscription_update"]["subscription"]}
                                    if fd.get("subscription_update") else None),
            "subscription_update_confirm": ({"discounts": None, "items": [{"id": i.get("id"), "price": i.get("price")}
                                                                          for i in fd["subscription_update_confirm"].get("items") or []],
                                             "subscription": fd["subscription_update_confirm"]["subscription"]}
                                            if fd.get("subscription_update_confirm") else None),
            "type": fd["type"],
        }
    sess_id = new_id("bps")
    session = {
        "id": sess_id,
        "object": "billing_portal.session",
        "configuration": conf["id"],
        "created": req.store.clock.now_for_customer(cus["id"]),
        "customer": cus["id"],
        "customer_account": None,
        "flow": flow,
        "livemode": False,
        "locale": p.get("locale"),
        "on_behalf_of": p.get("on_behalf_of"),
        "return_url": return_url,
        "url": f"{req.base_url}/_emulator/portal/{sess_id}",
    }
    req.store.add(session)
    return session


# ------------------------------------------------------------------ hosted page

def _customer_subs(req: Any, cus_id: str) -> list[dict[str, Any]]:
    return [s for s in req.store.all("subscription") if s["customer"] == cus_id
            and s["status"] in ("active", "trialing", "past_due", "unpaid")]


def _plan_choices(req: Any, conf: dict[str, Any], currency: str) -> list[dict[str, Any]]:
    out = []
    for pr in req.store.priv(conf["id"]).get("products") or []:
        for price_id in pr["prices"]:
            price = req.store.get(price_id, "price")
            if price is not None and price["active"] and inv_mod.price_offers_currency(req.store, price, currency):
                out.append(price)
    return out


def _portal(req: Request) -> tuple[dict[str, Any] | None, dict[str, Any] | None]:
    session = req.store.get(req.path_params["id"], "billing_portal.session")
    if session is None:
        return None, None
    return session, req.store.objects[session["configuration"]]


def _form(req: Request) -> dict[str, str]:
    return {k: (v[0] if isinstance(v, list) and v else (v if isinstance(v, str) else ""))
            for k, v in (req.params or {}).items()}


def _back(session: dict[str, Any], notice: str) -> HtmlResponse:
    return HtmlResponse.redirect(f"{session['url']}?notice={quote(notice)}")


@route("GET", "/_emulator/portal/{id}", auth=False)
def portal_page(req: Request) -> HtmlResponse:
    session, conf = _portal(req)
    if session is None or conf is None:
        return HtmlResponse(page("Not found", "<div class='main'><h1>Unknown portal session</h1></div>"), status=404)
    form = _form(req)
    return HtmlResponse(render_portal(req, session, conf, notice=form.get("notice"), error=form.get("error")))


def render_portal(req: Any, session: dict[str, Any], conf: dict[str, Any], *, notice: str | None = None,
                  error: str | None = None) -> str:
    store = req.store
    cus = store.get(session["customer"], "customer") or {}
    f = conf["features"]
    sid = esc(session["id"])
    parts = []
    if error:
        parts.append(f"<div class='error' id='error' role='alert'>{esc(error)}</div>")
    elif notice:
        parts.append(f"<div class='ok' id='notice'>{esc(notice)}</div>")
    subs = _customer_subs(req, session["customer"])
    parts.append("<h2>Current plan</h2>")
    if not subs:
        parts.append("<div class='card muted' id='no-subscription'>No active subscription.</div>")
    for sub in subs:
        item = sub["items"]["data"][0]
        price = store.objects.get(item["price"]["id"], item["price"])
        name = inv_mod.product_name(store, price)
        label = inv_mod.price_label(store, price, sub["currency"])
        end = item["current_period_end"]
        status = sub["status"]
        block = [f"<div class='card sub' id='sub-{esc(sub['id'])}'><strong class='plan-name'>{esc(name)}</strong> "
                 f"<span class='badge status'>{esc(status)}</span><div class='muted'>{esc(label)}"
                 f"{' × ' + str(item['quantity']) if (item.get('quantity') or 1) > 1 else ''}</div>"]
        if status in ("past_due", "unpaid"):
            block.append("<div class='error'>Your last payment failed. Update your payment method to pay the "
                         "open invoice.</div>")
        if sub["cancel_at_period_end"] or sub.get("cancel_at"):
            block.append(f"<p id='cancel-notice'>Your plan will be canceled on {esc(fmt_date(sub['cancel_at'] or end))}.</p>")
            block.append(f"<form method='post' action='/_emulator/portal/{sid}/renew'><input type='hidden' "
                         f"name='subscription' value='{esc(sub['id'])}'><button id='renew'>Renew plan</button></form>")
        else:
            when = "Trial ends" if status == "trialing" else "Renews"
            block.append(f"<p class='muted'>{when} on {esc(fmt_date(end))}</p>")
        choices = [pr for pr in _plan_choices(req, conf, sub["currency"]) if pr["id"] != price["id"]]
        if f["subscription_update"]["enabled"] and choices and status in ("active", "trialing", "past_due"):
            opts = "".join(f"<option value='{esc(pr['id'])}'>{esc(inv_mod.product_name(store, pr))} — "
                           f"{esc(inv_mod.price_label(store, pr, sub['currency']))}</option>" for pr in choices)
            block.append(f"<form method='post' action='/_emulator/portal/{sid}/update_plan'>"
                         f"<input type='hidden' name='subscription' value='{esc(sub['id'])}'>"
                         f"<label for='price'>Change plan</label><select id='price' name='price'>{opts}</select>"
                         "<button id='update-plan'>Update plan</button></form>")
        if f["subscription_cancel"]["enabled"] and not sub["cancel_at_period_end"] and not sub.get("cancel_at"):
            block.append(f"<form method='post' action='/_emulator/portal/{sid}/cancel'>"
                         f"<input type='hidden' name='subscription' value='{esc(sub['id'])}'>"
                         "<button class='secondary' id='cancel-plan'>Cancel plan</button></form>")
        block.append("</div>")
        parts.append("".join(block))
    if f["payment_method_update"]["enabled"]:
        pm = store.get(cus.get("invoice_settings", {}).get("default_payment_method"), "payment_method")
        if pm is None and subs and subs[0].get("default_payment_method"):
            pm = store.get(subs[0]["default_payment_method"], "payment_method")
        shown = f"{(pm['card']['brand'] or '').title()} •••• {pm['card']['last4']}" if pm else "No card on file"
        parts.append("<h2>Payment method</h2><div class='card'>"
                     f"<p id='current-card'>{esc(shown)}</p>"
                     f"<form method='post' action='/_emulator/portal/{sid}/update_payment_method'>"
                     "<label for='card_number'>New card number</label>"
                     "<input id='card_number' name='card_number' value='4242 4242 4242 4242'>"
                     "<div class='row'><div><label for='card_expiry'>Expiry</label><input id='card_expiry' "
                     "name='card_expiry' value='12 / 34'></div><div><label for='card_cvc'>CVC</label>"
                     "<input id='card_cvc' name='card_cvc' value='123'></div></div>"
                     "<button id='update-card'>Update payment method</button></form></div>")
    if f["invoice_history"]["enabled"]:
        rows = ""
        for inv in [i for i in store.all("invoice") if i["customer"] == session["customer"] and i["status"] != "draft"][:12]:
            rows += (f"<tr><td>{esc(fmt_date(inv['created']))}</td><td>{esc(inv['number'])}</td>"
                     f"<td><span class='badge'>{esc(inv['status'])}</span></td>"
                     f"<td class='r'><a href='{esc(inv['hosted_invoice_url'])}'>{esc(fmt_money(inv['total'], inv['currency']))}</a></td></tr>")
        parts.append(f"<h2>Invoice history</h2><table id='invoices'>{rows or '<tr><td class=muted>No invoices yet.</td></tr>'}</table>")
    bp = conf["business_profile"]
    body = ("<div class='wrap'><div class='side'><div class='brand'>" + esc(bp.get("headline") or "Stripe Emulator Test Account")
            + "</div><h1>Billing</h1>"
            f"<p class='muted'>{esc(cus.get('email') or cus.get('name') or session['customer'])}</p>"
            f"<a class='btn secondary' id='return' href='{esc(session['return_url'])}'>&larr; Return</a>"
            + (f"<p class='muted'><a href='{esc(bp['privacy_policy_url'])}'>Privacy</a></p>" if bp.get("privacy_policy_url") else "")
            + "</div><div class='main'>" + "".join(parts) + "</div></div>")
    return page("Billing portal", body)


def _portal_sub(req: Request, session: dict[str, Any], form: dict[str, str]) -> dict[str, Any] | None:
    sub = req.store.get(form.get("subscription"), "subscription")
    if sub is None or sub["customer"] != session["customer"]:
        return None
    return sub


def _error_page(req: Request, session: dict[str, Any], conf: dict[str, Any], message: str, status: int) -> HtmlResponse:
    return HtmlResponse(render_portal(req, session, conf, error=message), status=status)


@route("POST", "/_emulator/portal/{id}/update_plan", auth=False, idempotent=False)
def portal_update_plan(req: Request) -> HtmlResponse:
    session, conf = _portal(req)
    if session is None or conf is None:
        return HtmlResponse(page("Not found", "<h1>Unknown portal session</h1>"), status=404)
    form = _form(req)
    sub = _portal_sub(req, session, form)
    if sub is None or not conf["features"]["subscription_update"]["enabled"]:
        return _error_page(req, session, conf, "This plan cannot be changed here.", 400)
    allowed = {p["id"] for p in _plan_choices(req, conf, sub["currency"])}
    if form.get("price") not in allowed:
        return _error_page(req, session, conf, "This plan is not available.", 400)
    item = sub["items"]["data"][0]
    params: dict[str, Any] = {"items": [{"id": item["id"], "price": form["price"]}],
                              "proration_behavior": conf["features"]["subscription_update"]["proration_behavior"]}
    if conf["features"]["subscription_update"].get("billing_cycle_anchor") == "now":
        params["billing_cycle_anchor"] = "now"
    try:
        update_subscription(req, sub, params)
    except StripeError as exc:
        return _error_page(req, session, conf, exc.message, exc.status)
    return _back(session, "Your plan was updated.")


@route("POST", "/_emulator/portal/{id}/cancel", auth=False, idempotent=False)
def portal_cancel(req: Request) -> HtmlResponse:
    session, conf = _portal(req)
    if session is None or conf is None:
        return HtmlResponse(page("Not found", "<h1>Unknown portal session</h1>"), status=404)
    sub = _portal_sub(req, session, _form(req))
    sc = conf["features"]["subscription_cancel"]
    if sub is None or not sc["enabled"]:
        return _error_page(req, session, conf, "This plan cannot be canceled here.", 400)
    if sc["mode"] == "immediately":
        cancel_subscription(req, sub, prorate_now=sc["proration_behavior"] != "none",
                            invoice_now=sc["proration_behavior"] == "always_invoice")
        return _back(session, "Your plan was canceled.")
    update_subscription(req, sub, {"cancel_at_period_end": True})
    return _back(session, "Your plan will be canceled at the end of the billing period.")


@route("POST", "/_emulator/portal/{id}/renew", auth=False, idempotent=False)
def portal_renew(req: Request) -> HtmlResponse:
    session, conf = _portal(req)
    if session is None or conf is None:
        return HtmlResponse(page("Not found", "<h1>Unknown portal session</h1>"), status=404)
    sub = _portal_sub(req, session, _form(req))
    if sub is None:
        return _error_page(req, session, conf, "Unknown subscription.", 400)
    update_subscription(req, sub, {"cancel_at_period_end": False} if sub["cancel_at_period_end"] else {"cancel_at": ""})
    return _back(session, "Your plan was renewed.")


@route("POST", "/_emulator/portal/{id}/update_payment_method", auth=False, idempotent=False)
def portal_update_payment_method(req: Request) -> HtmlResponse:
    session, conf = _portal(req)
    if session is None or conf is None:
        return HtmlResponse(page("Not found", "<h1>Unknown portal session</h1>"), status=404)
    if not conf["features"]["payment_method_update"]["enabled"]:
        return _error_page(req, session, conf, "Payment methods cannot be updated here.", 400)
    form = _form(req)
    store = req.store
    cus = store.objects[session["customer"]]
    number = (form.get("card_number") or "").replace(" ", "").replace("-", "")
    try:
        mm, yy = (form.get("card_expiry") or "12/34").replace(" ", "").split("/")
        pm = create_card_payment_method(req, number=number, exp_month=int(mm), exp_year=int(yy))
    except ValueError:
        return _error_page(req, session, conf, "Your card's expiration date is incomplete.", 400)
    except StripeError as exc:
        return _error_page(req, session, conf, exc.message, 402)
    behaviour = card_behaviour(req, pm["id"])
    if behaviour in _REFUSED_AT_SETUP:
        store.remove(pm["id"])
        return _error_page(req, session, conf, payments_core.decline_error_fields(behaviour)["message"], 402)
    attach_payment_method(req, pm, cus)
    before = copy.deepcopy(cus)
    cus["invoice_settings"]["default_payment_method"] = pm["id"]
    emit("customer.updated", cus, diff(before, cus))
    subs = _customer_subs(req, cus["id"])
    for sub in subs:
        if sub.get("default_payment_method") and sub["default_payment_method"] != pm["id"]:
            sb = copy.deepcopy(sub)
            sub["default_payment_method"] = pm["id"]
            emit("customer.subscription.updated", sub, diff(sb, sub))
    # Retry what the old card could not pay, as Stripe's automatic collection does after a card update.
    failed = []
    for sub in subs:
        if sub["status"] not in ("past_due", "unpaid"):
            continue
        for inv in reversed(store.all("invoice")):
            if inv["status"] == "open" and inv_mod.invoice_subscription(req, inv) is sub:
                err = inv_mod.attempt_payment(req, inv, payment_method=pm["id"], automatic=False)
                if err is not None:
                    failed.append(err["message"])
    if failed:
        return _error_page(req, session, conf, failed[0], 402)
    return _back(session, "Your payment method was updated.")


__all__ = ["create_configuration", "render_portal"]
