"""Credit notes (`/v1/credit_notes`) and the customer balance transactions they write.

A credit note adjusts a finalized (open or paid) invoice. Its total first reduces the invoice's
`amount_remaining` (`pre_payment_amount`, never below zero; an open invoice brought to zero is paid); the rest
(`post_payment_amount`) must be split exactly into `refund_amount` (a Refund on the invoice's charge, through
refunds.refund_charge), `credit_amount` (a `customer_balance_transaction` of type `credit_note`, so the
customer's balance goes down and pays the next invoice) and `out_of_band_amount`. Amounts are integer minor units.
The total comes from `lines` (an invoice line by `amount` or `quantity`, or a custom line `unit_amount` x
`quantity`) or from `amount`; together they must agree. Everything credited on an invoice, and on each of its
lines, is capped by what is left to credit (voided notes give theirs back).

Voiding gives back what the note did on the invoice and the balance (a second `credit_note` balance
transaction); a refund cannot be taken back, so a note with a refund cannot be voided.
"""
from __future__ import annotations

import copy
from decimal import ROUND_HALF_UP, Decimal
from typing import Any

from ..errors import StripeError, state_error
from ..events import diff, emit
from ..helpers import apply_metadata, fmt_money, get_or_404, ref_or_400
from ..listing import created_filter, list_response
from ..registry import HtmlResponse, Request, object_type, route
from ..state import new_id
from . import invoices as inv_mod
from .invoice_pdf import render_invoice_pdf
from .refunds import refund_charge

object_type("credit_note")
object_type("credit_note_line_item")
object_type("customer_balance_transaction")

# Credit note reasons that have a Refund reason of the same meaning; the others refund as requested_by_customer.
_REFUND_REASONS = {"duplicate": "duplicate", "fraudulent": "fraudulent"}


# ------------------------------------------------------------------ customer balance transactions

def add_customer_balance_transaction(req: Any, *, customer: dict[str, Any], amount: int, currency: str, type: str,
                               credit_note: str | None = None, invoice: str | None = None,
                               description: str | None = None, metadata: Any = None) -> dict[str, Any]:
    """Append to the customer's balance ledger and move `customer.balance` by `amount` (negative = credit the
    customer can spend on the next invoice). Emits customer.updated for the balance change."""
    before = copy.deepcopy(customer)
    customer["balance"] = (customer.get("balance") or 0) + amount
    txn = {
        "id": new_id("cbtxn"),
        "object": "customer_balance_transaction",
        "amount": amount,
        "checkout_session": None,
        "created": req.store.clock.now_for_customer(customer["id"]),
        "credit_note": credit_note,
        "currency": currency,
        "customer": customer["id"],
        "customer_account": None,
        "description": description,
        "ending_balance": customer["balance"],
        "invoice": invoice,
        "livemode": False,
        "metadata": {},
        "type": type,
    }
    apply_metadata(txn, metadata)
    req.store.add(txn)
    emit("customer.updated", customer, diff(before, customer))
    return txn


@route("GET", "/v1/customers/{customer}/balance_transactions", "CustomerBalanceTransactionListParams",
       returns="customer_balance_transaction")
def list_balance_transactions(req: Request) -> dict[str, Any]:
    cus = get_or_404(req, req.path_params["customer"], "customer", param="customer")
    objs = [t for t in req.store.all("customer_balance_transaction") if t["customer"] == cus["id"]]
    p = req.params
    if "credit_note" in p:
        objs = [t for t in objs if t["credit_note"] == p["credit_note"]]
    if "invoice" in p:
        objs = [t for t in objs if t["invoice"] == p["invoice"]]
    objs = created_filter(objs, p.get("created"))
    return list_response(req, objs, f"/v1/customers/{cus['id']}/balance_transactions")


@route("GET", "/v1/customers/{customer}/balance_transactions/{transaction}",
       "CustomerBalanceTransactionRetrieveParams", returns="customer_balance_transaction")
def retrieve_balance_transaction(req: Request) -> dict[str, Any]:
    cus = get_or_404(req, req.path_params["customer"], "customer", param="customer")
    txn = get_or_404(req, req.path_params["transaction"], "customer_balance_transaction",
                     "customer balance transaction")
    if txn["customer"] != cus["id"]:
        raise StripeError(f"No such customer balance transaction: '{txn['id']}'", status=404,
                          code="resource_missing", param="transaction")
    return txn


@route("POST", "/v1/customers/{customer}/balance_transactions", "CustomerBalanceTransactionCreateParams",
       returns="customer_balance_transaction")
def create_balance_transaction_route(req: Request) -> dict[str, Any]:
    cus = get_or_404(req, req.path_params["customer"], "customer", param="customer")
    p = req.params
    if p["amount"] == 0:
        raise StripeError("The amount must be a non-zero integer.", param="amount")
    return add_customer_balance_transaction(req, customer=cus, amount=p["amount"], currency=p["currency"].lower(),
                                      type="adjustment", description=p.get("description"),
                                      metadata=p.get("metadata"))


@route("POST", "/v1/customers/{customer}/balance_transactions/{transaction}",
       "CustomerBalanceTransactionUpdateParams", returns="customer_balance_transaction")
def update_balance_transaction(req: Request) -> dict[str, Any]:
    txn = retrieve_balance_transaction(req)
    p = req.params
    if "description" in p:
        txn["description"] = p["description"] or None
    apply_metadata(txn, p.get("metadata"))
    return txn


# ------------------------------------------------------------------ computing a credit note

def _credited(req: Any, inv_id: str) -> list[dict[str, Any]]:
    return [cn for cn in req.store.all("credit_note") if cn["invoice"] == inv_id and cn["status"] != "void"]


def _line_unit(line: dict[str, Any]) -> Decimal:
    unit = ((line.get("pricing") or {}).get("unit_amount_decimal"))
    if unit is not None:
        return Decimal(str(unit))
    return Decimal(line["amount"]) / Decimal(line.get("quantity") or 1)


def _build_lines(req: Any, inv: dict[str, Any], p: dict[str, Any], cn_id: str) -> list[dict[str, Any]]:
    inv_lines = {ln["id"]: ln for ln in inv_mod._lines(req, inv)}
    credited_per_line: dict[str, int] = {}
    for cn in _credited(req, inv["id"]):
        for ln in req.store.priv(cn["id"]).get("lines", []):
            if ln["invoice_line_item"]:
                credited_per_line[ln["invoice_line_item"]] = credited_per_line.get(ln["invoice_line_item"], 0) + ln["amount"]
    out = []
    for i, lp in enumerate(p.get("lines") or []):
        prefix = f"lines[{i}]"
        line = {
            "id": new_id("cnli"), "object": "credit_note_line_item", "amount": 0, "description": lp.get("description"),
            "discount_amount": 0, "discount_amounts": [], "invoice_line_item": None, "livemode": False,
            "metadata": dict(lp.get("metadata") or {}), "pretax_credit_amounts": [], "quantity": lp.get("quantity"),
            "tax_rates": [], "taxes": [], "type": lp["type"], "unit_amount": None, "unit_amount_decimal": None,
        }
        if lp["type"] == "invoice_line_item":
            il_id = lp.get("invoice_line_item")
            if not il_id:
                raise StripeError(f"Missing required param: {prefix}[invoice_line_item].", code="parameter_missing",
                                  param=f"{prefix}[invoice_line_item]")
            il = inv_lines.get(il_id)
            if il is None:
                raise StripeError(f"Invoice line item {il_id} is not on invoice {inv['id']}.", code="resource_missing",
                                  param=f"{prefix}[invoice_line_item]")
            if ("amount" in lp) == ("quantity" in lp):
                raise StripeError(f"You must pass exactly one of {prefix}[amount] or {prefix}[quantity].",
                                  param=f"{prefix}[amount]")
            if "amount" in lp:
                amount = lp["amount"]
            else:
                amount = int((_line_unit(il) * lp["quantity"]).to_integral_value(ROUND_HALF_UP))
            left = il["amount"] - credited_per_line.get(il_id, 0)
            if amount <= 0 or amount > left:
                raise StripeError(
                    f"The credit amount for line {il_id} ({fmt_money(amount, inv['currency'])}) must be positive and "
                    f"at most the amount left to credit on it ({fmt_money(left, inv['currency'])}).",
                    param=f"{prefix}[amount]")
            credited_per_line[il_id] = credited_per_line.get(il_id, 0) + amount
            line.update(amount=amount, invoice_line_item=il_id, description=lp.get("description") or il.get("description"),
                        quantity=lp.get("quantity", il.get("quantity") if "quantity" in lp else None))
        else:
            if "unit_amount" not in lp and "unit_amount_decimal" not in lp:
                raise StripeError(f"Missing required param: {prefix}[unit_amount].", code="parameter_missing",
                                  param=f"{prefix}[unit_amount]")
            if not lp.get("description"):
                raise StripeError(f"Missing required param: {prefix}[description].", code="parameter_missing",
                                  param=f"{prefix}[description]")
            unit = Decimal(str(lp.get("unit_amount", lp.get("unit_amount_decimal"))))
            qty = lp.get("quantity", 1)
            amount = int((unit * qty).to_integral_value(ROUND_HALF_UP))
            if amount <= 0:
                raise StripeError("A custom credit note line must have a positive amount.", param=f"{prefix}[unit_amount]")
            line.update(amount=amount, quantity=qty, unit_amount=int(unit) if unit == unit.to_integral_value() else None,
                        unit_amount_decimal=format(unit.normalize(), "f"))
        out.append(line)
    return out


def _compute(req: Any, p: dict[str, Any], *, preview: bool) -> tuple[dict[str, Any], list[dict[str, Any]], dict[str, Any]]:
    """The credit note `p` describes (not stored), its lines, and the invoice; raises what Stripe refuses."""
    inv = ref_or_400(req, p["invoice"], "invoice", "invoice")
    if inv["status"] not in ("open", "paid"):
        raise state_error(f"Credit notes can only be issued for open or paid invoices; invoice {inv['id']} is "
                          f"{inv['status']}.", code="invoice_not_open" if inv["status"] != "paid" else None,
                          param="invoice")
    cn_id = new_id("cn")
    lines = _build_lines(req, inv, p, cn_id)
    cur = inv["currency"]
    if lines:
        total = sum(ln["amount"] for ln in lines)
        if "amount" in p and p["amount"] != total:
            raise StripeError(f"The amount ({p['amount']}) must equal the sum of the lines ({total}).", param="amount")
    elif "amount" in p:
        total = p["amount"]
    else:
        raise StripeError("You must pass one of amount or lines.", code="parameter_missing", param="amount")
    creditable = inv["total"] - sum(cn["total"] for cn in _credited(req, inv["id"]))
    if total <= 0 or total > creditable:
        raise StripeError(f"The credit note total ({fmt_money(total, cur)}) must be positive and at most the "
                          f"amount left to credit on the invoice ({fmt_money(creditable, cur)}).", param="amount")
    pre = min(total, inv["amount_remaining"]) if inv["status"] == "open" else 0
    post = total - pre
    refund_amount = p.get("refund_amount", 0)
    credit_amount = p.get("credit_amount", 0)
    out_of_band = p.get("out_of_band_amount", 0)
    if refund_amount + credit_amount + out_of_band != post:
        raise StripeError(
            f"The sum of refund_amount, credit_amount and out_of_band_amount ({refund_amount + credit_amount + out_of_band})"
            f" must equal the credit note's post-payment amount ({post}): the part of {total} not taken off the "
            f"invoice's amount remaining.", param="refund_amount" if refund_amount else "credit_amount")
    if refund_amount and inv_charge(req, inv) is None:
        raise state_error("The invoice has no charge to refund.", param="refund_amount")
    if p.get("refunds"):
        raise StripeError("Linking existing refunds is not supported by the emulator; use refund_amount.",
                          param="refunds")
    now = inv_mod._now(req, inv["customer"])
    seq = len([cn for cn in req.store.all("credit_note") if cn["invoice"] == inv["id"]]) + 1
    cn = {
        "id": cn_id,
        "object": "credit_note",
        "amount": total,
        "amount_shipping": 0,
        "created": now,
        "currency": cur,
        "customer": inv["customer"],
        "customer_account": None,
        "customer_balance_transaction": None,
        "discount_amount": 0,
        "discount_amounts": [],
        "effective_at": p.get("effective_at", now) if not preview else p.get("effective_at"),
        "invoice": inv["id"],
        "lines": {"object": "list", "data": copy.deepcopy(lines[:10]), "has_more": len(lines) > 10,
                  "url": f"/v1/credit_notes/{cn_id}/lines"},
        "livemode": False,
        "memo": p.get("memo") or None,
        "metadata": {},
        "number": f"{inv['number']}-CN-{seq:02d}",
        "out_of_band_amount": out_of_band or None,
        "pdf": f"{req.emulator.public_url}/_emulator/credit_notes/{cn_id}/pdf",
        "post_payment_amount": post,
        "pre_payment_amount": pre,
        "pretax_credit_amounts": [],
        "reason": p.get("reason"),
        "refunds": [],
        "shipping_cost": None,
        "status": "issued",
        "subtotal": total,
        "subtotal_excluding_tax": total,
        "total": total,
        "total_excluding_tax": total,
        "total_taxes": [],
        "type": "pre_payment" if post == 0 else ("post_payment" if pre == 0 else "mixed"),
        "voided_at": None,
    }
    apply_metadata(cn, p.get("metadata"))
    return cn, lines, inv


def _sync_open_payment_intent(req: Any, inv: dict[str, Any]) -> None:
    """An open invoice's unconfirmed PaymentIntent (after a failed attempt) must ask for the new amount due, or the
    next retry would charge what the credit note took off."""
    pi = req.store.get(req.store.priv(inv["id"]).get("payment_intent"), "payment_intent")
    if (pi is not None and inv["amount_remaining"] > 0
            and pi["status"] in ("requires_payment_method", "requires_confirmation", "requires_action")):
        pi["amount"] = inv["amount_remaining"]


def inv_charge(req: Any, inv: dict[str, Any]) -> str | None:
    pi = req.store.get(req.store.priv(inv["id"]).get("payment_intent"), "payment_intent")
    return (pi or {}).get("latest_charge")


# ------------------------------------------------------------------ routes

@route("POST", "/v1/credit_notes", "CreditNoteCreateParams", returns="credit_note")
def create_credit_note(req: Request) -> dict[str, Any]:
    p = req.params
    cn, lines, inv = _compute(req, p, preview=False)
    store = req.store
    # The refund is the only step that can still be refused (a disputed charge...): do it before writing anything.
    if p.get("refund_amount"):
        refund = refund_charge(req, charge_id=inv_charge(req, inv), amount=p["refund_amount"],
                                             reason=_REFUND_REASONS.get(p.get("reason") or "", "requested_by_customer"),
                                             metadata={"credit_note": cn["id"]}, param="refund_amount")
        cn["refunds"] = [{"amount_refunded": refund["amount"], "payment_record_refund": None,
                          "refund": refund["id"], "type": "refund"}]
    store.add(cn, {"lines": lines})
    for ln in lines:
        store.add(ln, {"credit_note": cn["id"]})
    if p.get("credit_amount"):
        txn = add_customer_balance_transaction(req, customer=store.objects[inv["customer"]], amount=-p["credit_amount"],
                                         currency=cn["currency"], type="credit_note", credit_note=cn["id"],
                                         invoice=inv["id"])
        cn["customer_balance_transaction"] = txn["id"]
    before = copy.deepcopy(inv)
    inv["pre_payment_credit_notes_amount"] += cn["pre_payment_amount"]
    inv["post_payment_credit_notes_amount"] += cn["post_payment_amount"]
    if cn["pre_payment_amount"]:
        inv["amount_due"] -= cn["pre_payment_amount"]
        inv["amount_remaining"] -= cn["pre_payment_amount"]
        _sync_open_payment_intent(req, inv)
    emit("credit_note.created", cn)
    emit("invoice.updated", inv, diff(before, inv))
    if inv["status"] == "open" and inv["amount_remaining"] == 0:
        # fully credited before payment: Stripe marks the invoice paid with nothing collected
        inv_mod.mark_paid(req, inv, None)
    return cn


@route("GET", "/v1/credit_notes/preview", "CreditNotePreviewParams", returns="credit_note")
def preview_credit_note(req: Request) -> dict[str, Any]:
    cn, _, _ = _compute(req, req.params, preview=True)
    return cn


@route("GET", "/v1/credit_notes/preview/lines", "CreditNotePreviewLinesListParams", returns="credit_note_line_item")
def preview_credit_note_lines(req: Request) -> dict[str, Any]:
    _, lines, _ = _compute(req, req.params, preview=True)
    return list_response(req, lines, "/v1/credit_notes/preview/lines")


@route("GET", "/v1/credit_notes/{id}", "CreditNoteRetrieveParams", returns="credit_note")
def retrieve_credit_note(req: Request) -> dict[str, Any]:
    return get_or_404(req, req.path_params["id"], "credit_note", "credit note")


@route("GET", "/v1/credit_notes/{credit_note}/lines", "CreditNoteLineItemListParams", returns="credit_note_line_item")
def list_credit_note_lines(req: Request) -> dict[str, Any]:
    cn = get_or_404(req, req.path_params["credit_note"], "credit_note", "credit note", param="credit_note")
    return list_response(req, req.store.priv(cn["id"]).get("lines", []), f"/v1/credit_notes/{cn['id']}/lines")


@route("POST", "/v1/credit_notes/{id}", "CreditNoteUpdateParams", returns="credit_note")
def update_credit_note(req: Request) -> dict[str, Any]:
    cn = retrieve_credit_note(req)
    before = copy.deepcopy(cn)
    p = req.params
    if "memo" in p:
        cn["memo"] = p["memo"] or None
    apply_metadata(cn, p.get("metadata"))
    if diff(before, cn):
        emit("credit_note.updated", cn, diff(before, cn))
    return cn


@route("POST", "/v1/credit_notes/{id}/void", "CreditNoteVoidCreditNoteParams", returns="credit_note")
def void_credit_note(req: Request) -> dict[str, Any]:
    cn = retrieve_credit_note(req)
    if cn["status"] == "void":
        raise state_error("This credit note has already been voided.", code="credit_note_already_voided")
    if cn["refunds"]:
        raise state_error("A credit note with a refund cannot be voided: the refund cannot be taken back.")
    store = req.store
    inv = store.objects[cn["invoice"]]
    if cn["pre_payment_amount"] and inv["status"] != "open":
        raise state_error("The invoice has been paid since this credit note reduced it; it can no longer be voided.",
                          code="invoice_not_open")
    before = copy.deepcopy(cn)
    if cn["customer_balance_transaction"]:
        txn = store.objects[cn["customer_balance_transaction"]]
        add_customer_balance_transaction(req, customer=store.objects[cn["customer"]], amount=-txn["amount"],
                                   currency=cn["currency"], type="credit_note", credit_note=cn["id"],
                                   invoice=inv["id"])
    inv_before = copy.deepcopy(inv)
    inv["pre_payment_credit_notes_amount"] -= cn["pre_payment_amount"]
    inv["post_payment_credit_notes_amount"] -= cn["post_payment_amount"]
    inv["amount_due"] += cn["pre_payment_amount"]
    inv["amount_remaining"] += cn["pre_payment_amount"]
    _sync_open_payment_intent(req, inv)
    cn["status"] = "void"
    cn["voided_at"] = inv_mod._now(req, cn["customer"])
    emit("credit_note.voided", cn, diff(before, cn))
    emit("invoice.updated", inv, diff(inv_before, inv))
    return cn


@route("GET", "/v1/credit_notes", "CreditNoteListParams", returns="credit_note")
def list_credit_notes(req: Request) -> dict[str, Any]:
    p = req.params
    objs = req.store.all("credit_note")
    if "invoice" in p:
        objs = [cn for cn in objs if cn["invoice"] == p["invoice"]]
    if "customer" in p:
        objs = [cn for cn in objs if cn["customer"] == p["customer"]]
    objs = created_filter(objs, p.get("created"))
    return list_response(req, objs, "/v1/credit_notes")


@route("GET", "/_emulator/credit_notes/{id}/pdf", auth=False)
def credit_note_pdf(req: Request) -> HtmlResponse:
    cn = req.store.get(req.path_params["id"], "credit_note")
    if cn is None:
        return HtmlResponse(b"not found", status=404, content_type="text/plain")
    cur = cn["currency"]
    lines = [(ln["description"] or "Credit", fmt_money(ln["amount"], cur)) for ln in req.store.priv(cn["id"]).get("lines", [])]
    body = render_invoice_pdf(
        title=f"Credit note {cn['number']}",
        header=["Stripe Emulator Test Account", f"Credit note number: {cn['number']}",
                f"Invoice: {req.store.objects[cn['invoice']].get('number')}", f"Status: {cn['status']}"],
        lines=lines or [("Credit", fmt_money(cn["total"], cur))],
        totals=[("Total credited", fmt_money(cn["total"], cur))],
    )
    return HtmlResponse(body, content_type="application/pdf",
                        headers={"Content-Disposition": f"inline; filename=\"CreditNote-{cn['number']}.pdf\""})
