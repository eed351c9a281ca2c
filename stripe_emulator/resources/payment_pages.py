"""The payment-page endpoints behind Stripe's hosted Checkout (what Stripe.js and Stripe's own tools call):
`GET /v1/payment_pages/<checkout session id>` and `POST /v1/payment_pages/<checkout session id>/confirm`.

They complete a Checkout Session like the hosted page does (same charges, subscriptions, events and 3-D Secure),
with a `payment_method` (an id or a test id such as `pm_card_visa`) or `payment_method_data` for Boleto / Pix.
Stripe.js authenticates these with the publishable key (`key=pk_test_…` in the body or a Bearer `pk_test_…`);
the emulator accepts that here and secret keys as everywhere. Stripe's payment page object is private and much
larger: the answer here (`object: "payment_page"`) carries the session's state, its totals and lines, and the
PaymentIntent (with its `next_action`: 3-D Secure, Boleto voucher, Pix QR code) once confirmed.
"""

import copy
from typing import Any, List

import stripe.params as sdk_params
from stripe.params._payment_intent_create_params import PaymentIntentCreateParamsPaymentMethodData
from typing_extensions import NotRequired, TypedDict

from ..context import using
from ..errors import StripeError, state_error
from ..internal import internal_request
from ..registry import Request, route, trigger
from . import async_payments, checkout
from .payment_engine import decline_error_fields
from .payment_methods import card_behaviour, resolve_payment_method


class EmulatorPaymentPageRetrieveParams(TypedDict):
    expand: NotRequired[List[str]]
    key: NotRequired[str]


class EmulatorPaymentPageConfirmParams(TypedDict):
    email: NotRequired[str]
    """The payer's e-mail (when the session has no customer)."""
    expand: NotRequired[List[str]]
    expected_amount: NotRequired[int]
    """The total the page showed; a different current total is refused (`checkout_amount_mismatch`)."""
    expected_payment_method_type: NotRequired[str]
    key: NotRequired[str]
    """The publishable key, as Stripe.js sends it."""
    name: NotRequired[str]
    payment_method: NotRequired[str]
    payment_method_data: NotRequired[PaymentIntentCreateParamsPaymentMethodData]
    promotion_code: NotRequired[str]
    return_url: NotRequired[str]


# The framework finds a route's TypedDict as an attribute of `stripe.params` (see billing_common.sdk_params_name).
for _td in (EmulatorPaymentPageRetrieveParams, EmulatorPaymentPageConfirmParams):
    if not hasattr(sdk_params, _td.__name__):
        setattr(sdk_params, _td.__name__, _td)


def _session(req: Request) -> dict[str, Any]:
    sid = req.path_params["id"]
    session = req.store.get(sid, "checkout.session")
    if session is None:
        raise StripeError(f"No such payment_page: '{sid}'", status=404, code="resource_missing", param="id")
    checkout._expire_if_due(req, session)
    return session


def payment_page(req: Any, session: dict[str, Any]) -> dict[str, Any]:
    pi = req.store.get(session.get("payment_intent"), "payment_intent")
    return {
        "id": session["id"],
        "object": "payment_page",
        "amount_subtotal": session["amount_subtotal"],
        "amount_total": session["amount_total"],
        "cancel_url": session.get("cancel_url"),
        "currency": session["currency"],
        "customer": session.get("customer"),
        "customer_email": session.get("customer_email") or checkout._known_email(req, session),
        "expires_at": session["expires_at"],
        "line_items": copy.deepcopy(checkout._items(req, session)),
        "livemode": False,
        "mode": session["mode"],
        "payment_intent": copy.deepcopy(pi),
        "payment_method_options": copy.deepcopy(session["payment_method_options"]),
        "payment_method_types": list(session["payment_method_types"]),
        "payment_status": session["payment_status"],
        "session_id": session["id"],
        "status": session["status"],
        "subscription": session.get("subscription"),
        "success_url": checkout._success_url(session),
        "total_details": copy.deepcopy(session["total_details"]),
    }


@route("GET", "/v1/payment_pages/{id}", "EmulatorPaymentPageRetrieveParams", returns=None)
def retrieve_payment_page(req: Request) -> dict[str, Any]:
    return payment_page(req, _session(req))


@route("POST", "/v1/payment_pages/{id}/confirm", "EmulatorPaymentPageConfirmParams", returns=None)
def confirm_payment_page(req: Request) -> dict[str, Any]:
    session = _session(req)
    p = req.params
    if session["status"] != "open":
        raise state_error(f"This Checkout Session is {session['status']} and can no longer be paid.",
                          code="checkout_session_inactive" if session["status"] == "expired" else "checkout_session_completed")
    if p.get("payment_method") and p.get("payment_method_data"):
        raise StripeError("You may only specify one of these parameters: payment_method, payment_method_data.",
                          param="payment_method_data")
    data = p.get("payment_method_data") or {}
    method = data.get("type") or ("card" if p.get("payment_method") else None)
    if method is None:
        raise StripeError("Missing required param: payment_method.", code="parameter_missing", param="payment_method")
    if method not in session["payment_method_types"]:
        raise StripeError(f"This Checkout Session does not accept `{method}`; it accepts "
                          f"{', '.join(session['payment_method_types'])}.", param="payment_method_data[type]")
    if p.get("expected_payment_method_type") and p["expected_payment_method_type"] != method:
        raise StripeError("The payment method type differs from `expected_payment_method_type`.",
                          param="expected_payment_method_type")
    billing = data.get("billing_details") or {}
    email = p.get("email") or billing.get("email") or checkout._known_email(req, session)
    if not session.get("customer") and not email:
        raise StripeError("Missing required param: email.", code="parameter_missing", param="email")
    if p.get("promotion_code") and req.store.priv(session["id"]).get("promotion_code") is None:
        try:
            checkout._apply_promotion_code(req, session, p["promotion_code"])
        except checkout.CheckoutDecline as exc:
            raise StripeError(exc.message, param="promotion_code") from None
    if "expected_amount" in p and p["expected_amount"] != session["amount_total"]:
        raise StripeError(f"The amount to pay ({session['amount_total']}) differs from `expected_amount` "
                          f"({p['expected_amount']}).", code="checkout_amount_mismatch", param="expected_amount")
    name = p.get("name") or billing.get("name") or ""
    try:
        if method in async_payments.ASYNC_TYPES:
            address = billing.get("address") or {}
            form = {"payment_method_type": method, "name": name, "tax_id": (data.get("boleto") or {}).get("tax_id", ""),
                    **{f"address_{k}": address.get(k) or "" for k in ("line1", "city", "state", "postal_code", "country")}}
            checkout._complete_async(req, session, method, email, form)
        elif method == "card":
            if not p.get("payment_method"):
                raise StripeError("Card details are confirmed with `payment_method` (an id or a test id such as "
                                  "`pm_card_visa`) in the emulator.", param="payment_method")
            pm = resolve_payment_method(req, p["payment_method"])
            behaviour = card_behaviour(req, pm["id"])
            if behaviour in checkout._DECLINING:
                f = decline_error_fields(behaviour)
                raise StripeError(f["message"], status=402, type="card_error", code=f["code"],
                                  decline_code=f.get("decline_code") or None, param="payment_method")
            checkout.complete_with_card(req, session, pm, email, {"name": name}, created_here=False)
        else:
            raise StripeError(f"Payment method type `{method}` is not emulated in Checkout.", param="payment_method_data[type]")
    except checkout.CheckoutDecline as exc:
        raise StripeError(exc.message, status=402, type="card_error", code="card_declined") from None
    return payment_page(req, session)


def _async_checkout(emulator: Any, succeeded: bool) -> dict[str, Any]:
    from .catalog import _create_price

    with emulator.store.lock, using(emulator):
        req = internal_request(emulator)
        price = _create_price(req, {"currency": "brl", "unit_amount": 5000, "product_data": {"name": "Camiseta"}})
        req.params = {"mode": "payment", "line_items": [{"price": price["id"], "quantity": 1}],
                      "payment_method_types": ["pix"], "success_url": "https://example.com/success"}
        session = checkout.create_session(req)
        checkout._complete_async(req, session, "pix", "jenny.rosen@example.com", {"payment_method_type": "pix"})
        pi = req.store.objects[session["payment_intent"]]
        if succeeded:
            async_payments.settle(req, pi, succeeded=True)
        else:
            async_payments.expire(req, pi)
        return {"checkout_session": session["id"], "payment_intent": pi["id"]}


@trigger("checkout.session.async_payment_succeeded")
def _t_async_succeeded(emulator: Any) -> dict[str, Any]:
    return _async_checkout(emulator, True)


@trigger("checkout.session.async_payment_failed")
def _t_async_failed(emulator: Any) -> dict[str, Any]:
    return _async_checkout(emulator, False)
