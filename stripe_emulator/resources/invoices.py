"""Invoices, invoice line items, invoice items and invoice payments (API version of the pinned SDK:
lines carry `parent`/`pricing`, invoices carry `parent.subscription_details`, payments are `invoice_payment`s).

Lifecycle: draft -> open (finalize) -> paid | uncollectible | void. Automatic collection charges the default
payment method through payments_core.charge_payment_method; failures follow the dunning schedule below.

Internal API used by subscriptions, checkout, the portal and test clocks:
`create_invoice`, `finalize_invoice`, `attempt_payment`, `subscription_item_line`, `invoice_item_obj`,
`add_pending_items`, `RETRY_SCHEDULE_DAYS`. Modules built on invoices react to payments through `PAID_HOOKS` and
`PAYMENT_FAILED_HOOKS` (invoices imports none of them).
"""
from __future__ import annotations

import copy
from decimal import ROUND_HALF_UP, Decimal
from typing import Any, Callable

from .. import registry
from ..errors import StripeError, state_error
from ..events import diff, emit
from ..helpers import apply_metadata, fmt_money, get_or_404, ref_or_400
from ..listing import created_filter, equal_filter, list_response, search_response
from ..registry import HtmlResponse, Request, includable, object_type, route
from ..state import new_id, random_token
from . import payments_core
from .billing_common import DAY, add_interval, esc, fmt_date, page
from .catalog import price_amount_for, price_offers_currency, price_unit_decimal_for
from .invoice_pdf import render_invoice_pdf
from .payment_methods import card_behaviour, create_card_payment_method

# What follows an invoice's payment outcome lives in the modules built on invoices (subscriptions move to
# active / past_due / canceled); they register here so that invoices never imports them and the import graph
# stays one-way (subscriptions -> invoices), like customers.DELETE_HOOKS.
# PAID_HOOKS: fn(req, invoice) after invoice.paid / invoice.payment_succeeded.
PAID_HOOKS: list[Callable[[Any, dict[str, Any]], None]] = []
# PAYMENT_FAILED_HOOKS: fn(req, invoice, *, final) after invoice.payment_failed; `final` = no retry is left.
PAYMENT_FAILED_HOOKS: list[Callable[..., None]] = []

object_type("invoice")
object_type("line_item")
object_type("invoiceitem")
object_type("invoice_payment")
object_type("deleted_invoice")
object_type("deleted_invoiceitem")
object_type("discount")

# Smart-Retries-like dunning: after a failed automatic payment, retry this many days after the FIRST failure.
# After the last retry fails the subscription becomes `canceled` (or `unpaid`, see
# `emulator.billing_settings["after_final_failure"]`).
RETRY_SCHEDULE_DAYS = (3, 5, 7)
# How long before a renewal `invoice.upcoming` is sent (Stripe's Dashboard setting; its default is 7 days).
UPCOMING_DAYS = 7


def billing_settings(emulator: Any) -> dict[str, Any]:
    """Per-emulator billing settings (POST /_emulator/billing_settings). Kept with the state, so a reset
    restores the defaults and a state file keeps them."""
    settings = emulator.store.private.get(_SETTINGS)
    if settings is None:
        settings = emulator.store.private[_SETTINGS] = {"after_final_failure": "cancel"}
    return settings


_SETTINGS = "__emu_b_billing_settings__"


# ------------------------------------------------------------------ helpers

def _now(req: Any, customer: str | None) -> int:
    return req.store.clock.now_for_customer(customer)


def product_name(store: Any, price: dict[str, Any]) -> str:
    prod = store.get(price.get("product"), "product")
    return prod["name"] if prod else "Item"


def unit_amount_in(store: Any, price: dict[str, Any], currency: str) -> int:
    amount = price_amount_for(store, price, currency)
    if amount is None:
        if not price_offers_currency(store, price, currency) and currency != price["currency"]:
            raise StripeError(
                f"The price specified ({price['id']}) does not support the currency `{currency}`.",
                param="currency")
        # A fractional unit amount (metered usage): the whole-unit figure shown per unit, rounded half up.
        amount = int((price_unit_decimal_for(store, price, currency) or Decimal(0)).to_integral_value(ROUND_HALF_UP))
    return amount


def price_label(store: Any, price: dict[str, Any], currency: str) -> str:
    amount = fmt_money(unit_amount_in(store, price, currency), currency)
    rec = price.get("recurring")
    if not rec:
        return amount
    every = rec["interval"] if rec["interval_count"] == 1 else f"{rec['interval_count']} {rec['interval']}s"
    return f"{amount} / {every}"


def _pricing(price: dict[str, Any] | None, unit_amount: int | str | Decimal | None) -> dict[str, Any]:
    return {
        "price_details": {"price": price["id"], "product": price["product"]} if price else None,
        "type": "price_details",
        "unit_amount_decimal": None if unit_amount is None else format(Decimal(str(unit_amount)).normalize(), "f"),
    }


def subscription_item_line(
    store: Any, *, sub: dict[str, Any], item: dict[str, Any], currency: str, period: tuple[int, int],
    quantity: int | None = None, amount: int | None = None, description: str | None = None,
    proration: bool = False, invoice_item: str | None = None,
) -> dict[str, Any]:
    """An invoice line (not yet attached to an invoice) billing a subscription item for `period`."""
    price = store.get(item["price"]["id"] if isinstance(item["price"], dict) else item["price"], "price")
    qty = item.get("quantity") if quantity is None else quantity
    unit_amount_in(store, price, currency)  # raises Stripe's "does not support the currency" error
    # Stripe multiplies the (possibly fractional) unit amount by the quantity, then rounds the line half up:
    # 1,500 calls at 0.2 cents is 300 cents, although each call alone rounds to 0.
    unit = price_unit_decimal_for(store, price, currency) or Decimal(0)
    if amount is None:
        amount = int((unit * (qty or 0)).to_integral_value(ROUND_HALF_UP))
    if description is None:
        description = f"{qty} × {product_name(store, price)} (at {price_label(store, price, currency)})"
    return {
        "id": new_id("il"),
        "object": "line_item",
        "amount": amount,
        "currency": currency,
        "description": description,
        "discount_amounts": [],
        "discountable": True,
        "discounts": [],
        "invoice": None,
        "livemode": False,
        "metadata": copy.deepcopy(sub.get("metadata") or {}),
        "parent": {
            "invoice_item_details": None,
            "subscription_item_details": {
                "invoice_item": invoice_item,
                "proration": proration,
                "proration_details": {"credited_items": None},
                "subscription": sub["id"],
                "subscription_item": item["id"],
            },
            "type": "subscription_item_details",
        },
        "period": {"end": period[1], "start": period[0]},
        "pretax_credit_amounts": [],
        "pricing": _pricing(price, unit),
        "quantity": qty,
        "quantity_decimal": str(qty) if qty is not None else None,
        "subscription": sub["id"],
        "subtotal": amount,
        "taxes": [],
    }


def _line_from_invoice_item(store: Any, ii: dict[str, Any]) -> dict[str, Any]:
    price_id = ((ii.get("pricing") or {}).get("price_details") or {}).get("price")
    price = store.get(price_id, "price") if price_id else None
    priv = store.private.get(ii["id"], {})
    sub_id = ((ii.get("parent") or {}).get("subscription_details") or {}).get("subscription")
    si_id = priv.get("subscription_item")
    if sub_id and si_id:
        parent = {
            "invoice_item_details": None,
            "subscription_item_details": {
                "invoice_item": ii["id"], "proration": ii["proration"],
                "proration_details": {"credited_items": None},
                "subscription": sub_id, "subscription_item": si_id,
            },
            "type": "subscription_item_details",
        }
    else:
        parent = {
            "invoice_item_details": {
                "invoice_item": ii["id"], "proration": ii["proration"],
                "proration_details": {"credited_items": None}, "subscription": sub_id,
            },
            "subscription_item_details": None,
            "type": "invoice_item_details",
        }
    return {
        "id": new_id("il"),
        "object": "line_item",
        "amount": ii["amount"],
        "currency": ii["currency"],
        "description": ii["description"],
        "discount_amounts": [],
        "discountable": ii["discountable"],
        "discounts": [],
        "invoice": None,
        "livemode": False,
        "metadata": copy.deepcopy(ii.get("metadata") or {}),
        "parent": parent,
        "period": copy.deepcopy(ii["period"]),
        "pretax_credit_amounts": [],
        "pricing": copy.deepcopy(ii["pricing"]) if ii.get("pricing") else _pricing(price, None),
        "quantity": ii["quantity"],
        "quantity_decimal": str(ii["quantity"]),
        "subscription": sub_id,
        "subtotal": ii["amount"],
        "taxes": [],
    }


def invoice_item_obj(
    req: Any, *, customer: str, amount: int, currency: str, description: str, period: tuple[int, int],
    price: dict[str, Any] | None = None, quantity: int = 1, proration: bool = False,
    subscription: str | None = None, subscription_item: str | None = None, discountable: bool = True,
    metadata: Any = None, unit_amount: int | None = None, emit_event: bool = True,
) -> dict[str, Any]:
    cus = req.store.get(customer, "customer")
    ii = {
        "id": new_id("ii"),
        "object": "invoiceitem",
        "amount": amount,
        "currency": currency,
        "customer": customer,
        "customer_account": None,
        "date": _now(req, customer),
        "description": description,
        "discountable": discountable and not proration,
        "discounts": [],
        "invoice": None,
        "livemode": False,
        "metadata": {},
        "net_amount": amount,
        "parent": {"subscription_details": {"subscription": subscription}, "type": "subscription_details"}
        if subscription else None,
        "period": {"end": period[1], "start": period[0]},
        "pricing": _pricing(price, unit_amount if unit_amount is not None else (amount // quantity if quantity else amount)),
        "proration": proration,
        "quantity": quantity,
        "quantity_decimal": str(quantity),
        "tax_rates": [],
        "test_clock": cus.get("test_clock") if cus else None,
    }
    apply_metadata(ii, metadata)
    req.store.add(ii, {"subscription_item": subscription_item})
    if emit_event:
        emit("invoiceitem.created", ii)
    return ii


# ------------------------------------------------------------------ invoice objects

def _customer_snapshot(cus: dict[str, Any]) -> dict[str, Any]:
    return {
        "customer_address": copy.deepcopy(cus.get("address")),
        "customer_email": cus.get("email"),
        "customer_name": cus.get("name"),
        "customer_phone": cus.get("phone"),
        "customer_shipping": copy.deepcopy(cus.get("shipping")),
        "customer_tax_exempt": cus.get("tax_exempt") or "none",
    }


def build_invoice(
    req: Any, *, customer: dict[str, Any], currency: str, billing_reason: str,
    subscription: dict[str, Any] | None = None, collection_method: str = "charge_automatically",
    auto_advance: bool | None = None, period: tuple[int, int] | None = None, description: str | None = None,
    days_until_due: int | None = None, default_payment_method: str | None = None, created: int | None = None,
) -> dict[str, Any]:
    now = created if created is not None else _now(req, customer["id"])
    inv_id = new_id("in")
    if auto_advance is None:
        auto_advance = billing_reason != "manual"
    inv: dict[str, Any] = {
        "id": inv_id,
        "object": "invoice",
        "account_country": "US",
        "account_name": "Stripe Emulator Test Account",
        "account_tax_ids": None,
        "amount_due": 0,
        "amount_overpaid": 0,
        "amount_paid": 0,
        "amount_remaining": 0,
        "amount_shipping": 0,
        "application": None,
        "attempt_count": 0,
        "attempted": False,
        "auto_advance": auto_advance,
        "automatic_tax": {"disabled_reason": None, "enabled": False, "liability": None, "provider": None, "status": None},
        "automatically_finalizes_at": (now + 3600) if auto_advance else None,
        "billing_reason": billing_reason,
        "collection_method": collection_method,
        "created": now,
        "currency": currency,
        "custom_fields": None,
        "customer": customer["id"],
        "customer_account": None,
        **_customer_snapshot(customer),
        "customer_tax_ids": [],
        "default_payment_method": default_payment_method,
        "default_source": None,
        "default_tax_rates": [],
        "description": description,
        "discounts": [],
        "due_date": (now + days_until_due * DAY) if collection_method == "send_invoice" and days_until_due is not None else None,
        "effective_at": None,
        "ending_balance": None,
        "footer": None,
        "from_invoice": None,
        "hosted_invoice_url": None,
        "invoice_pdf": None,
        "issuer": {"type": "self"},
        "last_finalization_error": None,
        "latest_revision": None,
        "lines": {"object": "list", "data": [], "has_more": False, "url": f"/v1/invoices/{inv_id}/lines"},
        "livemode": False,
        "metadata": {},
        "next_payment_attempt": None,
        "number": None,
        "on_behalf_of": None,
        "parent": {
            "quote_details": None,
            "subscription_details": {"metadata": copy.deepcopy(subscription.get("metadata") or {}),
                                     "subscription": subscription["id"]},
            "type": "subscription_details",
        } if subscription else None,
        "payment_settings": {"default_mandate": None, "payment_method_options": None, "payment_method_types": None},
        "period_end": period[1] if period else now,
        "period_start": period[0] if period else now,
        "post_payment_credit_notes_amount": 0,
        "pre_payment_credit_notes_amount": 0,
        "receipt_number": None,
        "rendering": None,
        "shipping_cost": None,
        "shipping_details": None,
        "starting_balance": 0,
        "statement_descriptor": None,
        "status": "draft",
        "status_transitions": {"finalized_at": None, "marked_uncollectible_at": None, "paid_at": None, "voided_at": None},
        # still in Stripe's example object for this API version beside parent.subscription_details
        "subscription": subscription["id"] if subscription else None,
        "subtotal": 0,
        "subtotal_excluding_tax": 0,
        "test_clock": customer.get("test_clock"),
        "total": 0,
        "total_discount_amounts": [],
        "total_excluding_tax": 0,
        "total_pretax_credit_amounts": [],
        "total_taxes": [],
        "webhooks_delivered_at": None,
    }
    return inv


def _lines(req: Any, inv: dict[str, Any]) -> list[dict[str, Any]]:
    return req.store.priv(inv["id"]).setdefault("lines", [])


def _discount_amount(coupon: dict[str, Any], base: int, currency: str) -> int:
    if coupon.get("percent_off") is not None:
        pct = Decimal(str(coupon["percent_off"]))
        return int((Decimal(base) * pct / 100).to_integral_value(ROUND_HALF_UP))
    if coupon.get("amount_off") is not None and (coupon.get("currency") or currency) == currency:
        return min(int(coupon["amount_off"]), base)
    return 0


def recompute(req: Any, inv: dict[str, Any]) -> None:
    """Totals, discounts and the embedded `lines` list from the invoice's stored lines."""
    store = req.store
    lines = _lines(req, inv)
    subtotal = sum(line["amount"] for line in lines)
    total_discounts: list[dict[str, Any]] = []
    for line in lines:
        line["discount_amounts"] = []
        line["discounts"] = []
    for disc_id in inv.get("discounts") or []:
        disc = store.get(disc_id, "discount")
        coupon = store.get((disc or {}).get("source", {}).get("coupon"), "coupon") if disc else None
        if coupon is None:
            continue
        eligible = [ln for ln in lines if ln["discountable"] and ln["amount"] > 0]
        base = sum(ln["amount"] for ln in eligible)
        amount = _discount_amount(coupon, base, inv["currency"])
        if amount <= 0:
            continue
        # Spread the discount over the eligible lines in proportion to their amounts; the last takes the rest.
        left = amount
        for i, ln in enumerate(eligible):
            share = left if i == len(eligible) - 1 else (amount * ln["amount"]) // base
            left -= share
            ln["discount_amounts"].append({"amount": share, "discount": disc_id})
            ln["discounts"].append(disc_id)
        total_discounts.append({"amount": amount, "discount": disc_id})
    discount_total = sum(d["amount"] for d in total_discounts)
    total = subtotal - discount_total
    inv["subtotal"] = subtotal
    inv["subtotal_excluding_tax"] = subtotal
    inv["total_discount_amounts"] = total_discounts
    inv["total"] = total
    inv["total_excluding_tax"] = total
    if inv["status"] == "draft":
        inv["amount_due"] = max(0, total + inv.get("starting_balance", 0))
        inv["amount_remaining"] = inv["amount_due"]
    for ln in lines:
        ln["invoice"] = inv["id"]
    inv["lines"] = {"object": "list", "data": copy.deepcopy(lines[:10]), "has_more": len(lines) > 10,
                    "url": f"/v1/invoices/{inv['id']}/lines"}


def add_pending_items(req: Any, inv: dict[str, Any], subscription: str | None = None) -> None:
    """Move the customer's pending invoice items (of `subscription` if given) onto the draft invoice."""
    for ii in reversed(req.store.all("invoiceitem")):  # oldest first
        if ii["customer"] != inv["customer"] or ii["invoice"] is not None or ii["currency"] != inv["currency"]:
            continue
        ii_sub = ((ii.get("parent") or {}).get("subscription_details") or {}).get("subscription")
        if subscription is not None and ii_sub not in (None, subscription):
            continue
        attach_invoice_item(req, inv, ii)


def attach_invoice_item(req: Any, inv: dict[str, Any], ii: dict[str, Any]) -> None:
    ii["invoice"] = inv["id"]
    line = _line_from_invoice_item(req.store, ii)
    req.store.priv(ii["id"])["line"] = line["id"]
    _lines(req, inv).append(line)


def create_invoice(
    req: Any, *, customer: dict[str, Any], currency: str, billing_reason: str,
    lines: list[dict[str, Any]] | None = None, subscription: dict[str, Any] | None = None,
    period: tuple[int, int] | None = None, pull_pending: bool = True, discounts: list[str] | None = None,
    collection_method: str = "charge_automatically", auto_advance: bool | None = None,
    default_payment_method: str | None = None, description: str | None = None,
    days_until_due: int | None = None, metadata: Any = None, emit_created: bool = True,
) -> dict[str, Any]:
    """A draft invoice with `lines` plus pending invoice items; emits invoice.created (unless the caller
    emits it itself, to put another event first as Stripe does)."""
    inv = build_invoice(req, customer=customer, currency=currency, billing_reason=billing_reason,
                        subscription=subscription, collection_method=collection_method, auto_advance=auto_advance,
                        period=period, description=description, days_until_due=days_until_due,
                        default_payment_method=default_payment_method)
    apply_metadata(inv, metadata)
    req.store.add(inv, {"lines": []})
    for line in lines or []:
        _lines(req, inv).append(line)
    if pull_pending:
        add_pending_items(req, inv, subscription["id"] if subscription else None)
    inv["discounts"] = list(discounts or [])
    recompute(req, inv)
    if emit_created:
        emit("invoice.created", inv)
    return inv


def finalize_invoice(req: Any, inv: dict[str, Any], *, emit_paid_if_zero: bool = True) -> None:
    """draft -> open: number, hosted URLs, customer balance applied; a zero amount due is paid at once."""
    store = req.store
    cus = store.get(inv["customer"], "customer")
    now = _now(req, inv["customer"])
    recompute(req, inv)
    if cus is not None:
        seq = cus.get("next_invoice_sequence") or 1
        inv["number"] = f"{cus['invoice_prefix']}-{seq:04d}"
        cus["next_invoice_sequence"] = seq + 1
        # Customer credit balance (negative) pays part of the invoice; a negative total becomes credit.
        balance = cus.get("balance") or 0
        inv["starting_balance"] = balance
        due = inv["total"] + balance
        inv["amount_due"] = max(0, due)
        inv["ending_balance"] = min(0, due) if (balance or due < 0) else 0
        if balance != inv["ending_balance"]:
            before = copy.deepcopy(cus)
            cus["balance"] = inv["ending_balance"]
            emit("customer.updated", cus, diff(before, cus))
    else:
        inv["amount_due"] = max(0, inv["total"])
        inv["ending_balance"] = 0
    inv["amount_remaining"] = inv["amount_due"]
    base = req.emulator.public_url
    inv["hosted_invoice_url"] = f"{base}/_emulator/invoices/{inv['id']}"
    inv["invoice_pdf"] = f"{base}/_emulator/invoices/{inv['id']}/pdf"
    inv["status"] = "open"
    inv["status_transitions"]["finalized_at"] = now
    inv["effective_at"] = now
    inv["automatically_finalizes_at"] = None
    if inv["collection_method"] == "charge_automatically" and inv["auto_advance"] and inv["amount_due"] > 0:
        inv["next_payment_attempt"] = now
    # coupons with duration "once" end once they have been applied to an invoice
    for disc_id in inv.get("discounts") or []:
        _consume_discount(req, disc_id, inv)
    emit("invoice.finalized", inv)
    if inv["amount_due"] == 0 and emit_paid_if_zero:
        mark_paid(req, inv, None)


def _consume_discount(req: Any, disc_id: str, inv: dict[str, Any]) -> None:
    disc = req.store.get(disc_id, "discount")
    if disc is None:
        return
    coupon = req.store.get(disc["source"]["coupon"], "coupon")
    if coupon is not None and coupon.get("duration") == "once" and disc.get("subscription"):
        sub = req.store.get(disc["subscription"], "subscription")
        if sub is not None and disc_id in (sub.get("discounts") or []):
            sub["discounts"] = [d for d in sub["discounts"] if d != disc_id]
            disc["end"] = _now(req, inv["customer"])


def _invoice_payment(req: Any, inv: dict[str, Any], pi: dict[str, Any] | None) -> dict[str, Any]:
    priv = req.store.priv(inv["id"])
    existing = req.store.get(priv.get("invoice_payment"), "invoice_payment")
    if existing is not None and existing["status"] == "open":
        if pi is not None:
            existing["payment"]["payment_intent"] = pi["id"]
        return existing
    ip = {
        "id": "inpay_" + random_token(24),
        "object": "invoice_payment",
        "amount_paid": None,
        "amount_requested": inv["amount_remaining"],
        "created": _now(req, inv["customer"]),
        "currency": inv["currency"],
        "invoice": inv["id"],
        "is_default": True,
        "livemode": False,
        "payment": {"payment_intent": pi["id"] if pi else None, "type": "payment_intent"},
        "status": "open",
        "status_transitions": {"canceled_at": None, "paid_at": None},
    }
    req.store.add(ip)
    priv["invoice_payment"] = ip["id"]
    return ip


def mark_paid(req: Any, inv: dict[str, Any], pi: dict[str, Any] | None, *, out_of_band: bool = False) -> None:
    now = _now(req, inv["customer"])
    amount = inv["amount_remaining"]
    if pi is not None or amount > 0:
        ip = _invoice_payment(req, inv, pi)
        ip["status"] = "paid"
        ip["amount_paid"] = amount
        ip["status_transitions"]["paid_at"] = now
        if out_of_band:
            ip["payment"] = {"payment_intent": None, "type": "out_of_band_payment"}
    inv["amount_paid"] += amount
    inv["amount_remaining"] = 0
    inv["status"] = "paid"
    inv["status_transitions"]["paid_at"] = now
    inv["next_payment_attempt"] = None
    inv["attempted"] = inv["attempted"] or amount > 0
    inv["auto_advance"] = False
    if pi is not None:
        emit("invoice_payment.paid", req.store.get(req.store.priv(inv["id"])["invoice_payment"]) or {})
    emit("invoice.paid", inv)
    emit("invoice.payment_succeeded", inv)
    for hook in PAID_HOOKS:
        hook(req, inv)


def payment_method_for(req: Any, inv: dict[str, Any]) -> str | None:
    if inv.get("default_payment_method"):
        return inv["default_payment_method"]
    sub_id = ((inv.get("parent") or {}).get("subscription_details") or {}).get("subscription")
    sub = req.store.get(sub_id, "subscription") if sub_id else None
    if sub is not None and sub.get("default_payment_method"):
        return sub["default_payment_method"]
    cus = req.store.get(inv["customer"], "customer")
    if cus is not None:
        return cus["invoice_settings"].get("default_payment_method")
    return None


def invoice_subscription(req: Any, inv: dict[str, Any]) -> dict[str, Any] | None:
    sub_id = ((inv.get("parent") or {}).get("subscription_details") or {}).get("subscription")
    return req.store.get(sub_id, "subscription") if sub_id else None


def attempt_payment(
    req: Any, inv: dict[str, Any], *, payment_method: str | None = None, off_session: bool = True,
    automatic: bool = True,
) -> dict[str, str] | None:
    """Charge an open invoice. Returns None when paid, else the decline fields {code, decline_code, message}.
    A 3-D Secure card on-session leaves the invoice's PaymentIntent `requires_action` (error code
    `invoice_payment_intent_requires_action`)."""
    store = req.store
    now = _now(req, inv["customer"])
    pm_id = payment_method or payment_method_for(req, inv)
    before = copy.deepcopy(inv)
    inv["attempted"] = True
    inv["attempt_count"] += 1
    priv = store.priv(inv["id"])
    pi = store.get(priv.get("payment_intent"), "payment_intent")
    if pm_id is None:
        err = {"code": "invoice_no_payment_method", "decline_code": "",
               "message": "There is no default payment method for this customer or subscription."}
        _payment_failed(req, inv, err, automatic, now, before)
        return err
    if pi is not None and pi["status"] in ("requires_payment_method", "requires_confirmation", "requires_action"):
        pm = payments_core.resolve_payment_method(req, pm_id)
        pi["payment_method"] = pm["id"]
        outcome = payments_core._confirm(req, pi, pm, off_session=off_session, return_url=None)
    else:
        sub = invoice_subscription(req, inv)
        outcome = payments_core.charge_payment_method(
            req, amount=inv["amount_remaining"], currency=inv["currency"], customer=inv["customer"],
            payment_method=pm_id, off_session=off_session,
            description="Subscription creation" if inv["billing_reason"] == "subscription_create"
            else ("Subscription update" if sub is not None else None),
        )
        pi = outcome.payment_intent
        priv["payment_intent"] = pi["id"]
    _invoice_payment(req, inv, pi)
    if pi["status"] == "succeeded":
        mark_paid(req, inv, pi)
        return None
    if pi["status"] == "requires_action":
        store.priv(pi["id"])["after_3ds_hook"] = "emu_b_invoice"
        store.priv(pi["id"])["invoice"] = inv["id"]
        return {"code": "invoice_payment_intent_requires_action", "decline_code": "",
                "message": "This payment requires additional user action before it can be completed successfully."}
    err = outcome.error or {"code": "card_declined", "decline_code": "generic_decline", "message": "Your card was declined."}
    _payment_failed(req, inv, err, automatic, now, before)
    return err


def _payment_failed(req: Any, inv: dict[str, Any], err: dict[str, str], automatic: bool, now: int,
                    before: dict[str, Any] | None = None) -> None:
    priv = req.store.priv(inv["id"])
    if automatic and inv["collection_method"] == "charge_automatically":
        first = priv.setdefault("first_failure_at", now)
        attempt = inv["attempt_count"]  # 1 = the first attempt failed
        if attempt <= len(RETRY_SCHEDULE_DAYS):
            inv["next_payment_attempt"] = first + RETRY_SCHEDULE_DAYS[attempt - 1] * DAY
        else:
            inv["next_payment_attempt"] = None
    emit("invoice.payment_failed", inv)
    if err.get("code") == "authentication_required":
        # an off-session charge needs the customer to authenticate (3-D Secure): Stripe asks for action
        emit("invoice.payment_action_required", inv)
    if before is not None:
        # attempt_count, attempted and next_payment_attempt changed (Stripe sends invoice.updated too)
        emit("invoice.updated", inv, diff(before, inv))
    final = automatic and inv["next_payment_attempt"] is None
    for hook in PAYMENT_FAILED_HOOKS:
        hook(req, inv, final=final)


def _after_3ds(req: Any, pi: dict[str, Any], approved: bool) -> Any:
    inv = req.store.get(req.store.private.get(pi["id"], {}).get("invoice"), "invoice")
    if inv is None or inv["status"] != "open":
        return None
    if pi["status"] == "succeeded":
        mark_paid(req, inv, pi)
    else:
        err = payments_core.decline_error_fields("3ds_failed")
        _payment_failed(req, inv, err, False, _now(req, inv["customer"]))
    hook = req.store.private.get(pi["id"], {}).get("after_invoice_3ds")
    if hook and hook in payments_core.AFTER_3DS_HOOKS:
        return payments_core.AFTER_3DS_HOOKS[hook](req, pi, approved)
    return None


payments_core.AFTER_3DS_HOOKS["emu_b_invoice"] = _after_3ds


def open_invoice_payment_intent(req: Any, inv: dict[str, Any], *, payment_method: str | None) -> dict[str, Any]:
    """Create the invoice's PaymentIntent without confirming it (payment_behavior=default_incomplete)."""
    pi = payments_core.build_payment_intent(req, {"amount": inv["amount_remaining"], "currency": inv["currency"],
                                                  "customer": inv["customer"], "description": "Subscription creation",
                                                  "capture_method": "automatic"})
    if payment_method:
        pi["payment_method"] = payment_method
        pi["status"] = "requires_confirmation"
    req.store.add(pi, {"invoice": inv["id"], "after_3ds_hook": "emu_b_invoice"})
    req.store.priv(inv["id"])["payment_intent"] = pi["id"]
    emit("payment_intent.created", pi)
    _invoice_payment(req, inv, pi)
    return pi


def _wrap_confirm_route() -> None:
    """When a client confirms an invoice's PaymentIntent itself (Elements flow after default_incomplete),
    the invoice follows the outcome: paid on success, payment_failed on a decline. Wraps EMU-A's confirm
    handler instead of editing it."""
    for r in registry.ROUTES:
        if r.method == "POST" and r.pattern == "/v1/payment_intents/{id}/confirm" and not getattr(r.handler, "_emu_b", False):
            original = r.handler

            def wrapped(req: Request, _orig: Any = original) -> Any:
                pi_id = req.path_params.get("id")
                inv = req.store.get(req.store.private.get(pi_id, {}).get("invoice"), "invoice")
                try:
                    return _orig(req)
                finally:
                    pi = req.store.get(pi_id, "payment_intent")
                    if inv is not None and pi is not None and inv["status"] == "open":
                        inv["attempted"] = True
                        if pi["status"] == "succeeded":
                            inv["attempt_count"] += 1
                            mark_paid(req, inv, pi)
                        elif pi["status"] == "requires_payment_method" and pi.get("last_payment_error"):
                            inv["attempt_count"] += 1
                            err = pi["last_payment_error"]
                            _payment_failed(req, inv, {"code": err.get("code") or "", "message": err.get("message") or "",
                                                       "decline_code": err.get("decline_code") or ""},
                                            False, _now(req, inv["customer"]))

            wrapped._emu_b = True  # type: ignore[attr-defined]
            r.handler = wrapped


_wrap_confirm_route()


def void_invoice(req: Any, inv: dict[str, Any]) -> None:
    before = copy.deepcopy(inv)
    inv["status"] = "void"
    inv["status_transitions"]["voided_at"] = _now(req, inv["customer"])
    inv["next_payment_attempt"] = None
    inv["auto_advance"] = False
    inv["amount_remaining"] = 0
    ip = req.store.get(req.store.priv(inv["id"]).get("invoice_payment"), "invoice_payment")
    if ip is not None and ip["status"] == "open":
        ip["status"] = "canceled"
        ip["status_transitions"]["canceled_at"] = inv["status_transitions"]["voided_at"]
    pi = req.store.get(req.store.priv(inv["id"]).get("payment_intent"), "payment_intent")
    if pi is not None and pi["status"] in ("requires_payment_method", "requires_confirmation", "requires_action"):
        payments_core.cancel_pi(req, pi, "void_invoice")
    emit("invoice.voided", inv, diff(before, inv))
    emit("invoice.updated", inv, diff(before, inv))


# ------------------------------------------------------------------ routes: invoices

def _get_invoice(req: Request, inv_id: str | None = None) -> dict[str, Any]:
    return get_or_404(req, inv_id or req.path_params["id"], "invoice")


@route("POST", "/v1/invoices", "InvoiceCreateParams", returns="invoice")
def create_invoice_route(req: Request) -> dict[str, Any]:
    p = req.params
    if not p.get("customer"):
        raise StripeError("Missing required param: customer.", code="parameter_missing", param="customer")
    cus = ref_or_400(req, p["customer"], "customer", "customer")
    sub = ref_or_400(req, p["subscription"], "subscription", "subscription") if p.get("subscription") else None
    currency = (p.get("currency") or (sub or {}).get("currency") or cus.get("currency") or "usd").lower()
    collection = p.get("collection_method", "charge_automatically")
    if collection == "send_invoice" and p.get("days_until_due") is None and p.get("due_date") is None:
        raise StripeError("Invoices with `collection_method=send_invoice` must have a `days_until_due` or `due_date`.",
                          param="days_until_due")
    if p.get("default_payment_method"):
        ref_or_400(req, p["default_payment_method"], "payment_method", "default_payment_method", "PaymentMethod")
    discounts = _discounts_param(req, p.get("discounts"), customer=cus["id"])
    inv = create_invoice(
        req, customer=cus, currency=currency, billing_reason="manual", subscription=sub,
        pull_pending=p.get("pending_invoice_items_behavior", "exclude") == "include",
        collection_method=collection, auto_advance=p.get("auto_advance", False),
        default_payment_method=p.get("default_payment_method"), description=p.get("description"),
        days_until_due=p.get("days_until_due"), metadata=p.get("metadata"), discounts=discounts,
    )
    if p.get("due_date"):
        inv["due_date"] = p["due_date"]
    if p.get("footer"):
        inv["footer"] = p["footer"]
    return inv


def _discounts_param(req: Any, value: Any, *, customer: str | None, subscription: str | None = None) -> list[str]:
    out: list[str] = []
    for i, d in enumerate(value or []):
        coupon_id = d.get("coupon")
        promo_id = d.get("promotion_code")
        if d.get("discount"):
            ref_or_400(req, d["discount"], "discount", f"discounts[{i}][discount]")
            out.append(d["discount"])
            continue
        if promo_id:
            promo = ref_or_400(req, promo_id, "promotion_code", f"discounts[{i}][promotion_code]", "promotion code")
            coupon_id = promo["promotion"]["coupon"]
        coupon = ref_or_400(req, coupon_id or "", "coupon", f"discounts[{i}][coupon]")
        out.append(new_discount(req, coupon=coupon, customer=customer, subscription=subscription, promotion_code=promo_id)["id"])
    return out


def new_discount(req: Any, *, coupon: dict[str, Any], customer: str | None, subscription: str | None = None,
                 promotion_code: str | None = None, checkout_session: str | None = None) -> dict[str, Any]:
    now = _now(req, customer)
    end = None
    if coupon.get("duration") == "repeating" and coupon.get("duration_in_months"):
        end = add_interval(now, "month", coupon["duration_in_months"])
    disc = {
        "id": "di_" + random_token(24),
        "object": "discount",
        "checkout_session": checkout_session,
        "customer": customer,
        "customer_account": None,
        "end": end,
        "invoice": None,
        "invoice_item": None,
        "promotion_code": promotion_code,
        "source": {"coupon": coupon["id"], "type": "coupon"},
        "start": now,
        "subscription": subscription,
        "subscription_item": None,
    }
    req.store.add(disc)
    coupon["times_redeemed"] += 1
    if coupon.get("max_redemptions") is not None and coupon["times_redeemed"] >= coupon["max_redemptions"]:
        coupon["valid"] = False
    if promotion_code:
        promo = req.store.get(promotion_code, "promotion_code")
        if promo is not None:
            promo["times_redeemed"] += 1
    return disc


@route("GET", "/v1/invoices/{id}", "InvoiceRetrieveParams", returns="invoice")
def retrieve_invoice(req: Request) -> dict[str, Any]:
    oid = req.path_params["id"]
    inv = req.store.get(oid, "invoice")
    if inv is None:
        if req.store.deleted.get(oid) == "invoice":
            return {"id": oid, "object": "invoice", "deleted": True}
        raise StripeError(f"No such invoice: '{oid}'", status=404, code="resource_missing", param="id")
    return inv


@route("POST", "/v1/invoices/{id}", "InvoiceUpdateParams", returns="invoice")
def update_invoice(req: Request) -> dict[str, Any]:
    inv = _get_invoice(req)
    p = req.params
    editable_after_finalize = {"metadata", "expand", "description", "footer", "auto_advance", "default_payment_method"}
    if inv["status"] != "draft" and any(k not in editable_after_finalize for k in p):
        bad = next(k for k in p if k not in editable_after_finalize)
        raise StripeError(f"Finalized invoices can't be updated in this way", code="invoice_not_editable", param=bad)
    if inv["status"] in ("paid", "void") and ("auto_advance" in p or "default_payment_method" in p):
        raise StripeError("Finalized invoices can't be updated in this way", code="invoice_not_editable")
    if p.get("default_payment_method"):
        ref_or_400(req, p["default_payment_method"], "payment_method", "default_payment_method", "PaymentMethod")
    discounts = _discounts_param(req, p["discounts"] or [], customer=inv["customer"]) if "discounts" in p else None
    before = copy.deepcopy(inv)
    for k in ("description", "footer"):
        if k in p:
            inv[k] = p[k] or None
    if "auto_advance" in p:
        inv["auto_advance"] = p["auto_advance"]
    if "default_payment_method" in p:
        inv["default_payment_method"] = p["default_payment_method"] or None
    if "collection_method" in p:
        inv["collection_method"] = p["collection_method"]
    if "days_until_due" in p:
        inv["due_date"] = inv["created"] + p["days_until_due"] * DAY
    if "due_date" in p:
        inv["due_date"] = p["due_date"] or None
    if discounts is not None:
        inv["discounts"] = discounts
        recompute(req, inv)
    apply_metadata(inv, p.get("metadata"))
    prev = diff(before, inv)
    if prev:
        emit("invoice.updated", inv, prev)
    return inv


@route("DELETE", "/v1/invoices/{id}", "InvoiceDeleteParams", returns="deleted_invoice")
def delete_invoice(req: Request) -> dict[str, Any]:
    inv = _get_invoice(req)
    if inv["status"] != "draft":
        raise state_error("You can only delete draft invoices.")
    for ii in req.store.all("invoiceitem"):
        if ii["invoice"] == inv["id"]:
            ii["invoice"] = None
    req.store.remove(inv["id"])
    emit("invoice.deleted", inv)
    return {"id": inv["id"], "object": "invoice", "deleted": True}


@route("POST", "/v1/invoices/{id}/finalize", "InvoiceFinalizeInvoiceParams", returns="invoice")
def finalize_route(req: Request) -> dict[str, Any]:
    inv = _get_invoice(req)
    if inv["status"] != "draft":
        raise state_error("This invoice is already finalized, you can't re-finalize a non-draft invoice.")
    if "auto_advance" in req.params:
        inv["auto_advance"] = req.params["auto_advance"]
    finalize_invoice(req, inv)
    return inv


@route("POST", "/v1/invoices/{id}/pay", "InvoicePayParams", returns="invoice")
def pay_route(req: Request) -> dict[str, Any]:
    inv = _get_invoice(req)
    p = req.params
    if inv["status"] == "void":
        raise state_error("Voided invoices cannot be paid.")
    if inv["status"] == "paid":
        raise state_error("Invoice is already paid.")
    if inv["status"] == "draft":
        finalize_invoice(req, inv)
        if inv["status"] == "paid":
            return inv
    if p.get("paid_out_of_band"):
        mark_paid(req, inv, None, out_of_band=True)
        return inv
    pm = p.get("payment_method")
    if pm:
        payments_core.resolve_payment_method(req, pm)
    err = attempt_payment(req, inv, payment_method=pm, off_session=p.get("off_session", True), automatic=False)
    if err is not None:
        pi = req.store.get(req.store.priv(inv["id"]).get("payment_intent"), "payment_intent")
        if err["code"] == "invoice_no_payment_method":
            raise StripeError("Cannot charge a customer that has no active card", param="payment_method",
                              code="missing", status=402, type="card_error")
        if err["code"] == "invoice_payment_intent_requires_action":
            raise StripeError(err["message"], status=402, type="card_error", code=err["code"],
                              extra={"payment_intent": copy.deepcopy(pi)} if pi else None)
        raise StripeError(err["message"], status=402, type="card_error", code=err["code"],
                          decline_code=err.get("decline_code") or None,
                          extra={"payment_intent": copy.deepcopy(pi)} if pi else None)
    return inv


@route("POST", "/v1/invoices/{id}/void", "InvoiceVoidInvoiceParams", returns="invoice")
def void_route(req: Request) -> dict[str, Any]:
    inv = _get_invoice(req)
    if inv["status"] not in ("open", "uncollectible"):
        raise state_error(f"You can only void invoices that are open or uncollectible; this invoice is {inv['status']}.")
    void_invoice(req, inv)
    return inv


@route("POST", "/v1/invoices/{id}/mark_uncollectible", "InvoiceMarkUncollectibleParams", returns="invoice")
def mark_uncollectible_route(req: Request) -> dict[str, Any]:
    inv = _get_invoice(req)
    if inv["status"] != "open":
        raise state_error(f"You can only mark open invoices as uncollectible; this invoice is {inv['status']}.")
    before = copy.deepcopy(inv)
    inv["status"] = "uncollectible"
    inv["status_transitions"]["marked_uncollectible_at"] = _now(req, inv["customer"])
    inv["next_payment_attempt"] = None
    inv["auto_advance"] = False
    emit("invoice.marked_uncollectible", inv, diff(before, inv))
    emit("invoice.updated", inv, diff(before, inv))
    return inv


@route("POST", "/v1/invoices/{id}/send", "InvoiceSendInvoiceParams", returns="invoice")
def send_route(req: Request) -> dict[str, Any]:
    inv = _get_invoice(req)
    if inv["collection_method"] != "send_invoice":
        raise state_error("You can only manually send an invoice if its collection method is 'send_invoice'.")
    if inv["status"] == "draft":
        finalize_invoice(req, inv)
    emit("invoice.sent", inv)
    return inv


@route("GET", "/v1/invoices/{id}/lines", "InvoiceLineItemListParams", returns="line_item")
def list_lines(req: Request) -> dict[str, Any]:
    inv = _get_invoice(req)
    return list_response(req, copy.deepcopy(_lines(req, inv)), f"/v1/invoices/{inv['id']}/lines")


@route("GET", "/v1/invoices", "InvoiceListParams", returns="invoice")
def list_invoices(req: Request) -> dict[str, Any]:
    p = req.params
    objs = req.store.all("invoice")
    objs = equal_filter(objs, p, ("customer", "status", "collection_method"))
    if "subscription" in p:
        objs = [o for o in objs if ((o.get("parent") or {}).get("subscription_details") or {}).get("subscription") == p["subscription"]]
    objs = created_filter(objs, p.get("created"))
    objs = created_filter(objs, p.get("due_date"), key="due_date")
    return list_response(req, objs, "/v1/invoices")


@route("GET", "/v1/invoices/search", "InvoiceSearchParams", returns="invoice")
def search_invoices(req: Request) -> dict[str, Any]:
    objs = req.store.all("invoice")
    # `subscription` stays searchable although it now lives under parent.subscription_details
    view = [dict(o, subscription=((o.get("parent") or {}).get("subscription_details") or {}).get("subscription"))
            for o in objs]
    res = search_response(req, view, {"created", "currency", "customer", "metadata", "number", "receipt_number",
                                       "status", "subscription", "total"})
    res["data"] = [req.store.objects[o["id"]] for o in res["data"]]
    return res


@includable("invoice", "payments")
def _payments(store: Any, inv: dict[str, Any]) -> dict[str, Any]:
    objs = [ip for ip in store.all("invoice_payment") if ip["invoice"] == inv["id"]]
    return {"object": "list", "data": copy.deepcopy(objs), "has_more": False,
            "url": f"/v1/invoice_payments?invoice={inv['id']}"}


# ------------------------------------------------------------------ invoice payments

@route("GET", "/v1/invoice_payments/{id}", "InvoicePaymentRetrieveParams", returns="invoice_payment")
def retrieve_invoice_payment(req: Request) -> dict[str, Any]:
    return get_or_404(req, req.path_params["id"], "invoice_payment", "invoice payment")


@route("GET", "/v1/invoice_payments", "InvoicePaymentListParams", returns="invoice_payment")
def list_invoice_payments(req: Request) -> dict[str, Any]:
    p = req.params
    objs = req.store.all("invoice_payment")
    if "invoice" in p:
        objs = [o for o in objs if o["invoice"] == p["invoice"]]
    if "status" in p:
        objs = [o for o in objs if o["status"] == p["status"]]
    if "payment" in p:
        pay = p["payment"]
        objs = [o for o in objs if o["payment"].get("payment_intent") == pay.get("payment_intent")]
    return list_response(req, objs, "/v1/invoice_payments")


# ------------------------------------------------------------------ invoice items

@route("POST", "/v1/invoiceitems", "InvoiceItemCreateParams", returns="invoiceitem")
def create_invoice_item(req: Request) -> dict[str, Any]:
    p = req.params
    cus = ref_or_400(req, p["customer"], "customer", "customer")
    inv = None
    if p.get("invoice"):
        inv = ref_or_400(req, p["invoice"], "invoice", "invoice")
        if inv["status"] != "draft":
            raise StripeError("You can only add invoice items to draft invoices.", code="invoice_not_editable",
                              param="invoice")
    sub_id = p.get("subscription")
    if sub_id:
        ref_or_400(req, sub_id, "subscription", "subscription")
    quantity = p.get("quantity", 1)
    price = None
    pricing = p.get("pricing") or {}
    price_id = pricing.get("price")
    if price_id:
        price = ref_or_400(req, price_id, "price", "pricing[price]")
    if price is not None:
        currency = (p.get("currency") or price["currency"]).lower()
        unit = unit_amount_in(req.store, price, currency)
        amount = unit * quantity
        description = p.get("description") or product_name(req.store, price)
    else:
        if "amount" not in p and "unit_amount_decimal" not in p and not p.get("price_data"):
            raise StripeError("Missing required param: amount.", code="parameter_missing", param="amount")
        currency = (p.get("currency") or (inv or {}).get("currency") or cus.get("currency") or "usd").lower()
        if p.get("price_data"):
            pdata = p["price_data"]
            unit = pdata.get("unit_amount") or int(Decimal(pdata.get("unit_amount_decimal") or "0"))
            amount = unit * quantity
            currency = pdata["currency"].lower()
        elif "amount" in p:
            amount, unit = p["amount"], p["amount"]
        else:
            unit = int(Decimal(p["unit_amount_decimal"]).to_integral_value(ROUND_HALF_UP))
            amount = unit * quantity
        description = p.get("description") or "Invoice item"
    now = _now(req, cus["id"])
    period = p.get("period") or {}
    ii = invoice_item_obj(
        req, customer=cus["id"], amount=amount, currency=currency, description=description,
        period=(period.get("start", now), period.get("end", now)), price=price, quantity=quantity,
        subscription=sub_id, discountable=p.get("discountable", True), metadata=p.get("metadata"),
        unit_amount=unit, emit_event=False,
    )
    if inv is not None:
        attach_invoice_item(req, inv, ii)
        recompute(req, inv)
    emit("invoiceitem.created", ii)
    return ii


@route("GET", "/v1/invoiceitems/{id}", "InvoiceItemRetrieveParams", returns="invoiceitem")
def retrieve_invoice_item(req: Request) -> dict[str, Any]:
    return get_or_404(req, req.path_params["id"], "invoiceitem", "invoiceitem")


@route("POST", "/v1/invoiceitems/{id}", "InvoiceItemUpdateParams", returns="invoiceitem")
def update_invoice_item(req: Request) -> dict[str, Any]:
    ii = get_or_404(req, req.path_params["id"], "invoiceitem", "invoiceitem")
    inv = req.store.get(ii["invoice"], "invoice") if ii["invoice"] else None
    p = req.params
    if inv is not None and inv["status"] != "draft" and any(k != "metadata" for k in p if k != "expand"):
        raise StripeError("You can only update invoice items on draft invoices.", code="invoice_not_editable")
    before = copy.deepcopy(ii)
    if "description" in p:
        ii["description"] = p["description"]
    if "quantity" in p or "amount" in p:
        if "amount" in p:
            ii["amount"] = p["amount"]
        else:
            unit = int(ii["pricing"].get("unit_amount_decimal") or 0)
            ii["quantity"] = p["quantity"]
            ii["quantity_decimal"] = str(p["quantity"])
            ii["amount"] = unit * p["quantity"]
        ii["net_amount"] = ii["amount"]
    if "discountable" in p:
        ii["discountable"] = p["discountable"]
    apply_metadata(ii, p.get("metadata"))
    if inv is not None:
        line_id = req.store.priv(ii["id"]).get("line")
        lines = _lines(req, inv)
        for i, ln in enumerate(lines):
            if ln["id"] == line_id:
                new = _line_from_invoice_item(req.store, ii)
                new["id"] = line_id
                lines[i] = new
        recompute(req, inv)
    prev = diff(before, ii)
    if prev:
        emit("invoiceitem.updated", ii, prev)
    return ii


@route("DELETE", "/v1/invoiceitems/{id}", "InvoiceItemDeleteParams", returns="deleted_invoiceitem")
def delete_invoice_item(req: Request) -> dict[str, Any]:
    ii = get_or_404(req, req.path_params["id"], "invoiceitem", "invoiceitem")
    inv = req.store.get(ii["invoice"], "invoice") if ii["invoice"] else None
    if inv is not None:
        if inv["status"] != "draft":
            raise StripeError("You can only delete invoice items on draft invoices.", code="invoice_not_editable")
        line_id = req.store.priv(ii["id"]).get("line")
        req.store.priv(inv["id"])["lines"] = [ln for ln in _lines(req, inv) if ln["id"] != line_id]
        recompute(req, inv)
    req.store.remove(ii["id"])
    emit("invoiceitem.deleted", ii)
    return {"id": ii["id"], "object": "invoiceitem", "deleted": True}


@route("GET", "/v1/invoiceitems", "InvoiceItemListParams", returns="invoiceitem")
def list_invoice_items(req: Request) -> dict[str, Any]:
    p = req.params
    objs = req.store.all("invoiceitem")
    if "customer" in p:
        objs = [o for o in objs if o["customer"] == p["customer"]]
    if "invoice" in p:
        objs = [o for o in objs if o["invoice"] == p["invoice"]]
    if p.get("pending"):
        objs = [o for o in objs if o["invoice"] is None]
    objs = created_filter(objs, p.get("created"), key="date")
    return list_response(req, objs, "/v1/invoiceitems")


# ------------------------------------------------------------------ hosted invoice page and PDF

def _invoice_rows(req: Any, inv: dict[str, Any]) -> list[tuple[str, str, str]]:
    rows = []
    for ln in _lines(req, inv):
        period = f"{fmt_date(ln['period']['start'])} – {fmt_date(ln['period']['end'])}" if ln["period"]["start"] != ln["period"]["end"] else ""
        rows.append((ln["description"] or "", period, fmt_money(ln["amount"], inv["currency"])))
    return rows


@route("GET", "/_emulator/invoices/{id}", auth=False)
def hosted_invoice_page(req: Request) -> HtmlResponse:
    inv = req.store.get(req.path_params["id"], "invoice")
    if inv is None or inv["status"] == "draft":
        return HtmlResponse(page("Invoice", "<div class='main'><h1>Invoice not found</h1></div>"), status=404)
    return _hosted_page(req, inv)


def _hosted_page(req: Any, inv: dict[str, Any], *, error: str | None = None, status_code: int = 200) -> HtmlResponse:
    cur = inv["currency"]
    rows = "".join(f"<tr><td>{esc(d)}<div class='muted'>{esc(p)}</div></td><td class='r'>{esc(a)}</td></tr>"
                   for d, p, a in _invoice_rows(req, inv))
    for d in inv["total_discount_amounts"]:
        rows += f"<tr><td>Discount</td><td class='r'>-{esc(fmt_money(d['amount'], cur))}</td></tr>"
    status = {"paid": "Paid", "open": "Due", "void": "Void", "uncollectible": "Uncollectible"}[inv["status"]]
    pay_form = ""
    if inv["status"] in ("open", "uncollectible") and inv["amount_remaining"] > 0:
        msg = f"<div class='error' id='error' role='alert'>{esc(error)}</div>" if error else ""
        pay_form = (
            "<h2>Pay this invoice</h2>" + msg +
            f"<form method='post' id='pay-form' action='/_emulator/invoices/{esc(inv['id'])}/pay'>"
            "<label for='card_number'>Card information</label>"
            "<input id='card_number' name='card_number' value='4242 4242 4242 4242'>"
            "<div class='row'><div><label for='card_expiry'>Expiry</label><input id='card_expiry' name='card_expiry' "
            "value='12 / 34'></div><div><label for='card_cvc'>CVC</label><input id='card_cvc' name='card_cvc' "
            f"value='123'></div></div><button id='pay'>Pay {esc(fmt_money(inv['amount_remaining'], cur))}</button></form>")
    body = (
        "<div class='wrap'><div class='side'><div class='brand'>Stripe Emulator Test Account</div>"
        f"<div class='muted'>Invoice {esc(inv['number'])}</div>"
        f"<div class='total' id='amount-due'>{esc(fmt_money(inv['amount_due'], cur))}</div>"
        f"<p><span class='badge' id='status'>{status}</span></p>"
        f"<p class='muted'>Billed to {esc(inv.get('customer_email') or inv.get('customer_name') or inv['customer'])}</p>"
        f"<a class='btn secondary' id='download-pdf' href='/_emulator/invoices/{esc(inv['id'])}/pdf'>Download invoice (PDF)</a>"
        "</div><div class='main'><h1>Invoice details</h1>"
        f"<table>{rows}<tr><td><strong>Total</strong></td><td class='r'><strong>{esc(fmt_money(inv['total'], cur))}</strong></td></tr>"
        f"<tr><td>Amount paid</td><td class='r'>{esc(fmt_money(inv['amount_paid'], cur))}</td></tr></table>"
        + pay_form + "</div></div>"
    )
    return HtmlResponse(page(f"Invoice {inv['number']}", body), status=status_code)


@route("POST", "/_emulator/invoices/{id}/pay", auth=False, idempotent=False)
def hosted_invoice_pay(req: Request) -> HtmlResponse:
    """The hosted invoice page's card form: pays the invoice with a new card (not saved to the customer)."""
    inv = req.store.get(req.path_params["id"], "invoice")
    if inv is None or inv["status"] == "draft":
        return HtmlResponse(page("Invoice", "<div class='main'><h1>Invoice not found</h1></div>"), status=404)
    if inv["status"] not in ("open", "uncollectible"):
        return _hosted_page(req, inv, error=None, status_code=409)
    form = {k: (v[0] if isinstance(v, list) and v else (v if isinstance(v, str) else "")) for k, v in req.params.items()}
    number = (form.get("card_number") or "").replace(" ", "").replace("-", "")
    try:
        mm, yy = (form.get("card_expiry") or "12/34").replace(" ", "").split("/")
        pm = create_card_payment_method(req, number=number, exp_month=int(mm), exp_year=int(yy))
    except ValueError:
        return _hosted_page(req, inv, error="Your card's expiration date is incomplete.", status_code=400)
    except StripeError as exc:
        return _hosted_page(req, inv, error=exc.message, status_code=402)
    if card_behaviour(req, pm["id"]) in ("decline", "insufficient_funds", "lost_card", "expired", "incorrect_cvc"):
        msg = payments_core.decline_error_fields(card_behaviour(req, pm["id"]))["message"]
        req.store.remove(pm["id"])
        return _hosted_page(req, inv, error=msg, status_code=402)
    err = attempt_payment(req, inv, payment_method=pm["id"], off_session=False, automatic=False)
    if err is not None and err["code"] == "invoice_payment_intent_requires_action":
        pi = req.store.get(req.store.priv(inv["id"]).get("payment_intent"), "payment_intent")
        if pi is not None:
            req.store.priv(pi["id"])["return_url"] = inv["hosted_invoice_url"]
            return HtmlResponse.redirect(f"{req.emulator.public_url}/_emulator/3ds/{pi['id']}")
    if err is not None:
        return _hosted_page(req, inv, error=err["message"], status_code=402)
    return HtmlResponse.redirect(inv["hosted_invoice_url"])


@route("GET", "/_emulator/invoices/{id}/pdf", auth=False)
def invoice_pdf(req: Request) -> HtmlResponse:
    inv = req.store.get(req.path_params["id"], "invoice")
    if inv is None or inv["status"] == "draft":
        return HtmlResponse(b"not found", status=404, content_type="text/plain")
    cur = inv["currency"]
    lines = [(d + (f"  ({p})" if p else ""), a) for d, p, a in _invoice_rows(req, inv)]
    for d in inv["total_discount_amounts"]:
        lines.append(("Discount", "-" + fmt_money(d["amount"], cur)))
    body = render_invoice_pdf(
        title=f"Invoice {inv['number']}",
        header=[
            "Stripe Emulator Test Account",
            f"Invoice number: {inv['number']}",
            f"Date of issue: {fmt_date(inv['status_transitions']['finalized_at'] or inv['created'])}",
            f"Bill to: {inv.get('customer_name') or ''} {inv.get('customer_email') or inv['customer']}".strip(),
            f"Status: {inv['status']}",
        ],
        lines=lines,
        totals=[("Subtotal", fmt_money(inv["subtotal"], cur)), ("Total", fmt_money(inv["total"], cur)),
                ("Amount paid", fmt_money(inv["amount_paid"], cur)),
                ("Amount due", fmt_money(inv["amount_remaining"], cur))],
    )
    return HtmlResponse(body, content_type="application/pdf",
                        headers={"Content-Disposition": f"inline; filename=\"Invoice-{inv['number']}.pdf\""})


# ------------------------------------------------------------------ control: billing settings

@route("POST", "/_emulator/billing_settings", auth=False, idempotent=False)
def set_billing_settings(req: Request) -> dict[str, Any]:
    settings = billing_settings(req.emulator)
    value = req.params.get("after_final_failure")
    if isinstance(value, list):
        value = value[0] if value else None
    if value is not None:
        if value not in ("cancel", "unpaid", "past_due"):
            raise StripeError("after_final_failure must be cancel, unpaid or past_due", param="after_final_failure")
        settings["after_final_failure"] = value
    return dict(settings)


@route("GET", "/_emulator/billing_settings", auth=False)
def get_billing_settings(req: Request) -> dict[str, Any]:
    return dict(billing_settings(req.emulator))


__all__ = ["create_invoice", "finalize_invoice", "attempt_payment", "subscription_item_line", "invoice_item_obj",
           "add_pending_items", "RETRY_SCHEDULE_DAYS", "billing_settings", "PAID_HOOKS", "PAYMENT_FAILED_HOOKS"]
