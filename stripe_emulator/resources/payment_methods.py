"""Payment methods (cards only): create, retrieve, update, attach, detach, list; test cards and tokens.

Only brand, last4, expiry, fingerprint and the test behaviour of a card are kept: never the number or CVC.
"""
from __future__ import annotations

import copy
import hashlib
from typing import Any

from ..errors import StripeError, no_such
from ..events import diff, emit
from ..helpers import address, apply_metadata, get_or_404, ref_or_400
from ..listing import list_response
from ..registry import Request, object_type, route
from ..state import new_id

object_type("payment_method")

# Test card numbers -> (brand, behaviour). Behaviours (what a charge does): ok | decline | insufficient_funds |
# lost_card | stolen_card | expired | incorrect_cvc | processing_error | card_velocity_exceeded | fraudulent (blocked
# by Radar) | 3ds (always authenticate) | 3ds_setup (authenticate unless set up off-session) | dispute |
# attach_ok_charge_fails. Billing code only distinguishes "ok"/"dispute" (charge succeeds) from the rest.
TEST_CARDS: dict[str, tuple[str, str]] = {
    "4242424242424242": ("visa", "ok"),
    "4000056655665556": ("visa", "ok"),
    "5555555555554444": ("mastercard", "ok"),
    "2223003122003222": ("mastercard", "ok"),
    "5200828282828210": ("mastercard", "ok"),
    "5105105105105100": ("mastercard", "ok"),
    "378282246310005": ("amex", "ok"),
    "371449635398431": ("amex", "ok"),
    "6011111111111117": ("discover", "ok"),
    "3056930009020004": ("diners", "ok"),
    "3566002020360505": ("jcb", "ok"),
    "6200000000000005": ("unionpay", "ok"),
    "4000000000000002": ("visa", "decline"),
    "4000000000009995": ("visa", "insufficient_funds"),
    "4000000000009987": ("visa", "lost_card"),
    "4000000000009979": ("visa", "stolen_card"),
    "4000000000000069": ("visa", "expired"),
    "4000000000000127": ("visa", "incorrect_cvc"),
    "4000000000000119": ("visa", "processing_error"),
    "4000000000006975": ("visa", "card_velocity_exceeded"),
    "4100000000000019": ("visa", "fraudulent"),
    "4000000000004954": ("visa", "fraudulent"),
    "4000000000009235": ("visa", "ok"),
    "4000000000000101": ("visa", "incorrect_cvc"),
    "4000000000000010": ("visa", "ok"),
    "4000000000000028": ("visa", "ok"),
    "4000000000000036": ("visa", "ok"),
    "4000000000000044": ("visa", "ok"),
    "4000000000000077": ("visa", "ok"),
    "4000003720000278": ("visa", "ok"),
    "4000000000000341": ("visa", "attach_ok_charge_fails"),
    "4000002500003155": ("visa", "3ds_setup"),
    "4000002760003184": ("visa", "3ds"),
    "4000000000003220": ("visa", "3ds"),
    "4000000000003063": ("visa", "3ds"),
    "4000000000003055": ("visa", "ok"),
    "4000008260003178": ("visa", "3ds"),
    "4000008400001629": ("visa", "3ds"),
    "4000000000000259": ("visa", "dispute"),
    "4000000000002685": ("visa", "dispute"),
    "4000000000001976": ("visa", "dispute"),
    "4000000000005126": ("visa", "ok"),
}

# Finer test behaviour of some numbers, kept with the payment method (never shown): `country`, `funding`,
# `checks` (card checks), `dispute` (fraudulent | product_not_received | inquiry: the dispute opened after the
# charge), `after_3ds` (the decline that follows a completed challenge), `refund_fails` (refunds fail a moment
# after they succeed), `available_at_once` (funds skip the pending period).
CARD_TRAITS: dict[str, dict[str, Any]] = {
    "4000056655665556": {"funding": "debit"},
    "5200828282828210": {"funding": "debit"},
    "5105105105105100": {"funding": "prepaid"},
    "4000000000000101": {"checks": {"cvc_check": "fail"}},
    "4000000000000010": {"checks": {"address_line1_check": "fail", "address_postal_code_check": "fail"}},
    "4000000000000028": {"checks": {"address_line1_check": "fail", "address_postal_code_check": "pass"}},
    "4000000000000036": {"checks": {"address_line1_check": "pass", "address_postal_code_check": "fail"}},
    "4000000000000044": {"checks": {"address_line1_check": "unavailable", "address_postal_code_check": "unavailable"}},
    "4000000000000077": {"available_at_once": True},
    "4000003720000278": {"available_at_once": True, "country": "IE"},
    "4000008260003178": {"after_3ds": "insufficient_funds"},
    "4000008400001629": {"after_3ds": "decline"},
    "4000000000000259": {"dispute": "fraudulent"},
    "4000000000002685": {"dispute": "product_not_received"},
    "4000000000001976": {"dispute": "inquiry"},
    "4000000000005126": {"refund_fails": True},
}

# Country test cards (Visa): `pm_card_br`, `pm_card_gb`, ...
_COUNTRY_CARDS = {
    "us": "4242424242424242", "ar": "4000000320000021", "br": "4000000760000002", "ca": "4000001240000000",
    "mx": "4000004840008001", "at": "4000000400000008", "be": "4000000560000004", "dk": "4000002080000001",
    "fi": "4000002460000001", "fr": "4000002500000003", "de": "4000002760000016", "ie": "4000003720000005",
    "it": "4000003800000008", "nl": "4000005280000002", "no": "4000005780000007", "es": "4000007240000007",
    "se": "4000007520000008", "ch": "4000007560000009", "gb": "4000008260000000", "au": "4000000360000006",
    "hk": "4000003440000004", "jp": "4000003920000003", "sg": "4000007020000003", "nz": "4000005540000008",
    "in": "4000003560000008",
}
for _cc, _num in _COUNTRY_CARDS.items():
    if _cc != "us":
        TEST_CARDS[_num] = ("visa", "ok")
        CARD_TRAITS[_num] = {"country": _cc.upper()}

# Magic ids usable wherever a payment method id is accepted (`pm_card_visa`) and card tokens (`tok_visa`):
# the PaymentMethod ids of Stripe's testing docs.
TEST_TOKENS: dict[str, str] = {
    "card_visa": "4242424242424242",
    "card_visa_debit": "4000056655665556",
    "card_mastercard": "5555555555554444",
    "card_mastercard_debit": "5200828282828210",
    "card_mastercard_prepaid": "5105105105105100",
    "card_amex": "378282246310005",
    "card_discover": "6011111111111117",
    "card_diners": "3056930009020004",
    "card_jcb": "3566002020360505",
    "card_unionpay": "6200000000000005",
    "card_chargeDeclined": "4000000000000002",
    "card_visa_chargeDeclined": "4000000000000002",
    "card_chargeDeclinedInsufficientFunds": "4000000000009995",
    "card_visa_chargeDeclinedInsufficientFunds": "4000000000009995",
    "card_chargeDeclinedLostCard": "4000000000009987",
    "card_visa_chargeDeclinedLostCard": "4000000000009987",
    "card_chargeDeclinedStolenCard": "4000000000009979",
    "card_visa_chargeDeclinedStolenCard": "4000000000009979",
    "card_chargeDeclinedExpiredCard": "4000000000000069",
    "card_chargeDeclinedIncorrectCvc": "4000000000000127",
    "card_chargeDeclinedProcessingError": "4000000000000119",
    "card_visa_chargeDeclinedVelocityLimitExceeded": "4000000000006975",
    "card_chargeDeclinedFraudulent": "4100000000000019",
    "card_chargeCustomerFail": "4000000000000341",
    "card_radarBlock": "4100000000000019",
    "card_riskLevelHighest": "4000000000004954",
    "card_riskLevelElevated": "4000000000009235",
    "card_cvcCheckFail": "4000000000000101",
    "card_avsFail": "4000000000000010",
    "card_avsLine1Fail": "4000000000000028",
    "card_avsZipFail": "4000000000000036",
    "card_avsUnchecked": "4000000000000044",
    "card_bypassPending": "4000000000000077",
    "card_bypassPendingInternational": "4000003720000278",
    "card_threeDSecure2Required": "4000000000003220",
    "card_threeDSecureRequired": "4000000000003063",
    "card_threeDSecureOptional": "4000000000003055",
    "card_threeDSecureRequiredChargeDeclined": "4000008400001629",
    "card_authenticationRequired": "4000002760003184",
    "card_authenticationRequiredOnSetup": "4000002500003155",
    "card_authenticationRequiredSetupForOffSession": "4000002500003155",
    "card_authenticationRequiredChargeDeclinedInsufficientFunds": "4000008260003178",
    "card_createDispute": "4000000000000259",
    "card_createDisputeProductNotReceived": "4000000000002685",
    "card_createDisputeInquiry": "4000000000001976",
    "card_refundFail": "4000000000005126",
    **{f"card_{cc}": num for cc, num in _COUNTRY_CARDS.items()},
}
_TOK_ALIASES = {"tok_" + key[len("card_"):]: key for key in TEST_TOKENS}

# Behaviours whose card the issuer refuses already when it is attached to a customer.
DECLINES_ON_ATTACH = {"decline", "insufficient_funds", "lost_card", "stolen_card", "expired", "incorrect_cvc",
                      "processing_error", "card_velocity_exceeded"}

_NETWORK = {"visa": "visa", "mastercard": "mastercard", "amex": "amex", "discover": "discover", "diners": "diners",
            "jcb": "jcb", "unionpay": "unionpay", "unknown": "unknown"}


def luhn_ok(number: str) -> bool:
    total = 0
    for i, ch in enumerate(reversed(number)):
        d = int(ch)
        if i % 2 == 1:
            d *= 2
            if d > 9:
                d -= 9
        total += d
    return total % 10 == 0


def brand_for(number: str) -> str:
    if number.startswith("4"):
        return "visa"
    if number[:2] in ("51", "52", "53", "54", "55") or number[:4].isdigit() and 2221 <= int(number[:4]) <= 2720:
        return "mastercard"
    if number[:2] in ("34", "37"):
        return "amex"
    if number.startswith("6011") or number.startswith("65"):
        return "discover"
    return "unknown"


def card_error(message: str, code: str, param: str | None = None, decline_code: str | None = None) -> StripeError:
    return StripeError(message, status=402, type="card_error", code=code, param=param, decline_code=decline_code)


def _card_details(number: str, exp_month: int, exp_year: int) -> tuple[dict[str, Any], str, dict[str, Any]]:
    """Validate a raw test card number; return (card hash for the object, behaviour, traits). Number is dropped."""
    digits = "".join(ch for ch in str(number) if ch.isdigit())
    if len(digits) < 12 or len(digits) > 19 or not luhn_ok(digits):
        raise card_error("Your card number is incorrect.", "incorrect_number", "card[number]")
    brand, behaviour = TEST_CARDS.get(digits, (brand_for(digits), "ok"))
    if exp_month < 1 or exp_month > 12:
        raise card_error("Your card's expiration month is invalid.", "invalid_expiry_month", "card[exp_month]")
    if exp_year < 100:
        exp_year += 2000
    if exp_year < 2000 or exp_year > 2100:
        raise card_error("Your card's expiration year is invalid.", "invalid_expiry_year", "card[exp_year]")
    fingerprint = hashlib.sha256(f"emulator-card:{digits}".encode()).hexdigest()[:16]
    traits = dict(CARD_TRAITS.get(digits, {}))
    card = {
        "brand": brand,
        "checks": {"address_line1_check": None, "address_postal_code_check": None, "cvc_check": "pass",
                   **traits.pop("checks", {})},
        "country": traits.pop("country", "US"),
        "display_brand": brand,
        "exp_month": exp_month,
        "exp_year": exp_year,
        "fingerprint": fingerprint,
        "funding": traits.pop("funding", "credit"),
        "generated_from": None,
        "last4": digits[-4:],
        "networks": {"available": [_NETWORK.get(brand, "unknown")], "preferred": None},
        "regulated_status": "unregulated",
        "three_d_secure_usage": {"supported": True},
        "wallet": None,
    }
    return card, behaviour, traits


def _billing_details(value: Any) -> dict[str, Any]:
    value = value or {}
    return {
        "address": address(value.get("address")) or {k: None for k in ("city", "country", "line1", "line2", "postal_code", "state")},
        "email": value.get("email") or None,
        "name": value.get("name") or None,
        "phone": value.get("phone") or None,
        "tax_id": value.get("tax_id") or None,
    }


def create_card_payment_method(
    req: Request, *, number: str, exp_month: int = 12, exp_year: int = 2034,
    customer: str | None = None, billing_details: Any = None, metadata: Any = None,
) -> dict[str, Any]:
    """Store a card payment method from a raw test number (hosted pages use this). Emits nothing."""
    card, behaviour, traits = _card_details(number, exp_month, exp_year)
    pm = {
        "id": new_id("pm"),
        "object": "payment_method",
        "allow_redisplay": "unspecified",
        "billing_details": _billing_details(billing_details),
        "card": card,
        "created": req.store.clock.now(),
        "customer": None,
        "customer_account": None,
        "livemode": False,
        "metadata": {},
        "type": "card",
    }
    apply_metadata(pm, metadata)
    req.store.add(pm, {"behaviour": behaviour, "traits": traits})
    if customer:
        cus = req.store.get(customer, "customer")
        if cus is not None:
            attach_payment_method(req, pm, cus)
    return pm


def resolve_payment_method(req: Request, pm_id: str, param: str = "payment_method") -> dict[str, Any]:
    """A stored payment method, or a new one for a magic test id such as `pm_card_visa`."""
    pm = req.store.get(pm_id, "payment_method")
    if pm is not None:
        return pm
    if pm_id.startswith("pm_") and pm_id[3:] in TEST_TOKENS:
        return create_card_payment_method(req, number=TEST_TOKENS[pm_id[3:]])
    raise StripeError(f"No such PaymentMethod: '{pm_id}'", status=400 if param != "id" else 404,
                      code="resource_missing", param=param)


def card_behaviour(req: Request, pm_id: str) -> str:
    return req.store.private.get(pm_id, {}).get("behaviour", "ok")


def card_traits(req: Request, pm_id: str | None) -> dict[str, Any]:
    """The finer test behaviour of a card (see CARD_TRAITS); {} for ordinary cards."""
    return req.store.private.get(pm_id or "", {}).get("traits") or {}


def check_attachable(req: Request, pm: dict[str, Any], customer_id: str | None) -> None:
    """Raise what attaching `pm` would raise (already attached elsewhere, a card the issuer refuses)."""
    if pm.get("customer") and pm.get("customer") != customer_id:
        raise StripeError(
            "The payment method you provided has already been attached to a customer.",
            param="payment_method",
        )
    if card_behaviour(req, pm["id"]) in DECLINES_ON_ATTACH:
        # Stripe checks the card with the issuer when attaching: these test cards fail to attach.
        raise _decline_for(card_behaviour(req, pm["id"]))


def attach_payment_method(req: Request, pm: dict[str, Any], cus: dict[str, Any]) -> dict[str, Any]:
    if pm.get("customer") == cus["id"]:
        return pm
    check_attachable(req, pm, cus["id"])
    pm["customer"] = cus["id"]
    emit("payment_method.attached", pm)
    return pm


def _decline_for(behaviour: str) -> StripeError:
    from .payment_engine import decline_error_fields

    f = decline_error_fields(behaviour)
    return card_error(f["message"], f["code"], None, f.get("decline_code"))


@route("POST", "/v1/payment_methods", "PaymentMethodCreateParams", returns="payment_method")
def create_payment_method(req: Request) -> dict[str, Any]:
    p = req.params
    ptype = p.get("type", "card")
    if "payment_method" in p:
        # Cloning a customer's payment method (Connect) is not emulated; copying a stored one is.
        src = ref_or_400(req, p["payment_method"], "payment_method", "payment_method", "PaymentMethod")
        pm = copy.deepcopy(src)
        pm["id"], pm["customer"] = new_id("pm"), None
        req.store.add(pm, dict(req.store.private.get(src["id"], {})))
        return pm
    if ptype in ("boleto", "pix"):
        from .async_payments import create_async_payment_method

        return create_async_payment_method(req, ptype, data=p.get(ptype), billing_details=p.get("billing_details"),
                                           metadata=p.get("metadata"), param="")
    if ptype != "card":
        raise StripeError(f"The payment method type `{ptype}` is not supported by the emulator; use `card`, "
                          "`boleto` or `pix`.", param="type")
    card = p.get("card")
    if not card:
        raise StripeError("Missing required param: card.", param="card", code="parameter_missing")
    if "token" in card:
        tok = card["token"]
        key = _TOK_ALIASES.get(tok)
        if key is None:
            raise StripeError(f"No such token: '{tok}'", param="card[token]", code="resource_missing")
        number, exp_month, exp_year = TEST_TOKENS[key], 12, 2034
    else:
        for f in ("number", "exp_month", "exp_year"):
            if f not in card:
                raise StripeError(f"Missing required param: card[{f}].", param=f"card[{f}]", code="parameter_missing")
        number, exp_month, exp_year = card["number"], card["exp_month"], card["exp_year"]
    pm = create_card_payment_method(req, number=number, exp_month=exp_month, exp_year=exp_year,
                                    billing_details=p.get("billing_details"), metadata=p.get("metadata"))
    if "allow_redisplay" in p:
        pm["allow_redisplay"] = p["allow_redisplay"]
    return pm


@route("GET", "/v1/payment_methods/{id}", "PaymentMethodRetrieveParams", returns="payment_method")
def retrieve_payment_method(req: Request) -> dict[str, Any]:
    return resolve_payment_method(req, req.path_params["id"], "id")


@route("POST", "/v1/payment_methods/{id}", "PaymentMethodUpdateParams", returns="payment_method")
def update_payment_method(req: Request) -> dict[str, Any]:
    pm = get_or_404(req, req.path_params["id"], "payment_method", "PaymentMethod")
    before = copy.deepcopy(pm)
    p = req.params
    if "billing_details" in p:
        bd = pm["billing_details"]
        new = p["billing_details"] or {}
        for k in ("email", "name", "phone", "tax_id"):
            if k in new:
                bd[k] = new[k] or None
        if "address" in new:
            bd["address"] = address(new["address"]) or {k: None for k in bd["address"]}
    if "card" in p and pm.get("card"):
        for k in ("exp_month", "exp_year"):
            if k in p["card"]:
                pm["card"][k] = p["card"][k]
    if "allow_redisplay" in p:
        pm["allow_redisplay"] = p["allow_redisplay"]
    apply_metadata(pm, p.get("metadata"))
    prev = diff(before, pm)
    if prev:
        emit("payment_method.updated", pm, prev)
    return pm


@route("POST", "/v1/payment_methods/{id}/attach", "PaymentMethodAttachParams", returns="payment_method")
def attach(req: Request) -> dict[str, Any]:
    pm = resolve_payment_method(req, req.path_params["id"], "id")
    customer = req.params.get("customer")
    if not customer:
        raise StripeError("Missing required param: customer.", param="customer", code="parameter_missing")
    cus = ref_or_400(req, customer, "customer", "customer")
    return attach_payment_method(req, pm, cus)


@route("POST", "/v1/payment_methods/{id}/detach", "PaymentMethodDetachParams", returns="payment_method")
def detach(req: Request) -> dict[str, Any]:
    pm = get_or_404(req, req.path_params["id"], "payment_method", "PaymentMethod")
    if not pm.get("customer"):
        raise StripeError(
            f"The payment method {pm['id']} is not attached to a customer.", param="payment_method",
        )
    cus = req.store.get(pm["customer"], "customer")
    before = copy.deepcopy(pm)
    pm["customer"] = None
    if cus is not None and cus["invoice_settings"].get("default_payment_method") == pm["id"]:
        cbefore = copy.deepcopy(cus)
        cus["invoice_settings"]["default_payment_method"] = None
        emit("customer.updated", cus, diff(cbefore, cus))
    emit("payment_method.detached", pm, {"customer": before["customer"]})
    return pm


@route("GET", "/v1/payment_methods", "PaymentMethodListParams", returns="payment_method")
def list_payment_methods(req: Request) -> dict[str, Any]:
    p = req.params
    objs = req.store.all("payment_method")
    if "customer" in p:
        ref_or_400(req, p["customer"], "customer", "customer")
        objs = [o for o in objs if o.get("customer") == p["customer"]]
    else:
        objs = [o for o in objs if o.get("customer")]  # Stripe lists only attached ones here
    if "type" in p:
        objs = [o for o in objs if o["type"] == p["type"]]
    return list_response(req, objs, "/v1/payment_methods")


@route("GET", "/v1/customers/{customer}/payment_methods", "CustomerPaymentMethodListParams", returns="payment_method")
def list_customer_payment_methods(req: Request) -> dict[str, Any]:
    cus_id = req.path_params["customer"]
    get_or_404(req, cus_id, "customer")
    objs = [o for o in req.store.all("payment_method") if o.get("customer") == cus_id]
    if "type" in req.params:
        objs = [o for o in objs if o["type"] == req.params["type"]]
    return list_response(req, objs, f"/v1/customers/{cus_id}/payment_methods")


@route("GET", "/v1/customers/{customer}/payment_methods/{id}", "CustomerPaymentMethodRetrieveParams", returns="payment_method")
def retrieve_customer_payment_method(req: Request) -> dict[str, Any]:
    cus_id = req.path_params["customer"]
    get_or_404(req, cus_id, "customer")
    pm = req.store.get(req.path_params["id"], "payment_method")
    if pm is None or pm.get("customer") != cus_id:
        raise no_such("PaymentMethod", req.path_params["id"], "payment_method")
    return pm
