"""Boleto and Pix (BRL): payment methods paid later by the customer, outside the API.

Confirming a PaymentIntent with one issues a voucher (`boleto_display_details`) or a QR code
(`pix_display_qr_code`) and leaves it in `requires_action` until the customer pays or it expires:

- Boleto: paid -> `processing` (charge `pending`; `charge.pending`, `payment_intent.processing`) -> settled:
  `succeeded` (`charge.succeeded`, `payment_intent.succeeded`) or failed (`charge.failed`,
  `payment_intent.payment_failed`, back to `requires_payment_method`).
- Pix: paid -> `succeeded` at once (Pix settles instantly).
- Expired unpaid (at `expires_at`, on the customer's test clock when it has one): `payment_intent.payment_failed`
  with `payment_intent_payment_attempt_expired`, back to `requires_payment_method`.

Test mode controls (no auth): `POST /_emulator/payment_intents/<id>/pay` (the customer pays),
`.../settle` (`result=succeeded|failed`; pays first when still unpaid) and `.../expire`; the hosted voucher and
QR pages have the same buttons. Boleto's test e-mails (billing_details[email]) `…succeed_immediately@…` and
`…expire_immediately@…` settle or expire at confirmation. Other resources follow the outcome through
`AFTER_ASYNC_HOOKS` (Checkout sends `checkout.session.async_payment_succeeded/failed`).
"""
from __future__ import annotations

import copy
import hashlib
import html
import struct
import zlib
from typing import Any, Callable

from ..errors import StripeError, no_such, state_error
from ..events import emit
from ..helpers import apply_metadata, fmt_money
from ..registry import HtmlResponse, Request, route
from ..state import new_id, random_token
from .balance_transactions import DAY, create_balance_transaction
from .charges import build_charge
from .hosted_page import simple_page
from .invoice_pdf import render_invoice_pdf

ASYNC_TYPES = ("boleto", "pix")
CURRENCIES = {"boleto": ("brl",), "pix": ("brl",)}
BOLETO_DEFAULT_DAYS = 3
PIX_DEFAULT_SECONDS = 86400

# fn(req, payment_intent, succeeded: bool) after an asynchronous payment succeeded or failed/expired.
AFTER_ASYNC_HOOKS: list[Callable[[Any, dict[str, Any], bool], Any]] = []


def async_fee(ptype: str, amount: int) -> int:
    """Stripe's Brazilian pricing: Boleto R$3.45 per paid voucher, Pix 1.19 % rounded half up."""
    return 345 if ptype == "boleto" else (amount * 119 + 5000) // 10000


# ------------------------------------------------------------------ payment methods

def _billing(value: Any) -> dict[str, Any]:
    from .payment_methods import _billing_details

    return _billing_details(value)


def _name(param: str, *parts: str) -> str:
    """`payment_method_data[boleto][tax_id]` under a prefix, `boleto[tax_id]` without one."""
    head, rest = (param, parts) if param else (parts[0], parts[1:])
    return head + "".join(f"[{x}]" for x in rest)


def create_async_payment_method(req: Any, ptype: str, *, data: dict[str, Any] | None = None,
                                billing_details: Any = None, metadata: Any = None,
                                param: str = "payment_method_data") -> dict[str, Any]:
    """A `boleto` or `pix` PaymentMethod. Boleto needs the payer's CPF/CNPJ (`boleto[tax_id]`), name, e-mail
    and address, as Stripe asks."""
    details = _billing(billing_details)
    pm: dict[str, Any] = {
        "id": new_id("pm"),
        "object": "payment_method",
        "allow_redisplay": "unspecified",
        "billing_details": details,
        "created": req.store.clock.now(),
        "customer": None,
        "customer_account": None,
        "livemode": False,
        "metadata": {},
        "type": ptype,
    }
    if ptype == "boleto":
        tax_id = str((data or {}).get("tax_id") or "")
        if not tax_id:
            raise StripeError(f"Missing required param: {_name(param, 'boleto', 'tax_id')}.", code="parameter_missing",
                              param=_name(param, "boleto", "tax_id"))
        digits = "".join(ch for ch in tax_id if ch.isdigit())
        if len(digits) not in (11, 14):
            raise StripeError("The tax ID must be a CPF (11 digits) or a CNPJ (14 digits).", code="parameter_invalid",
                              param=_name(param, "boleto", "tax_id"))
        for field in ("name", "email"):
            if not details.get(field):
                raise StripeError(f"Missing required param: {_name(param, 'billing_details', field)}.",
                                  code="parameter_missing", param=_name(param, "billing_details", field))
        addr = details.get("address") or {}
        for field in ("line1", "city", "state", "postal_code", "country"):
            if not addr.get(field):
                raise StripeError(f"Missing required param: {_name(param, 'billing_details', 'address', field)}.",
                                  code="parameter_missing", param=_name(param, "billing_details", "address", field))
        pm["boleto"] = {"tax_id": tax_id}
    else:
        seed = f"emulator-pix:{details.get('email') or pm['id']}"
        pm["pix"] = {"fingerprint": hashlib.sha256(seed.encode()).hexdigest()[:16]}
    apply_metadata(pm, metadata)
    req.store.add(pm, {"behaviour": "async"})
    return pm


# ------------------------------------------------------------------ payment intents

def check_currency(types: list[str], currency: str, param: str = "payment_method_types") -> None:
    for t in types:
        allowed = CURRENCIES.get(t)
        if allowed and currency.lower() not in allowed:
            raise StripeError(f"The currency provided ({currency.lower()}) is invalid. Payments with {t} support the "
                              f"following currencies: {', '.join(allowed)}.", param=param)


def payment_method_options(types: list[str], options: dict[str, Any] | None) -> dict[str, Any]:
    """The PaymentIntent's `payment_method_options` for its types (what Stripe echoes back)."""
    options = options or {}
    out: dict[str, Any] = {}
    if "card" in types:
        out["card"] = {"installments": None, "mandate_options": None, "network": None,
                       "request_three_d_secure": "automatic"}
    if "boleto" in types:
        out["boleto"] = {"expires_after_days": int((options.get("boleto") or {}).get("expires_after_days")
                                                   or BOLETO_DEFAULT_DAYS)}
    if "pix" in types:
        pix = options.get("pix") or {}
        out["pix"] = {"amount_includes_iof": pix.get("amount_includes_iof", "never"),
                      "expires_after_seconds": pix.get("expires_after_seconds", PIX_DEFAULT_SECONDS)}
        if pix.get("expires_at"):
            out["pix"]["expires_at"] = pix["expires_at"]
    return out


def _now(req: Any, pi: dict[str, Any]) -> int:
    return req.store.clock.now_for_customer(pi.get("customer"))


def _expires_at(req: Any, pi: dict[str, Any], ptype: str) -> int:
    opts = (pi.get("payment_method_options") or {}).get(ptype) or {}
    now = _now(req, pi)
    if ptype == "boleto":
        # Stripe: end of the last calendar day (23:59 in São Paulo); here the end of the UTC day.
        days = int(opts.get("expires_after_days") or BOLETO_DEFAULT_DAYS)
        return (now // DAY + days + 1) * DAY - 1
    if opts.get("expires_at"):
        return int(opts["expires_at"])
    return now + int(opts.get("expires_after_seconds") or PIX_DEFAULT_SECONDS)


def confirm(req: Any, pi: dict[str, Any], pm: dict[str, Any]) -> None:
    """Issue the voucher / QR code: `requires_action` with the type's next action."""
    ptype = pm["type"]
    if ptype not in pi["payment_method_types"]:
        raise StripeError(f"The PaymentMethod provided ({ptype}) is not allowed for this PaymentIntent. Please "
                          "attach a PaymentMethod of one of the following types: "
                          f"{', '.join(pi['payment_method_types'])}.", code="payment_intent_unexpected_state",
                          param="payment_method")
    check_currency([ptype], pi["currency"], "payment_method")
    pi["payment_method"] = pm["id"]
    pi["last_payment_error"] = None
    pi["status"] = "requires_action"
    expires_at = _expires_at(req, pi, ptype)
    base = f"{req.emulator.public_url}/_emulator"
    if ptype == "boleto":
        number = "".join(str(int(c, 16) % 10) for c in random_token(47).encode().hex()[:47])
        pi["next_action"] = {"type": "boleto_display_details", "boleto_display_details": {
            "expires_at": expires_at, "hosted_voucher_url": f"{base}/boleto/{pi['id']}",
            "number": number, "pdf": f"{base}/boleto/{pi['id']}/pdf"}}
    else:
        data = f"00020101021226880014br.gov.bcb.pix2566qr.emulator.stripe/{pi['id']}5204000053039865802BR6304"
        pi["next_action"] = {"type": "pix_display_qr_code", "pix_display_qr_code": {
            "data": data, "expires_at": expires_at, "hosted_instructions_url": f"{base}/pix/{pi['id']}",
            "image_url_png": f"{base}/pix/{pi['id']}/qr.png", "image_url_svg": f"{base}/pix/{pi['id']}/qr.svg"}}
    req.store.priv(pi["id"])["async"] = {"type": ptype, "expires_at": expires_at}
    emit("payment_intent.requires_action", pi)
    email = (pm.get("billing_details") or {}).get("email") or ""
    if ptype == "boleto" and "succeed_immediately" in email:
        settle(req, pi, succeeded=True)
    elif ptype == "boleto" and "expire_immediately" in email:
        expire(req, pi)


def _state(req: Any, pi: dict[str, Any]) -> dict[str, Any] | None:
    return req.store.private.get(pi["id"], {}).get("async")


def pay(req: Any, pi: dict[str, Any]) -> None:
    """The customer pays the voucher / QR code."""
    st = _state(req, pi)
    if st is None or pi["status"] != "requires_action":
        raise state_error(f"PaymentIntent {pi['id']} has no unpaid Boleto or Pix (status {pi['status']}).",
                          code="payment_intent_unexpected_state")
    pm = req.store.objects[pi["payment_method"]]
    charge = build_charge(req, pi, pm, succeeded=False, captured=False, failure=None, three_ds=False)
    charge.update({"status": "pending", "failure_code": None, "failure_message": None,
                   "payment_method_details": _charge_details(pm)})
    charge["outcome"].update({"network_status": "approved_by_network", "reason": None,
                              "seller_message": "Payment pending.", "type": "authorized"})
    req.store.add(charge)
    pi["latest_charge"] = charge["id"]
    pi["next_action"] = None
    pi["status"] = "processing"
    if st["type"] == "pix":
        settle(req, pi, succeeded=True)  # Pix settles as it is paid: no processing events
        return
    emit("charge.pending", charge)
    emit("payment_intent.processing", pi)


def _charge_details(pm: dict[str, Any]) -> dict[str, Any]:
    if pm["type"] == "boleto":
        return {"boleto": {"tax_id": pm["boleto"]["tax_id"]}, "type": "boleto"}
    return {"pix": {"bank_transaction_id": "E" + random_token(31).upper(), "fingerprint": pm["pix"]["fingerprint"],
                    "mandate": None}, "type": "pix"}


def settle(req: Any, pi: dict[str, Any], *, succeeded: bool) -> None:
    """The bank settles the payment (Boleto clears after a business day or so; Pix at once). An unpaid one is
    paid first; an unpaid Pix that "fails" simply expires (a paid Pix cannot fail)."""
    if pi["status"] == "requires_action":
        st = _state(req, pi)
        if st is None:
            raise state_error(f"PaymentIntent {pi['id']} has no Boleto or Pix to settle.",
                              code="payment_intent_unexpected_state")
        if st["type"] == "pix" and not succeeded:
            expire(req, pi)
            return
        pay(req, pi)
        if pi["status"] != "processing":
            return
    if pi["status"] != "processing" or _state(req, pi) is None:
        raise state_error(f"PaymentIntent {pi['id']} is not being processed (status {pi['status']}).",
                          code="payment_intent_unexpected_state")
    charge = req.store.objects[pi["latest_charge"]]
    pm = req.store.objects[pi["payment_method"]]
    if succeeded:
        charge.update({"status": "succeeded", "paid": True, "captured": True, "amount_captured": charge["amount"]})
        charge["outcome"]["seller_message"] = "Payment complete."
        bt = create_balance_transaction(req, amount=charge["amount"], currency=charge["currency"], type="charge",
                                        source=charge["id"], description=charge["description"],
                                        fee=async_fee(pm["type"], charge["amount"]), created=_now(req, pi))
        charge["balance_transaction"] = bt["id"]
        pi.update({"status": "succeeded", "amount_received": pi["amount"], "next_action": None})
        emit("charge.succeeded", charge)
        emit("payment_intent.succeeded", pi)
    else:
        msg = "The customer's bank could not complete the payment."
        charge.update({"status": "failed", "failure_code": "payment_method_provider_decline", "failure_message": msg})
        charge["outcome"].update({"network_status": "declined_by_network", "seller_message": msg,
                                  "type": "issuer_declined"})
        _requires_new_method(pi, pm, "payment_method_provider_decline", msg, charge_id=charge["id"])
        emit("charge.failed", charge)
        emit("payment_intent.payment_failed", pi)
    req.store.priv(pi["id"]).pop("async", None)
    for hook in AFTER_ASYNC_HOOKS:
        hook(req, pi, succeeded)


def _requires_new_method(pi: dict[str, Any], pm: dict[str, Any], code: str, message: str,
                         charge_id: str | None = None) -> None:
    err: dict[str, Any] = {"type": "invalid_request_error", "code": code, "message": message,
                           "doc_url": "https://stripe.com/docs/error-codes/" + code.replace("_", "-"),
                           "payment_method": copy.deepcopy(pm)}
    if charge_id:
        err["charge"] = charge_id
    pi.update({"status": "requires_payment_method", "next_action": None, "payment_method": None,
               "last_payment_error": err})


def expire(req: Any, pi: dict[str, Any]) -> None:
    """The voucher / QR code expired unpaid."""
    if _state(req, pi) is None or pi["status"] != "requires_action":
        raise state_error(f"PaymentIntent {pi['id']} has no unpaid Boleto or Pix to expire (status {pi['status']}).",
                          code="payment_intent_unexpected_state")
    pm = req.store.objects[pi["payment_method"]]
    kind = "Boleto voucher" if pm["type"] == "boleto" else "Pix QR code"
    _requires_new_method(pi, pm, "payment_intent_payment_attempt_expired",
                         f"The {kind} expired before the customer paid it.")
    req.store.priv(pi["id"]).pop("async", None)
    emit("payment_intent.payment_failed", pi)
    for hook in AFTER_ASYNC_HOOKS:
        hook(req, pi, False)


def expire_due(req: Any, pis: list[dict[str, Any]] | None = None) -> None:
    """Expire the vouchers / QR codes whose time has come (reads and test clock advances call this)."""
    for pi in list(pis if pis is not None else req.store.all("payment_intent")):
        st = req.store.private.get(pi["id"], {}).get("async")
        if st and pi["status"] == "requires_action" and _now(req, pi) > st["expires_at"]:
            expire(req, pi)


# ------------------------------------------------------------------ test-mode controls and hosted pages

def _pi_or_404(req: Request) -> dict[str, Any]:
    pi = req.store.get(req.path_params["id"], "payment_intent")
    if pi is None:
        raise no_such("payment_intent", req.path_params["id"])
    return pi


def _field(req: Request, name: str, default: str = "") -> str:
    v = (req.params or {}).get(name, default)
    return v[0] if isinstance(v, list) and v else (v if isinstance(v, str) else default)


@route("POST", "/_emulator/payment_intents/{id}/pay", auth=False, idempotent=False)
def pay_route(req: Request) -> dict[str, Any]:
    pi = _pi_or_404(req)
    expire_due(req, [pi])
    pay(req, pi)
    return pi


@route("POST", "/_emulator/payment_intents/{id}/settle", auth=False, idempotent=False)
def settle_route(req: Request) -> dict[str, Any] | HtmlResponse:
    pi = _pi_or_404(req)
    result = _field(req, "result", "succeeded")
    if result not in ("succeeded", "failed"):
        raise StripeError("`result` must be `succeeded` or `failed`.", param="result")
    ptype = (_state(req, pi) or {}).get("type")
    expire_due(req, [pi])
    settle(req, pi, succeeded=result == "succeeded")
    return _answer(req, pi, ptype)


@route("POST", "/_emulator/payment_intents/{id}/expire", auth=False, idempotent=False)
def expire_route(req: Request) -> dict[str, Any] | HtmlResponse:
    pi = _pi_or_404(req)
    ptype = (_state(req, pi) or {}).get("type")
    expire(req, pi)
    return _answer(req, pi, ptype)


def _answer(req: Request, pi: dict[str, Any], ptype: str | None) -> dict[str, Any] | HtmlResponse:
    """JSON for scripts; the hosted page's buttons (`redirect=1`) go back to the page."""
    if _field(req, "redirect") and ptype:
        return HtmlResponse.redirect(f"{req.emulator.public_url}/_emulator/{ptype}/{pi['id']}")
    return pi


def _hosted(req: Request, ptype: str) -> dict[str, Any] | HtmlResponse:
    pi = req.store.get(req.path_params["id"], "payment_intent")
    if pi is None or (pi.get("next_action") or {}).get("type") not in (None, f"{ptype}_display_details",
                                                                       f"{ptype}_display_qr_code"):
        return HtmlResponse(simple_page("Not found", "<h1>Unknown payment</h1>"), status=404)
    expire_due(req, [pi])
    return pi


def _buttons(pi: dict[str, Any], label: str) -> str:
    pid = html.escape(pi["id"])
    return (f"<form method='post' action='/_emulator/payment_intents/{pid}/settle'>"
            f"<input type='hidden' name='result' value='succeeded'><input type='hidden' name='redirect' value='1'>"
            f"<button id='simulate-pay'>{html.escape(label)}</button></form>"
            f"<form method='post' action='/_emulator/payment_intents/{pid}/expire'>"
            "<input type='hidden' name='redirect' value='1'><button id='simulate-expire'>Simulate expiry</button></form>")


@route("GET", "/_emulator/boleto/{id}", auth=False)
def boleto_voucher(req: Request) -> HtmlResponse:
    pi = _hosted(req, "boleto")
    if isinstance(pi, HtmlResponse):
        return pi
    details = (pi.get("next_action") or {}).get("boleto_display_details")
    if details is None:
        return HtmlResponse(simple_page("Boleto", f"<h1>Boleto</h1><p id='status'>{html.escape(pi['status'])}</p>"))
    body = (f"<h1>Boleto</h1><p>Amount <strong id='amount'>{html.escape(fmt_money(pi['amount'], pi['currency']))}"
            f"</strong></p><p>Number <code id='number'>{html.escape(details['number'])}</code></p>"
            f"<p>Expires at <span id='expires-at'>{details['expires_at']}</span></p>"
            f"<p><a href='{html.escape(details['pdf'])}'>PDF</a></p>" + _buttons(pi, "Simulate payment"))
    return HtmlResponse(simple_page("Boleto", body))


@route("GET", "/_emulator/boleto/{id}/pdf", auth=False)
def boleto_pdf(req: Request) -> HtmlResponse:
    pi = _hosted(req, "boleto")
    if isinstance(pi, HtmlResponse):
        return pi
    amount = fmt_money(pi["amount"], pi["currency"])
    details = (pi.get("next_action") or {}).get("boleto_display_details") or {}
    header = [f"Number {details.get('number', '')}", f"Expires at {details.get('expires_at', '')}"]
    pdf = render_invoice_pdf(title=f"Boleto {pi['id']}", header=header,
                             lines=[("Boleto (test mode)", amount)], totals=[("Total", amount)])
    return HtmlResponse(pdf, content_type="application/pdf")


def _qr_svg(data: str) -> str:
    """A QR-looking 25x25 pattern derived from the data (for display only; not a scannable code)."""
    bits = hashlib.sha256(data.encode()).digest() * 3
    cells = []
    for i in range(625):
        if bits[i // 8] >> (i % 8) & 1:
            cells.append(f"<rect x='{i % 25}' y='{i // 25}' width='1' height='1'/>")
    return ("<svg xmlns='http://www.w3.org/2000/svg' viewBox='0 0 25 25' width='200' height='200'>"
            "<rect width='25' height='25' fill='white'/><g fill='black'>" + "".join(cells) + "</g></svg>")


@route("GET", "/_emulator/pix/{id}", auth=False)
def pix_instructions(req: Request) -> HtmlResponse:
    pi = _hosted(req, "pix")
    if isinstance(pi, HtmlResponse):
        return pi
    qr = (pi.get("next_action") or {}).get("pix_display_qr_code")
    if qr is None:
        return HtmlResponse(simple_page("Pix", f"<h1>Pix</h1><p id='status'>{html.escape(pi['status'])}</p>"))
    body = (f"<h1>Pix</h1><p>Amount <strong id='amount'>{html.escape(fmt_money(pi['amount'], pi['currency']))}"
            f"</strong></p><div id='qr'>{_qr_svg(qr['data'])}</div>"
            f"<p>Copy and paste: <code id='pix-data'>{html.escape(qr['data'])}</code></p>"
            f"<p>Expires at <span id='expires-at'>{qr['expires_at']}</span></p>" + _buttons(pi, "Simulate payment"))
    return HtmlResponse(simple_page("Pix", body))


def _qr_png(data: str, scale: int = 8) -> bytes:
    bits = hashlib.sha256(data.encode()).digest() * 3
    size = 25 * scale
    rows = b""
    for y in range(size):
        row = bytearray([0])  # filter type 0
        for x in range(size):
            i = (y // scale) * 25 + x // scale
            row.append(0 if bits[i // 8] >> (i % 8) & 1 else 255)
        rows += bytes(row)

    def chunk(kind: bytes, payload: bytes) -> bytes:
        return struct.pack(">I", len(payload)) + kind + payload + struct.pack(">I", zlib.crc32(kind + payload))

    return (b"\x89PNG\r\n\x1a\n" + chunk(b"IHDR", struct.pack(">IIBBBBB", size, size, 8, 0, 0, 0, 0))
            + chunk(b"IDAT", zlib.compress(rows)) + chunk(b"IEND", b""))


@route("GET", "/_emulator/pix/{id}/qr.png", auth=False)
def pix_png(req: Request) -> HtmlResponse:
    pi = _hosted(req, "pix")
    if isinstance(pi, HtmlResponse):
        return pi
    qr = (pi.get("next_action") or {}).get("pix_display_qr_code") or {"data": pi["id"]}
    return HtmlResponse(_qr_png(qr["data"]), content_type="image/png")


@route("GET", "/_emulator/pix/{id}/qr.svg", auth=False)
def pix_svg(req: Request) -> HtmlResponse:
    pi = _hosted(req, "pix")
    if isinstance(pi, HtmlResponse):
        return pi
    qr = (pi.get("next_action") or {}).get("pix_display_qr_code") or {"data": pi["id"]}
    return HtmlResponse(_qr_svg(qr["data"]), content_type="image/svg+xml")


__all__ = ["AFTER_ASYNC_HOOKS", "ASYNC_TYPES", "check_currency", "confirm", "create_async_payment_method",
           "expire", "expire_due", "pay", "payment_method_options", "settle"]
