"""Checkout Sessions (modes `payment`, `subscription` and `setup`) and the hosted Checkout page.

The page at the session's `url` posts its form to `POST /_emulator/checkout_sessions/<id>/complete`
(field `card_number`, default 4242 4242 4242 4242; `email`; `promotion_code`; `action=apply` only applies a
promotion code). Completing it charges the card like Stripe Checkout does, emits the customer, payment,
subscription and invoice events and finally `checkout.session.completed`, then answers 303 to `success_url`.
A declined card re-renders the page with Stripe's message and HTTP 402 and changes nothing; a card that
needs 3-D Secure goes through the emulator's challenge page first. The card number is never stored.

Setup mode charges nothing: the session owns a SetupIntent from creation (`setup_intent.created`); the page's card
confirms it (`payment_method.attached` to the session's customer, `setup_intent.succeeded`, then
`checkout.session.completed` with `payment_status=no_payment_required`). A card the SetupIntent refuses stays on the
page with Stripe's message (`setup_intent.setup_failed`); expiring the session cancels its SetupIntent.
"""
from __future__ import annotations

import copy
from decimal import Decimal
from typing import Any

from ..context import using
from ..errors import StripeError, state_error
from ..events import emit
from ..helpers import _SYMBOL, ZERO_DECIMAL, apply_metadata, fmt_money, get_or_404, ref_or_400
from ..internal import internal_request
from ..listing import created_filter, equal_filter, list_response
from ..registry import HtmlResponse, Request, includable, object_type, route, trigger
from ..state import random_token
from . import async_payments
from . import invoices as inv_mod
from . import payments_core
from .billing_common import DAY, esc, page, sdk_params_name
from .catalog import price_unit_decimal_for
from .coupons import promotion_code_usable
from .payment_methods import attach_payment_method, card_behaviour, create_card_payment_method, resolve_payment_method

object_type("checkout.session")
object_type("item")

# Cards refused before anything is created (every test decline; 3-D Secure failures are handled after the challenge).
_DECLINING = tuple(b for b in payments_core.decline_behaviours() if b not in ("authentication_required", "3ds_failed"))


def _now(req: Any, session: dict[str, Any] | None = None) -> int:
    return req.store.clock.now_for_customer((session or {}).get("customer"))


# ------------------------------------------------------------------ amounts

def _items(req: Any, session: dict[str, Any]) -> list[dict[str, Any]]:
    return req.store.priv(session["id"])["line_items"]


def _discount_for(req: Any, session: dict[str, Any], base: int) -> int:
    promo_id = req.store.priv(session["id"]).get("promotion_code")
    coupon_id = req.store.priv(session["id"]).get("coupon")
    if promo_id:
        promo = req.store.get(promo_id, "promotion_code")
        coupon_id = promo["promotion"]["coupon"] if promo else None
    coupon = req.store.get(coupon_id, "coupon") if coupon_id else None
    return inv_mod._discount_amount(coupon, base, session["currency"]) if coupon else 0


def _recompute(req: Any, session: dict[str, Any]) -> None:
    """Session totals. In subscription mode with a trial, only one-time items are due today."""
    items = _items(req, session)
    trial = req.store.priv(session["id"]).get("trial_end") is not None
    due_now = [li for li in items if not (trial and li["price"].get("recurring"))]
    subtotal = sum(li["amount_subtotal"] for li in due_now)
    discount = _discount_for(req, session, subtotal)
    left = discount
    for i, li in enumerate(due_now):
        share = left if i == len(due_now) - 1 else (discount * li["amount_subtotal"]) // subtotal if subtotal else 0
        left -= share
        li["amount_discount"] = share
        li["amount_total"] = li["amount_subtotal"] - share
    session["amount_subtotal"] = subtotal
    session["amount_total"] = subtotal - discount
    session["total_details"] = {"amount_discount": discount, "amount_shipping": 0, "amount_tax": 0}


def _line_item(req: Any, price: dict[str, Any], quantity: int | None, currency: str) -> dict[str, Any]:
    unit = inv_mod.unit_amount_in(req.store, price, currency)
    amount = unit * quantity if quantity is not None else 0  # metered usage is billed later, in arrears
    return {
        "id": "li_" + random_token(24),
        "object": "item",
        "adjustable_quantity": None,
        "amount_discount": 0,
        "amount_subtotal": amount,
        "amount_tax": 0,
        "amount_total": amount,
        "currency": currency,
        "description": inv_mod.product_name(req.store, price),
        "metadata": {},
        "price": copy.deepcopy(price),
        "quantity": quantity,
    }


# ------------------------------------------------------------------ API

# Parameters of the other modes that setup mode refuses (the params' own docs name the modes they belong to).
_NOT_IN_SETUP = ("line_items", "subscription_data", "payment_intent_data", "invoice_creation",
                 "payment_method_collection", "saved_payment_method_options", "submit_type", "phone_number_collection")


def _check_setup_params(p: dict[str, Any]) -> None:
    """`mode=setup` saves a payment method and charges nothing: no items, no money-related options."""
    for name in _NOT_IN_SETUP:
        if name in p:
            raise StripeError(f"You can not pass `{name}` in `setup` mode.", param=name)
    if not p.get("currency") and not p.get("payment_method_types"):
        # Dynamic payment methods need a currency to choose from (the param's doc: "Required in `setup` mode when
        # `payment_method_types` is not set").
        raise StripeError("Missing required param: currency.", code="parameter_missing", param="currency")


def _session_prices(req: Request, line_params: list[dict[str, Any]], mode: str) -> list[dict[str, Any]]:
    """The prices of a payment or subscription session's `line_items` (metered items lose their quantity)."""
    if not line_params:
        raise StripeError("Missing required param: line_items.", code="parameter_missing", param="line_items")
    prices = []
    from .catalog import _create_price

    for i, li in enumerate(line_params):
        if li.get("price"):
            price = ref_or_400(req, li["price"], "price", f"line_items[{i}][price]")
            if not price["active"]:
                raise StripeError(f"The price `{price['id']}` is not active.", param=f"line_items[{i}][price]")
        elif li.get("price_data"):
            pd = dict(li["price_data"])
            price = _create_price(req, {k: v for k, v in pd.items() if k in (
                "currency", "product", "product_data", "recurring", "unit_amount", "unit_amount_decimal", "tax_behavior")})
            price["active"] = False  # inline prices are not offered for reuse...
            req.store.priv(price["id"])["inline"] = True  # ...but this session may still bill them
        else:
            raise StripeError(f"Missing required param: line_items[{i}][price].", code="parameter_missing",
                              param=f"line_items[{i}][price]")
        metered = (price.get("recurring") or {}).get("usage_type") == "metered"
        if metered and "quantity" in li:
            raise StripeError(f"Quantity should not be specified where usage_type is `metered`. Remove quantity "
                              f"from `line_items[{i}]`.", param=f"line_items[{i}][quantity]")
        if metered:
            li = line_params[i] = dict(li, quantity=None)
        elif "quantity" not in li:
            raise StripeError(f"Missing required param: line_items[{i}][quantity].", code="parameter_missing",
                              param=f"line_items[{i}][quantity]")
        elif li["quantity"] < 1:
            raise StripeError("This value must be greater than or equal to 1.", param=f"line_items[{i}][quantity]")
        prices.append(price)
    recurring = [pr for pr in prices if pr.get("recurring")]
    if mode == "payment" and recurring:
        raise StripeError("You specified `payment` mode but passed a recurring price. Either switch to "
                          "`subscription` mode or use only one-time prices.", param="mode")
    if mode == "subscription" and not recurring:
        raise StripeError("You must specify at least one recurring price in `subscription` mode when using prices.",
                          param="mode")
    return prices


@route("POST", "/v1/checkout/sessions", sdk_params_name("checkout.SessionCreateParams"), returns="checkout.session")
def create_session(req: Request) -> dict[str, Any]:
    p = req.params
    store = req.store
    mode = p.get("mode")
    if mode is None:
        raise StripeError("Missing required param: mode.", code="parameter_missing", param="mode")
    if mode == "setup":
        _check_setup_params(p)
    elif p.get("setup_intent_data"):
        raise StripeError(f"You can not pass `setup_intent_data` in `{mode}` mode.", param="setup_intent_data")
    if p.get("customer") and p.get("customer_email"):
        raise StripeError("You may only specify one of these parameters: customer, customer_email.", param="customer_email")
    if p.get("allow_promotion_codes") and p.get("discounts"):
        raise StripeError("You may only specify one of these parameters: allow_promotion_codes, discounts.",
                          param="discounts")
    cus = ref_or_400(req, p["customer"], "customer", "customer") if p.get("customer") else None
    now = req.store.clock.now_for_customer(cus["id"] if cus else None)
    line_params = list(p.get("line_items") or [])
    prices = _session_prices(req, line_params, mode) if mode != "setup" else []
    # Setup mode charges nothing: the currency is optional (it only narrows dynamic payment methods).
    currency = (p.get("currency") or prices[0]["currency"]).lower() if prices else (p.get("currency") or "").lower() or None
    types = list(p.get("payment_method_types") or ["card"])
    if mode != "payment" and any(t in async_payments.ASYNC_TYPES for t in types):
        raise StripeError("Boleto and Pix are emulated in Checkout's `payment` mode only.", param="payment_method_types")
    if currency:
        async_payments.check_currency(types, currency)
    for i, pr in enumerate(prices):
        if not inv_mod.price_offers_currency(store, pr, currency):
            raise StripeError(f"The price specified ({pr['id']}) does not support the currency `{currency}`.",
                              param=f"line_items[{i}][price]")
    expires_at = p.get("expires_at", now + DAY)
    if expires_at < now + 1800 or expires_at > now + DAY:
        raise StripeError("The `expires_at` timestamp must be between 30 minutes and 24 hours from Checkout "
                          "Session creation.", param="expires_at")
    trial_end = None
    sd = p.get("subscription_data") or {}
    if mode == "subscription":
        if sd.get("trial_end"):
            trial_end = sd["trial_end"]
            if trial_end < now + 2 * DAY:
                raise StripeError("`subscription_data[trial_end]` must be at least 48 hours in the future.",
                                  param="subscription_data[trial_end]")
        elif sd.get("trial_period_days"):
            trial_end = None  # fixed at completion (days count from then)
    sid = "cs_test_" + random_token(58)
    session: dict[str, Any] = {
        "id": sid,
        "object": "checkout.session",
        "adaptive_pricing": {"enabled": False},
        "after_expiration": None,
        "allow_promotion_codes": p.get("allow_promotion_codes"),
        "amount_subtotal": 0,
        "amount_total": 0,
        "automatic_tax": {"enabled": False, "liability": None, "provider": None, "status": None},
        "billing_address_collection": p.get("billing_address_collection"),
        "cancel_url": p.get("cancel_url"),
        "client_reference_id": p.get("client_reference_id"),
        "client_secret": None,
        "collected_information": None,
        "consent": None,
        "consent_collection": None,
        "created": now,
        "currency": currency,
        "currency_conversion": None,
        "custom_fields": [],
        "custom_text": {"after_submit": None, "shipping_address": None, "submit": None,
                        "terms_of_service_acceptance": None},
        "customer": cus["id"] if cus else None,
        "customer_account": None,
        "customer_creation": (None if (cus or mode == "subscription")
                              else p.get("customer_creation", "if_required" if mode == "payment" else None)),
        "customer_details": None,  # filled in on completion
        "customer_email": p.get("customer_email"),
        "discounts": [],
        "expires_at": expires_at,
        "integration_identifier": p.get("integration_identifier"),
        "invoice": None,
        "invoice_creation": _invoice_creation(p.get("invoice_creation")) if mode == "payment" else None,
        "livemode": False,
        "locale": p.get("locale"),
        "managed_payments": None,
        "metadata": {},
        "mode": mode,
        "origin_context": None,
        "payment_intent": None,
        "payment_link": None,
        "payment_method_collection": p.get("payment_method_collection", "always"),
        "payment_method_configuration_details": None,
        "payment_method_options": _session_payment_method_options(types, p.get("payment_method_options")),
        "payment_method_types": types,
        "payment_status": "unpaid",
        "permissions": None,
        "phone_number_collection": {"enabled": False},
        "recovered_from": None,
        "saved_payment_method_options": None,
        "setup_intent": None,
        "shipping_address_collection": None,
        "shipping_cost": None,
        "shipping_options": [],
        "status": "open",
        "submit_type": p.get("submit_type"),
        "subscription": None,
        "success_url": p.get("success_url"),
        "total_details": {"amount_discount": 0, "amount_shipping": 0, "amount_tax": 0},
        "ui_mode": p.get("ui_mode", "hosted"),
        "url": f"{req.base_url}/_emulator/checkout/{sid}",
        "wallet_options": None,
    }
    apply_metadata(session, p.get("metadata"))
    priv: dict[str, Any] = {
        "line_items": [_line_item(req, pr, li["quantity"], currency) for pr, li in zip(prices, line_params)],
        "subscription_data": copy.deepcopy(sd),
        "payment_intent_data": copy.deepcopy(p.get("payment_intent_data") or {}),
        "trial_end": trial_end,
        "trial_period_days": sd.get("trial_period_days") if mode == "subscription" else None,
    }
    if mode == "subscription" and priv["trial_period_days"]:
        priv["trial_end"] = now + priv["trial_period_days"] * DAY  # shown on the page; re-based at completion
    for i, d in enumerate(p.get("discounts") or []):
        if d.get("promotion_code"):
            promo = ref_or_400(req, d["promotion_code"], "promotion_code", f"discounts[{i}][promotion_code]",
                               "promotion code")
            priv["promotion_code"] = promo["id"]
            session["discounts"] = [{"coupon": None, "promotion_code": promo["id"]}]
        elif d.get("coupon"):
            coupon = ref_or_400(req, d["coupon"], "coupon", f"discounts[{i}][coupon]")
            priv["coupon"] = coupon["id"]
            session["discounts"] = [{"coupon": coupon["id"], "promotion_code": None}]
    store.add(session, priv)
    if mode == "setup":
        _attach_setup_intent(req, session, cus, types, p.get("setup_intent_data") or {})
    else:
        _recompute(req, session)
    return session


def _attach_setup_intent(req: Any, session: dict[str, Any], cus: dict[str, Any] | None, types: list[str],
                         data: dict[str, Any]) -> None:
    """A setup session owns one SetupIntent from its creation (for the session's customer, saved for off-session
    use); the hosted page confirms it. Nothing is due, so the amounts stay null and no payment is required."""
    from .setup_intents import build_setup_intent

    si = build_setup_intent(req, {"customer": cus["id"] if cus else None, "payment_method_types": types,
                                  "usage": "off_session", "description": data.get("description")})
    apply_metadata(si, data.get("metadata"))
    req.store.add(si)
    req.store.priv(si["id"])["checkout_session"] = session["id"]
    emit("setup_intent.created", si)
    session.update(setup_intent=si["id"], amount_subtotal=None, amount_total=None, total_details=None,
                   payment_status="no_payment_required")


def _session_payment_method_options(types: list[str], options: Any) -> dict[str, Any]:
    out: dict[str, Any] = {}
    if "card" in types:
        out["card"] = {"request_three_d_secure": "automatic"}
    pi_options = async_payments.payment_method_options([t for t in types if t != "card"], options)
    if "boleto" in pi_options:
        out["boleto"] = {"expires_after_days": pi_options["boleto"]["expires_after_days"]}
    if "pix" in pi_options:
        out["pix"] = {"amount_includes_iof": pi_options["pix"]["amount_includes_iof"],
                      "expires_after_seconds": pi_options["pix"]["expires_after_seconds"]}
    return out


def _invoice_creation(value: Any) -> dict[str, Any]:
    value = value or {}
    data = value.get("invoice_data") or {}
    return {"enabled": bool(value.get("enabled")), "invoice_data": {
        "account_tax_ids": None, "custom_fields": data.get("custom_fields") or None,
        "description": data.get("description"), "footer": data.get("footer"), "issuer": None,
        "metadata": dict(data.get("metadata") or {}), "rendering_options": None}}


def _post_payment_invoice(req: Any, session: dict[str, Any], cus: dict[str, Any], pi: dict[str, Any] | None) -> None:
    """`invoice_creation[enabled]`: a paid invoice for a one-time Checkout payment (lines = the session's items)."""
    data = session["invoice_creation"]["invoice_data"]
    inv = inv_mod.create_invoice(req, customer=cus, currency=session["currency"], billing_reason="manual",
                                 pull_pending=False, auto_advance=False, description=data.get("description"),
                                 metadata=data.get("metadata") or None, emit_created=False)
    if data.get("footer"):
        inv["footer"] = data["footer"]
    now = req.store.clock.now_for_customer(cus["id"])
    for li in _items(req, session):
        ii = inv_mod.invoice_item_obj(req, customer=cus["id"], amount=li["amount_total"], currency=session["currency"],
                                      description=li["description"], period=(now, now), price=li["price"],
                                      quantity=li["quantity"] or 1, unit_amount=li["amount_total"] // (li["quantity"] or 1))
        inv_mod.attach_invoice_item(req, inv, ii)
    inv_mod.recompute(req, inv)
    emit("invoice.created", inv)
    inv_mod.finalize_invoice(req, inv, emit_paid_if_zero=False)
    inv_mod.mark_paid(req, inv, pi)
    session["invoice"] = inv["id"]


def _expire_if_due(req: Any, session: dict[str, Any]) -> None:
    if session["status"] == "open" and _now(req, session) >= session["expires_at"]:
        _expire(req, session)


def _expire(req: Any, session: dict[str, Any]) -> None:
    session["status"] = "expired"
    session["url"] = None
    si = req.store.get(session.get("setup_intent"), "setup_intent")
    if si is not None and si["status"] not in ("succeeded", "canceled"):
        # Expiring is how a setup session's SetupIntent is cancelled (it cannot be cancelled on its own).
        si["status"] = "canceled"
        si["next_action"] = None
        emit("setup_intent.canceled", si)
    emit("checkout.session.expired", session)


def _get(req: Request, sid: str | None = None) -> dict[str, Any]:
    session = get_or_404(req, sid or req.path_params["id"], "checkout.session", "checkout.session")
    _expire_if_due(req, session)
    return session


@route("GET", "/v1/checkout/sessions/{id}", sdk_params_name("checkout.SessionRetrieveParams"), returns="checkout.session")
def retrieve_session(req: Request) -> dict[str, Any]:
    return _get(req)


@route("POST", "/v1/checkout/sessions/{id}", sdk_params_name("checkout.SessionUpdateParams"), returns="checkout.session")
def update_session(req: Request) -> dict[str, Any]:
    session = _get(req)
    apply_metadata(session, req.params.get("metadata"))
    return session


@route("POST", "/v1/checkout/sessions/{id}/expire", sdk_params_name("checkout.SessionExpireParams"),
       returns="checkout.session")
def expire_session(req: Request) -> dict[str, Any]:
    session = _get(req)
    if session["status"] != "open":
        raise state_error(f"Only Checkout Sessions with a status in [\"open\"] can be expired. This Checkout "
                          f"Session has a status of \"{session['status']}\".")
    _expire(req, session)
    return session


@route("GET", "/v1/checkout/sessions", sdk_params_name("checkout.SessionListParams"), returns="checkout.session")
def list_sessions(req: Request) -> dict[str, Any]:
    p = req.params
    objs = req.store.all("checkout.session")
    for s in objs:
        _expire_if_due(req, s)
    objs = equal_filter(objs, p, ("customer", "payment_intent", "subscription", "status", "payment_link"))
    if "customer_details" in p:
        email = (p["customer_details"] or {}).get("email")
        objs = [o for o in objs if (o.get("customer_details") or {}).get("email") == email]
    objs = created_filter(objs, p.get("created"))
    return list_response(req, objs, "/v1/checkout/sessions")


@route("GET", "/v1/checkout/sessions/{id}/line_items", sdk_params_name("checkout.SessionLineItemListParams"),
       returns="item")
def list_line_items(req: Request) -> dict[str, Any]:
    session = _get(req)
    return list_response(req, copy.deepcopy(_items(req, session)), f"/v1/checkout/sessions/{session['id']}/line_items")


@includable("checkout.session", "line_items")
def _line_items_includable(store: Any, session: dict[str, Any]) -> dict[str, Any]:
    items = store.private.get(session["id"], {}).get("line_items") or []
    return {"object": "list", "data": copy.deepcopy(items), "has_more": False,
            "url": f"/v1/checkout/sessions/{session['id']}/line_items"}


# ------------------------------------------------------------------ completion

class CheckoutDecline(Exception):
    def __init__(self, message: str) -> None:
        super().__init__(message)
        self.message = message


def _success_url(session: dict[str, Any]) -> str | None:
    url = session.get("success_url")
    return url.replace("{CHECKOUT_SESSION_ID}", session["id"]) if url else None


def _apply_promotion_code(req: Any, session: dict[str, Any], code: str) -> None:
    if not session.get("allow_promotion_codes") or session["mode"] == "setup":
        raise CheckoutDecline("Promotion codes are not accepted for this purchase.")
    promo = next((pc for pc in req.store.all("promotion_code") if pc["code"].lower() == code.strip().lower()
                  and pc["active"]), None)
    if promo is None:
        raise CheckoutDecline("This code is invalid.")
    reason = promotion_code_usable(req.store, promo, session.get("customer"), session["amount_subtotal"])
    if reason:
        raise CheckoutDecline(reason)
    req.store.priv(session["id"])["promotion_code"] = promo["id"]
    session["discounts"] = [{"coupon": None, "promotion_code": promo["id"]}]
    _recompute(req, session)


def complete_session(req: Any, session: dict[str, Any], form: dict[str, str]) -> HtmlResponse:
    """Run the hosted page's payment. Raises CheckoutDecline (nothing changed) for a refused card."""
    store = req.store
    if session["status"] != "open":
        raise CheckoutDecline(f"This Checkout Session is {session['status']}.")
    number = (form.get("card_number") or "4242424242424242").replace(" ", "").replace("-", "")
    exp = (form.get("card_expiry") or "12 / 34").replace(" ", "")
    try:
        mm, yy = exp.split("/")
        exp_month, exp_year = int(mm), int(yy)
    except ValueError:
        raise CheckoutDecline("Your card's expiration date is incomplete.") from None
    email = (form.get("email") or "").strip() or _known_email(req, session)
    if not session.get("customer") and not email:
        raise CheckoutDecline("Your email is incomplete.")
    code = (form.get("promotion_code") or "").strip()
    if code and store.priv(session["id"]).get("promotion_code") is None:
        _apply_promotion_code(req, session, code)
    method = form.get("payment_method_type") or "card"
    if method in async_payments.ASYNC_TYPES:
        return _complete_async(req, session, method, email, form)
    try:
        pm = create_card_payment_method(req, number=number, exp_month=exp_month, exp_year=exp_year,
                                        billing_details={"email": email, "name": form.get("name") or None})
    except StripeError as exc:
        raise CheckoutDecline(exc.message) from None
    return complete_with_card(req, session, pm, email, form, created_here=True)


def complete_with_card(req: Any, session: dict[str, Any], pm: dict[str, Any], email: str | None,
                       form: dict[str, str], *, created_here: bool) -> HtmlResponse:
    """Pay the session with a card payment method (the hosted form's card, or a `payment_method` given to
    `/v1/payment_pages/<id>/confirm`)."""
    store = req.store
    if session["mode"] == "setup":
        return _complete_setup(req, session, pm, email, form)
    behaviour = card_behaviour(req, pm["id"])
    if behaviour in _DECLINING:
        if created_here:
            store.remove(pm["id"])  # a refused card leaves nothing behind
        raise CheckoutDecline(payments_core.decline_error_fields(behaviour)["message"])
    priv = store.priv(session["id"])
    if session["mode"] == "payment":
        return _complete_payment(req, session, pm, email, form)
    return _complete_subscription(req, session, pm, email, form, priv)


def _complete_setup(req: Any, session: dict[str, Any], pm: dict[str, Any], email: str | None,
                    form: dict[str, str]) -> HtmlResponse:
    """Setup mode: confirm the session's SetupIntent with the card, as `/v1/setup_intents/<id>/confirm` would (the
    same test-card outcomes: a refused card records `last_setup_error` and the page says why; a card that asks for
    3-D Secure goes through the challenge first). On success the card is attached to the customer."""
    from .setup_intents import confirm_with_payment_method

    store = req.store
    si = store.objects[session["setup_intent"]]
    cus = _customer_for(req, session, email, form.get("name"), session.get("customer_creation") == "always")
    if cus is not None and not si.get("customer"):
        si["customer"] = cus["id"]
    try:
        confirm_with_payment_method(req, si, pm, return_url=None)
    except StripeError as exc:
        raise CheckoutDecline(exc.message) from None
    if si["status"] == "requires_action":
        priv = store.priv(session["id"])
        priv["pending_customer"] = cus["id"] if cus else None
        priv["email"] = email
        store.priv(si["id"])["after_3ds_hook"] = "emu_b_checkout"
        return HtmlResponse.redirect(f"{req.emulator.public_url}/_emulator/3ds/{si['id']}")
    return _finish(req, session, cus, email, pm)


def _complete_async(req: Any, session: dict[str, Any], method: str, email: str | None,
                    form: dict[str, str]) -> HtmlResponse:
    """Boleto / Pix: the PaymentIntent waits for the customer's payment, the session completes `unpaid` at once
    (`checkout.session.completed`), then `checkout.session.async_payment_succeeded` or `..._failed` follows."""
    if method not in session["payment_method_types"]:
        raise CheckoutDecline(f"This Checkout Session does not accept {method}.")
    if session["mode"] != "payment" or session["amount_total"] == 0:
        raise CheckoutDecline(f"{method.capitalize()} is only available for payments.")
    store = req.store
    billing = {"name": form.get("name") or None, "email": email,
               "address": {k: form.get(f"address_{k}") or None for k in ("line1", "city", "state", "postal_code")}
               | {"country": form.get("address_country") or "BR"}}
    try:
        pm = async_payments.create_async_payment_method(
            req, method, data={"tax_id": form.get("tax_id") or ""} if method == "boleto" else {},
            billing_details=billing, param="")
    except StripeError as exc:
        raise CheckoutDecline(exc.message) from None
    cus = _customer_for(req, session, email, form.get("name"), session.get("customer_creation") == "always"
                        or session["invoice_creation"]["enabled"])
    pid = store.priv(session["id"]).get("payment_intent_data") or {}
    pi = payments_core.build_payment_intent(req, {
        "amount": session["amount_total"], "currency": session["currency"], "customer": cus["id"] if cus else None,
        "description": pid.get("description"), "payment_method_types": [method],
        "payment_method_options": session["payment_method_options"]})
    apply_metadata(pi, pid.get("metadata"))
    store.add(pi)
    emit("payment_intent.created", pi)
    session["payment_intent"] = pi["id"]
    store.priv(pi["id"])["checkout_session"] = session["id"]
    # completed (unpaid) before the PaymentIntent can settle, as Checkout does for delayed methods
    _finish_async(req, session, cus, email, pm)
    async_payments.confirm(req, pi, pm)
    return HtmlResponse(_voucher_page(req, session, pi))


def _finish_async(req: Any, session: dict[str, Any], cus: dict[str, Any] | None, email: str | None,
                  pm: dict[str, Any]) -> None:
    session["status"] = "complete"
    session["payment_status"] = "unpaid"
    if cus is not None:
        session["customer"] = cus["id"]
    session["customer_details"] = {
        "address": copy.deepcopy(pm["billing_details"]["address"]), "business_name": None,
        "email": email or (cus or {}).get("email"), "individual_name": None,
        "name": pm["billing_details"].get("name") or (cus or {}).get("name"), "phone": None,
        "tax_exempt": "none",
        "tax_ids": [{"type": "br_cpf" if len("".join(c for c in pm["boleto"]["tax_id"] if c.isdigit())) == 11
                     else "br_cnpj", "value": pm["boleto"]["tax_id"]}] if pm["type"] == "boleto" else None}
    session["url"] = None
    emit("checkout.session.completed", session)


def _voucher_page(req: Any, session: dict[str, Any], pi: dict[str, Any]) -> str:
    """What the hosted page shows after choosing Boleto or Pix: the voucher or the QR code, then the way on."""
    na = pi.get("next_action") or {}
    target = _success_url(session)
    more = f"<p><a class='btn' id='continue' href='{esc(target)}'>Continue</a></p>" if target else ""
    if na.get("type") == "boleto_display_details":
        d = na["boleto_display_details"]
        body = (f"<h1>Boleto issued</h1><p>Pay {esc(fmt_money(pi['amount'], pi['currency']))} before the due date."
                f"</p><p>Number <code id='boleto-number'>{esc(d['number'])}</code></p>"
                f"<p><a id='voucher' href='{esc(d['hosted_voucher_url'])}'>Open the voucher</a> &middot; "
                f"<a href='{esc(d['pdf'])}'>PDF</a></p>")
    elif na.get("type") == "pix_display_qr_code":
        d = na["pix_display_qr_code"]
        body = (f"<h1>Pay with Pix</h1><p>Scan the QR code to pay {esc(fmt_money(pi['amount'], pi['currency']))}.</p>"
                f"<img id='pix-qr' alt='Pix QR code' src='{esc(d['image_url_svg'])}' width='200' height='200'>"
                f"<p>Pix copy and paste: <code id='pix-data'>{esc(d['data'])}</code></p>"
                f"<p><a id='instructions' href='{esc(d['hosted_instructions_url'])}'>Instructions</a></p>")
    else:
        body = f"<h1>Payment {esc(pi['status'])}</h1>"
    return page("Checkout", f"<div class='main' id='async-{esc(pi['status'])}'>{body}{more}</div>")


def _after_async(req: Any, pi: dict[str, Any], succeeded: bool) -> None:
    session = req.store.get(req.store.private.get(pi["id"], {}).get("checkout_session"), "checkout.session")
    if session is None:
        return
    if succeeded:
        session["payment_status"] = "paid"
        emit("checkout.session.async_payment_succeeded", session)
    else:
        emit("checkout.session.async_payment_failed", session)


async_payments.AFTER_ASYNC_HOOKS.append(_after_async)


def _known_email(req: Any, session: dict[str, Any]) -> str | None:
    cus = req.store.get(session.get("customer"), "customer")
    return session.get("customer_email") or (cus or {}).get("email")


def _customer_for(req: Any, session: dict[str, Any], email: str | None, name: str | None, create: bool) -> dict[str, Any] | None:
    from .customers import build_customer

    if session.get("customer"):
        return req.store.objects[session["customer"]]
    if not create:
        return None
    cus = build_customer(req, {"email": email, "name": name or None})
    req.store.add(cus)
    emit("customer.created", cus)
    return cus


def _complete_payment(req: Any, session: dict[str, Any], pm: dict[str, Any], email: str | None,
                      form: dict[str, str]) -> HtmlResponse:
    store = req.store
    # a post-payment invoice needs a customer, so invoice_creation makes one like customer_creation=always
    cus = _customer_for(req, session, email, form.get("name"), session.get("customer_creation") == "always"
                        or session["invoice_creation"]["enabled"])
    pid = store.priv(session["id"]).get("payment_intent_data") or {}
    if cus is not None and pid.get("setup_future_usage"):
        attach_payment_method(req, pm, cus)
    if session["amount_total"] == 0:
        return _finish(req, session, cus, email, pm)
    out = payments_core.charge_payment_method(
        req, amount=session["amount_total"], currency=session["currency"], customer=cus["id"] if cus else None,
        payment_method=pm["id"], off_session=False, description=pid.get("description"),
        metadata=pid.get("metadata"))
    pi = out.payment_intent
    session["payment_intent"] = pi["id"]
    store.priv(session["id"])["pending_customer"] = cus["id"] if cus else None
    store.priv(session["id"])["email"] = email
    if pi["status"] == "requires_action":
        store.priv(pi["id"])["after_3ds_hook"] = "emu_b_checkout"
        store.priv(pi["id"])["checkout_session"] = session["id"]
        return HtmlResponse.redirect(f"{req.emulator.public_url}/_emulator/3ds/{pi['id']}")
    if out.error is not None:
        session["payment_intent"] = None
        raise CheckoutDecline(out.error["message"])
    return _finish(req, session, cus, email, pm)


def _complete_subscription(req: Any, session: dict[str, Any], pm: dict[str, Any], email: str | None,
                           form: dict[str, str], priv: dict[str, Any]) -> HtmlResponse:
    from .subscriptions import create_subscription

    store = req.store
    cus = _customer_for(req, session, email, form.get("name"), True)
    assert cus is not None
    attach_payment_method(req, pm, cus)
    now = req.store.clock.now_for_customer(cus["id"])
    sd = priv.get("subscription_data") or {}
    trial_end = sd.get("trial_end") or (now + priv["trial_period_days"] * DAY if priv.get("trial_period_days") else None)
    items, extras = [], []
    for li in _items(req, session):
        if li["price"].get("recurring"):
            items.append({"price": li["price"]["id"], "quantity": li["quantity"]})
        else:
            extras.append({"price": li["price"]["id"], "quantity": li["quantity"]})
    discounts = []
    coupon_id = priv.get("coupon")
    promo_id = priv.get("promotion_code")
    if promo_id:
        promo = store.get(promo_id, "promotion_code")
        coupon_id = promo["promotion"]["coupon"] if promo else None
    if coupon_id and store.get(coupon_id, "coupon"):
        disc = inv_mod.new_discount(req, coupon=store.objects[coupon_id], customer=cus["id"],
                                    promotion_code=promo_id, checkout_session=session["id"])
        discounts.append(disc["id"])
    sub = create_subscription(
        req, customer=cus, items=items, currency=session["currency"], trial_end=trial_end,
        default_payment_method=pm["id"], metadata=sd.get("metadata"), discounts=discounts,
        payment_behavior="allow_incomplete", off_session=False, description=sd.get("description"),
        add_invoice_items=extras, after_3ds_hook="emu_b_checkout")
    session["subscription"] = sub["id"]
    session["customer"] = cus["id"]
    session["invoice"] = sub["latest_invoice"]
    store.priv(session["id"])["email"] = email
    inv = store.objects[sub["latest_invoice"]]
    pi_id = store.priv(inv["id"]).get("payment_intent")
    pi = store.get(pi_id, "payment_intent") if pi_id else None
    if pi is not None and pi["status"] == "requires_action":
        store.priv(pi["id"])["checkout_session"] = session["id"]
        return HtmlResponse.redirect(f"{req.emulator.public_url}/_emulator/3ds/{pi['id']}")
    if sub["status"] not in ("active", "trialing"):
        # Not expected (declining cards are refused before anything is created), but never complete unpaid.
        raise CheckoutDecline("Your card was declined.")
    return _finish(req, session, cus, email, pm)


def _finish(req: Any, session: dict[str, Any], cus: dict[str, Any] | None, email: str | None,
            pm: dict[str, Any]) -> HtmlResponse:
    session["status"] = "complete"
    if session["mode"] == "setup":
        pass  # payment_status stays no_payment_required; amounts stay null
    elif session["mode"] == "subscription":
        inv = req.store.get(session.get("invoice"), "invoice")
        session["payment_status"] = "paid" if inv is not None and inv["amount_paid"] > 0 else "no_payment_required"
        if inv is not None:
            session["amount_total"] = inv["amount_paid"] if inv["amount_paid"] > 0 else session["amount_total"]
    else:
        session["payment_status"] = "paid" if session["amount_total"] > 0 else "no_payment_required"
        if session["invoice_creation"]["enabled"] and cus is not None:
            _post_payment_invoice(req, session, cus, req.store.get(session.get("payment_intent"), "payment_intent"))
    if cus is not None:
        session["customer"] = cus["id"]
    details = session.get("customer_details") or {"address": None, "business_name": None, "email": None,
                                                  "individual_name": None, "name": None, "phone": None,
                                                  "tax_exempt": "none", "tax_ids": None}
    details["email"] = email or details.get("email") or (cus or {}).get("email")
    details["name"] = (pm.get("billing_details") or {}).get("name") or (cus or {}).get("name")
    details["address"] = details.get("address") or {k: None for k in ("city", "country", "line1", "line2",
                                                                       "postal_code", "state")}
    session["customer_details"] = details
    promo_id = req.store.priv(session["id"]).get("promotion_code")
    if session["mode"] == "payment" and promo_id:
        promo = req.store.get(promo_id, "promotion_code")
        if promo is not None:
            promo["times_redeemed"] += 1
            coupon = req.store.get(promo["promotion"]["coupon"], "coupon")
            if coupon is not None:
                coupon["times_redeemed"] += 1
    session["url"] = None
    emit("checkout.session.completed", session)
    target = _success_url(session)
    if target:
        return HtmlResponse.redirect(target)
    return HtmlResponse(page("Thanks", "<div class='main'><h1 id='done'>Thanks for your order</h1>"
                                       "<p class='ok'>Your payment was successful.</p></div>"))


def _after_3ds(req: Any, pi: dict[str, Any], approved: bool) -> HtmlResponse | None:
    store = req.store
    session = store.get(store.private.get(pi["id"], {}).get("checkout_session"), "checkout.session")
    if session is None:
        return None
    priv = store.priv(session["id"])
    pm = store.get(pi.get("payment_method"), "payment_method") or {}
    if session["mode"] == "setup":  # `pi` is the session's SetupIntent here
        if pi["status"] == "succeeded":
            return _finish(req, session, store.get(priv.get("pending_customer"), "customer"), priv.get("email"), pm)
    elif session["mode"] == "payment":
        if pi["status"] == "succeeded":
            cus = store.get(priv.get("pending_customer"), "customer")
            return _finish(req, session, cus, priv.get("email"), pm)
        session["payment_intent"] = None
    else:
        sub = store.get(session.get("subscription"), "subscription")
        if sub is not None and sub["status"] in ("active", "trialing"):
            return _finish(req, session, store.get(sub["customer"], "customer"), priv.get("email"), pm)
        session["subscription"] = None
        session["invoice"] = None
    msg = payments_core.decline_error_fields("3ds_failed")["message"]
    return HtmlResponse(render_page(req, session, error=msg), status=402)


payments_core.AFTER_3DS_HOOKS["emu_b_checkout"] = _after_3ds


def _form(req: Request) -> dict[str, str]:
    out = {}
    for k, v in (req.params or {}).items():
        out[k] = v[0] if isinstance(v, list) and v else (v if isinstance(v, str) else "")
    return out


@route("POST", "/_emulator/checkout_sessions/{id}/complete", auth=False, idempotent=False)
def complete_route(req: Request) -> HtmlResponse:
    session = req.store.get(req.path_params["id"], "checkout.session")
    if session is None:
        return HtmlResponse(page("Not found", "<div class='main'><h1>Unknown Checkout Session</h1></div>"), status=404)
    _expire_if_due(req, session)
    form = _form(req)
    if session["status"] != "open":
        return HtmlResponse(render_page(req, session), status=409)
    if form.get("action") == "apply":
        try:
            _apply_promotion_code(req, session, form.get("promotion_code") or "")
        except CheckoutDecline as exc:
            return HtmlResponse(render_page(req, session, error=exc.message, form=form), status=400)
        return HtmlResponse(render_page(req, session, notice="Promotion code applied.", form=form))
    try:
        return complete_session(req, session, form)
    except CheckoutDecline as exc:
        return HtmlResponse(render_page(req, session, error=exc.message, form=form), status=402)


@route("GET", "/_emulator/checkout/{id}", auth=False)
def checkout_page(req: Request) -> HtmlResponse:
    session = req.store.get(req.path_params["id"], "checkout.session")
    if session is None:
        return HtmlResponse(page("Not found", "<div class='main'><h1>Unknown Checkout Session</h1></div>"), status=404)
    _expire_if_due(req, session)
    return HtmlResponse(render_page(req, session), status=200 if session["status"] == "open" else 410)


def _method_chooser(session: dict[str, Any], form: dict[str, str]) -> str:
    """Boleto / Pix for sessions that allow them (BRL): a choice of method and Boleto's payer fields."""
    allowed = [t for t in session["payment_method_types"] if t in async_payments.ASYNC_TYPES]
    if not allowed:
        return ""
    chosen = form.get("payment_method_type") or ("card" if "card" in session["payment_method_types"] else allowed[0])
    radios = "".join(
        f"<label><input type='radio' name='payment_method_type' id='method-{t}' value='{t}'"
        f"{' checked' if t == chosen else ''}> {label}</label> "
        for t, label in (("card", "Card"), ("boleto", "Boleto"), ("pix", "Pix"))
        if t in session["payment_method_types"])
    boleto = ""
    if "boleto" in allowed:
        fields = [("tax_id", "CPF / CNPJ"), ("address_line1", "Address"), ("address_city", "City"),
                  ("address_state", "State"), ("address_postal_code", "Postal code")]
        boleto = "<fieldset id='boleto-fields'><legend>Boleto</legend>" + "".join(
            f"<label for='{k}'>{label}</label><input id='{k}' name='{k}' value='{esc(form.get(k) or '')}'>"
            for k, label in fields) + "</fieldset>"
    return f"<div id='payment-methods'>{radios}</div>{boleto}"


def render_page(req: Any, session: dict[str, Any], *, error: str | None = None, notice: str | None = None,
                form: dict[str, str] | None = None) -> str:
    form = form or {}
    store = req.store
    cur = session["currency"]
    priv = store.priv(session["id"])
    rows = ""
    for li in _items(req, session):
        rec = li["price"].get("recurring")
        every = ""
        if rec:
            every = f" / {rec['interval']}" if rec["interval_count"] == 1 else f" every {rec['interval_count']} {rec['interval']}s"
        unit = fmt_money(inv_mod.unit_amount_in(store, li["price"], cur), cur)
        qty = f"Qty {li['quantity']}" if li["quantity"] is not None else "Billed by usage"
        if li["quantity"] is None:
            # Metered: the exact per-unit price (a fraction of a cent is common), as Stripe's page shows it.
            decimal = price_unit_decimal_for(store, li["price"], cur)
            if decimal is not None:
                unit = fmt_unit_decimal(decimal, cur) + " per unit"
                every = f", billed every {rec['interval']}" if rec else ""
        rows += (f"<tr class='line'><td>{esc(li['description'])}<div class='muted'>{qty} &middot; "
                 f"{esc(unit)}{esc(every)}</div></td><td class='r'>{esc(fmt_money(li['amount_subtotal'], cur))}</td></tr>")
    trial_days = priv.get("trial_period_days")
    if (session["total_details"] or {}).get("amount_discount"):
        promo = store.get(priv.get("promotion_code"), "promotion_code")
        label = f"Discount ({promo['code']})" if promo else "Discount"
        rows += f"<tr><td>{esc(label)}</td><td class='r' id='discount'>-{esc(fmt_money(session['total_details']['amount_discount'], cur))}</td></tr>"
    setup = session["mode"] == "setup"
    head = "Subscribe to" if session["mode"] == "subscription" else "Pay"
    first = _items(req, session)[0]["description"] if not setup else ""
    due_label = "Total due today"
    if session["status"] != "open":
        body = (f"<div class='main'><h1>This Checkout Session is {esc(session['status'])}</h1>"
                + (f"<a class='btn secondary' href='{esc(session['cancel_url'])}'>Return</a>" if session.get("cancel_url") else "")
                + "</div>")
        return page("Checkout", body)
    email_field = ""
    known_email = _known_email(req, session)
    if not session.get("customer"):
        email_field = (f"<label for='email'>Email</label><input id='email' name='email' type='email' "
                       f"value='{esc(form.get('email') or known_email or '')}' placeholder='you@example.com'>")
    else:
        email_field = (f"<p class='muted'>{'Saving for' if setup else 'Paying as'} "
                       f"{esc(known_email or session['customer'])}</p>")
    promo_field = ""
    if session.get("allow_promotion_codes"):
        applied = store.get(priv.get("promotion_code"), "promotion_code")
        promo_field = ("<label for='promotion_code'>Promotion code</label><div class='row'><div>"
                       f"<input id='promotion_code' name='promotion_code' value='{esc(applied['code'] if applied else form.get('promotion_code', ''))}'>"
                       "</div><div style='flex:0 0 7rem'><button class='secondary' style='margin-top:0' name='action' "
                       "value='apply' id='apply-promo'>Apply</button></div></div>")
    msg = ""
    if error:
        msg = f"<div class='error' id='error' role='alert'>{esc(error)}</div>"
    elif notice:
        msg = f"<div class='ok' id='notice'>{esc(notice)}</div>"
    trial_note = f"<p class='muted' id='trial'>{trial_days} days free, then billed per period.</p>" if trial_days else ""
    cancel = (f"<p><a class='muted' id='cancel' href='{esc(session['cancel_url'])}'>&larr; Back</a></p>"
              if session.get("cancel_url") else "")
    if setup:
        # Nothing is charged: the side says what the card is saved for instead of a total.
        button = "Save card"
        side = ("<div class='muted'>Set up a card for future payments</div>"
                "<div class='total' id='setup-note'>No charge today</div>"
                "<p class='muted'>Your card is saved with Stripe Emulator Test Account for later payments "
                "under its terms.</p>")
        title = "Save a card"
    else:
        button = "Start trial" if trial_days and session["amount_total"] == 0 else ("Subscribe" if session["mode"] == "subscription" else "Pay")
        side = (f"<div class='muted'>{head} {esc(first)}</div>"
                f"<div class='total' id='amount-total'>{esc(fmt_money(session['amount_total'], cur))}</div>{trial_note}"
                f"<table>{rows}<tr><td><strong>{due_label}</strong></td><td class='r'><strong>"
                f"{esc(fmt_money(session['amount_total'], cur))}</strong></td></tr></table>")
        title = "Pay with card"
    body = (
        "<div class='wrap'><div class='side'><div class='brand'>Stripe Emulator Test Account</div>" + cancel +
        side + "</div>"
        f"<div class='main'><h1>{title}</h1>" + msg +
        f"<form method='post' id='checkout-form' action='/_emulator/checkout_sessions/{esc(session['id'])}/complete'>"
        + email_field + _method_chooser(session, form) +
        "<label for='card_number'>Card information</label>"
        f"<input id='card_number' name='card_number' inputmode='numeric' autocomplete='cc-number' "
        f"value='{esc(form.get('card_number') or '4242 4242 4242 4242')}'>"
        "<div class='row'><div><label for='card_expiry'>Expiry</label><input id='card_expiry' name='card_expiry' "
        f"value='{esc(form.get('card_expiry') or '12 / 34')}'></div>"
        "<div><label for='card_cvc'>CVC</label><input id='card_cvc' name='card_cvc' value='123' autocomplete='cc-csc'></div></div>"
        "<label for='name'>Name on card</label>"
        f"<input id='name' name='name' value='{esc(form.get('name') or '')}'>" + promo_field +
        f"<button type='submit' id='submit' name='action' value='pay'>{button}</button></form>"
        "<p class='muted'>Test mode: use 4000 0000 0000 0002 to see a decline, 4000 0025 0000 3155 for 3-D Secure.</p>"
        "</div></div>"
    )
    return page("Checkout", body)


# ------------------------------------------------------------------ trigger

@trigger("checkout.session.completed")
def _t_completed(emulator: Any) -> dict[str, Any]:
    from .catalog import _create_price

    with emulator.store.lock, using(emulator):
        req = internal_request(emulator)
        price = _create_price(req, {"currency": "usd", "unit_amount": 3000, "product_data": {"name": "T-shirt"}})
        req.params = {"mode": "payment", "line_items": [{"price": price["id"], "quantity": 1}],
                      "success_url": "https://example.com/success"}
        session = create_session(req)
        complete_session(req, session, {"email": "jenny.rosen@example.com"})
        return {"checkout_session": session["id"], "payment_intent": session["payment_intent"]}


__all__ = ["create_session", "complete_session", "render_page"]


def fmt_unit_decimal(amount_minor: Decimal, currency: str) -> str:
    """A fractional minor-unit price for display: Decimal("0.2") usd -> "$0.002" (trailing zeros past cents cut)."""
    cur = (currency or "usd").lower()
    major = Decimal(amount_minor) if cur in ZERO_DECIMAL else Decimal(amount_minor) / 100
    text = f"{major:.6f}".rstrip("0")
    whole, _, fraction = text.partition(".")
    text = f"{whole}.{fraction.ljust(2, '0')}" if cur not in ZERO_DECIMAL else text.rstrip(".")
    sym = _SYMBOL.get(cur)
    return f"{sym}{text}" if sym else f"{text} {cur.upper()}"
