"""
The project's own receipts (issue 13): a PDF per payment and per refund, issued once, numbered per seller, written
with reportlab in the team's language and the charge's currency, and the emails that carry them.

- `receipt_for_charge_get_or_create` / `receipt_for_refund_get_or_create`: the services. They read the mirror
  (dj-stripe's tables, through `selectors.team_payment`), never Stripe, so no Stripe call happens while the counter
  row is locked.
- `receipt_pdf_render`: the PDF (pure function of the payment, the seller and the language).
- `receipt_email_queue` / `refund_receipt_email_queue`: what webhook handlers call. They go through the team email
  outbox of `billing.emails` (`send_team_email` → an `OutboundEmail` row → task after commit → `outbound_email_send`),
  which calls back the builders registered here with `team_email_builder` to make an HTML + text message with the PDF
  attached. The row's context holds only ids; the PDF is issued (or read) when the email is sent. The builders'
  dedupe keys make it one receipt email per payment (and per set of refunds), whoever queues it.
"""
import io
import logging
import re
from dataclasses import dataclass

from django.conf import settings
from django.core.mail import EmailMultiAlternatives
from django.db import IntegrityError, transaction
from django.template.loader import render_to_string
from django.urls import reverse
from django.utils import formats, translation
from django.utils.translation import gettext as _

from accounts.models import Team
from billing_site.errors import NotFoundError
from billing_site.money import format_money

from . import selectors
from .catalog import load_catalog
from .emails import send_team_email, team_email_builder
from .forms_payments import PaymentKind
from .models import Receipt, ReceiptCounter

logger = logging.getLogger(__name__)

# Zero-padded so numbers sort as text too: RCPT-000001.
RECEIPT_NUMBER_DIGITS = 6


# --- services ------------------------------------------------------------------------------------------------------
def receipt_number_format(*, seller: str, sequence: int) -> str:
    return f"{seller}{sequence:0{RECEIPT_NUMBER_DIGITS}d}"


def _receipt_issue(*, team: Team, kind: str, charge_id: str, refund_id: str, amount_minor: int, currency: str,
                   language: str, render) -> Receipt:
    """
    Take the next number of the seller's sequence and store the receipt, in one transaction.

    Lock order: the seller's ReceiptCounter row only (nothing else is locked here). The receipt's existence is
    checked again after the lock: a concurrent issuer for the same payment committed first and we return its
    receipt, so the counter is only moved by the insert that wins. The unique constraints are the backstop.
    The PDF is rendered while the lock is held (it prints the number); that takes tens of milliseconds and
    receipts are issued a few at a time, so serialising issuers costs nothing that matters.
    """
    seller = settings.RECEIPT_NUMBER_PREFIX
    ReceiptCounter.objects.get_or_create(seller=seller)
    lookup = ({"kind": Receipt.Kind.PAYMENT, "stripe_charge_id": charge_id} if kind == Receipt.Kind.PAYMENT
              else {"kind": Receipt.Kind.REFUND, "stripe_refund_id": refund_id})
    with transaction.atomic():
        counter = ReceiptCounter.objects.select_for_update().get(seller=seller)
        existing = Receipt.objects.filter(**lookup).first()
        if existing is not None:
            return existing
        sequence = counter.last_number + 1
        number = receipt_number_format(seller=seller, sequence=sequence)
        receipt = Receipt(team=team, kind=kind, stripe_charge_id=charge_id, stripe_refund_id=refund_id, seller=seller,
                          sequence=sequence, number=number, amount_minor=amount_minor, currency=currency,
                          language=language, pdf=render(number))
        receipt.full_clean(exclude=["pdf"])
        receipt.save()
        ReceiptCounter.objects.filter(pk=counter.pk).update(last_number=sequence)
    logger.info("receipt %s issued for team %s (%s %s %s)", number, team.pk, kind, charge_id, refund_id)
    return receipt


def _get_or_issue(*, issue, lookup: dict) -> Receipt:
    try:
        return issue()
    except IntegrityError:
        # Only reachable without a working row lock (SQLite has none): the other issuer's receipt is the one.
        existing = Receipt.objects.filter(**lookup).first()
        if existing is None:
            raise
        return existing


def _payment_for_receipt(*, team: Team, payment_id: str, invoice_hint: str = "") -> selectors.PaymentRow:
    """
    The payment as the receipt prints it. A payment whose invoice the mirror cannot name (API 2025-03 and later:
    charges and intents no longer name it; see selectors._payment_invoices_by_intent) is looked up at Stripe once,
    before any lock, and the link kept, so a subscription receipt carries the invoice's lines and tax; the receipt
    is immutable, so it must not go out without them.
    """
    payment = selectors.team_payment(team=team, payment_id=payment_id, invoice_hint=invoice_hint)
    if payment is None or not payment.has_receipt:
        raise NotFoundError("not_found", _("Payment not found."))
    if payment.kind == PaymentKind.CREDIT_PACK or not payment.payment_intent:
        return payment
    from djstripe.models import Invoice

    from .services.invoice_payments import payment_intent_invoice_id
    from .services.mirror import mirror_refresh

    # No link in the payment (the invoice_payment.paid event not applied yet, or data from before links were kept):
    # the recorded link, else one Stripe read that records it.
    invoice_id = payment.invoice_id or payment_intent_invoice_id(payment_intent_id=payment.payment_intent)
    if not invoice_id:
        return payment  # a one-time payment
    if not Invoice.objects.filter(id=invoice_id).exists():
        mirror_refresh(kind="invoice", object_id=invoice_id)
    elif payment.lines and payment.invoice_number:
        return payment
    return selectors.team_payment(team=team, payment_id=payment.id, invoice_hint=invoice_id) or payment


def receipt_for_charge_get_or_create(*, team: Team, payment_id: str, language: str | None = None,
                                     invoice_hint: str = "") -> Receipt:
    """
    The receipt of one of the team's successful payments (by ch_ or pi_ id), issued on first call and returned
    as issued afterwards. Another team's payment, or one that never succeeded, is NotFoundError.
    """
    from .emails import team_owner_language

    existing = Receipt.objects.filter(team=team, kind=Receipt.Kind.PAYMENT).filter(
        stripe_charge_id=payment_id).first()
    if existing is not None:
        return existing
    payment = _payment_for_receipt(team=team, payment_id=payment_id, invoice_hint=invoice_hint)
    language = language or team_owner_language(team=team)

    def issue() -> Receipt:
        return _receipt_issue(
            team=team, kind=Receipt.Kind.PAYMENT, charge_id=payment.id, refund_id="",
            amount_minor=payment.amount_minor, currency=payment.currency, language=language,
            render=lambda number: receipt_pdf_render(team=team, payment=payment, number=number, language=language),
        )

    return _get_or_issue(issue=issue, lookup={"kind": Receipt.Kind.PAYMENT, "stripe_charge_id": payment.id})


def receipt_for_refund_get_or_create(*, team: Team, payment_id: str, refund_id: str,
                                     language: str | None = None) -> Receipt:
    """The receipt of one refund of a team's payment: issued once, referring to the payment's own receipt."""
    from .emails import team_owner_language

    existing = Receipt.objects.filter(team=team, kind=Receipt.Kind.REFUND, stripe_refund_id=refund_id).first()
    if existing is not None:
        return existing
    payment = _payment_for_receipt(team=team, payment_id=payment_id)
    refund = next((r for r in payment.refunds if r.id == refund_id and r.status == "succeeded"), None)
    if refund is None:
        raise NotFoundError("not_found", _("Refund not found."))
    language = language or team_owner_language(team=team)
    original = receipt_for_charge_get_or_create(team=team, payment_id=payment.id, language=language)

    def issue() -> Receipt:
        return _receipt_issue(
            team=team, kind=Receipt.Kind.REFUND, charge_id=payment.id, refund_id=refund.id,
            amount_minor=refund.amount_minor, currency=payment.currency, language=language,
            render=lambda number: receipt_pdf_render(team=team, payment=payment, number=number, language=language,
                                                     refund=refund, original_number=original.number),
        )

    return _get_or_issue(issue=issue, lookup={"kind": Receipt.Kind.REFUND, "stripe_refund_id": refund.id})


# --- the PDF -------------------------------------------------------------------------------------------------------
def _date_text(value) -> str:
    return formats.date_format(value, "DATE_FORMAT") if value else ""


def _line_text(payment: selectors.PaymentRow, line) -> str:
    """A credit pack's line in the receipt's language (the row may have been read in another one)."""
    pack = load_catalog().credit_pack_for_lookup_key(payment.lookup_key) if payment.lookup_key else None
    if pack is not None and payment.kind == "credit_pack":
        return pack.display_name
    return line.description or _("Payment")


def _payment_method_text(payment: selectors.PaymentRow) -> str:
    if payment.payment_method_type in ("pix", "boleto"):
        return {"pix": "Pix", "boleto": "Boleto"}[payment.payment_method_type]  # names, the same in every language
    if payment.card_brand or payment.card_last4:
        return _("%(brand)s ending in %(last4)s") % {"brand": payment.card_brand.title() or _("Card"),
                                                     "last4": payment.card_last4}
    return _("Card")


def receipt_pdf_render(*, team: Team, payment: selectors.PaymentRow, number: str, language: str,
                       refund: selectors.PaymentRefund | None = None, original_number: str = "") -> bytes:
    """The receipt as PDF bytes (A4, standard Helvetica: WinAnsi covers Portuguese, R$, US$ and €)."""
    from reportlab.lib import colors
    from reportlab.lib.pagesizes import A4
    from reportlab.lib.styles import getSampleStyleSheet
    from reportlab.lib.units import mm
    from reportlab.platypus import Paragraph, SimpleDocTemplate, Spacer, Table, TableStyle
    from xml.sax.saxutils import escape

    with translation.override(language):
        def money(amount: int) -> str:
            return format_money(amount, payment.currency, language)

        styles = getSampleStyleSheet()
        title = _("Refund receipt") if refund else _("Receipt")
        buffer = io.BytesIO()
        doc = SimpleDocTemplate(buffer, pagesize=A4, leftMargin=18 * mm, rightMargin=18 * mm, topMargin=18 * mm,
                                bottomMargin=18 * mm, title=f"{title} {number}", author=settings.RECEIPT_SELLER_NAME)

        def para(text: str, style: str = "Normal") -> Paragraph:
            return Paragraph(escape(text), styles[style])

        seller = [settings.RECEIPT_SELLER_NAME, settings.RECEIPT_SELLER_ADDRESS]
        if settings.RECEIPT_SELLER_TAX_ID:
            seller.append(_("Tax ID: %(tax_id)s") % {"tax_id": settings.RECEIPT_SELLER_TAX_ID})
        story = [para(f"{title} {number}", "Title"),
                 Paragraph("<br/>".join(escape(line) for line in seller if line), styles["Normal"]),
                 Spacer(1, 6 * mm)]
        facts = [
            [_("Receipt number"), number],
            [_("Date"), _date_text(refund.created if refund else payment.created)],
            [_("Billed to"), f"{team.name} <{team.billing_email}>" if team.billing_email else team.name],
            [_("Payment"), f"{PaymentKind(payment.kind).label} · {payment.id}"],
            [_("Payment method"), _payment_method_text(payment)],
        ]
        if payment.invoice_number:
            facts.append([_("Invoice"), payment.invoice_number])
        if refund:
            facts.append([_("Refund of receipt"), original_number])
        story += [_table(facts, colors=colors, TableStyle=TableStyle, Table=Table), Spacer(1, 6 * mm)]

        if refund:
            rows = [[_("Description"), _("Amount")],
                    [_("Refund of the payment of %(date)s") % {"date": _date_text(payment.created)},
                     money(-refund.amount_minor)],
                    [_("Total refunded"), money(refund.amount_minor)]]
        else:
            rows = [[_("Description"), _("Quantity"), _("Amount")]]
            rows += [[_line_text(payment, line), "" if line.quantity is None else str(line.quantity),
                      money(line.amount_minor)] for line in payment.lines]
            if payment.tax_minor:
                rows.append([_("Tax"), "", money(payment.tax_minor)])
            rows.append([_("Total paid"), "", money(payment.amount_minor)])
        story += [_table(rows, colors=colors, TableStyle=TableStyle, Table=Table, header=True, total=True),
                  Spacer(1, 6 * mm)]

        refunds = [r for r in payment.refunds if r.status == "succeeded"]
        if refunds and not refund:
            story.append(para(_("Refunds"), "Heading3"))
            story.append(_table([[_date_text(r.created), money(-r.amount_minor)] for r in refunds], colors=colors,
                                TableStyle=TableStyle, Table=Table))
            story.append(Spacer(1, 4 * mm))
            story.append(para(_("Net paid after refunds: %(amount)s") % {
                "amount": money(payment.amount_minor - payment.amount_refunded_minor)}))
        story.append(Spacer(1, 8 * mm))
        story.append(para(_("Thank you. This receipt was issued by %(seller)s; keep it for your records.") % {
            "seller": settings.RECEIPT_SELLER_NAME}, "Italic"))
        doc.build(story)
    return buffer.getvalue()


def _table(rows, *, colors, TableStyle, Table, header: bool = False, total: bool = False):
    table = Table(rows, hAlign="LEFT", colWidths=None)
    style = [("FONT", (0, 0), (-1, -1), "Helvetica", 10), ("VALIGN", (0, 0), (-1, -1), "TOP"),
             ("ALIGN", (-1, 0), (-1, -1), "RIGHT"), ("BOTTOMPADDING", (0, 0), (-1, -1), 4)]
    if header:
        style += [("FONT", (0, 0), (-1, 0), "Helvetica-Bold", 10), ("LINEBELOW", (0, 0), (-1, 0), 0.5, colors.grey)]
    else:
        style += [("ALIGN", (-1, 0), (-1, -1), "LEFT"), ("TEXTCOLOR", (0, 0), (0, -1), colors.grey)]
    if total:
        style += [("FONT", (0, -1), (-1, -1), "Helvetica-Bold", 10), ("LINEABOVE", (0, -1), (-1, -1), 0.5,
                                                                      colors.grey)]
    table.setStyle(TableStyle(style))
    return table


def receipt_filename(receipt: Receipt) -> str:
    return "receipt-" + re.sub(r"[^A-Za-z0-9_-]+", "-", receipt.number).strip("-") + ".pdf"


# --- emails --------------------------------------------------------------------------------------------------------
@dataclass(frozen=True)
class EmailContent:
    subject: str
    text: str
    html: str
    attachments: tuple[tuple[str, bytes, str], ...]


def _payment_ref(*, team: Team, context: dict) -> str | None:
    """The charge a queued email is about: given, or the payment intent's, or the invoice's (mirror, then Stripe)."""
    if context.get("charge"):
        return context["charge"]
    intent_id = context.get("payment_intent") or ""
    if not intent_id and context.get("invoice"):
        from .stripe_gateway.invoice_payments import payment_intent_id_for_invoice

        intent_id = payment_intent_id_for_invoice(invoice_id=context["invoice"]) or ""
    if not intent_id:
        return None
    payment = selectors.team_payment(team=team, payment_id=intent_id)
    if payment is not None:
        return payment.id
    from .stripe_gateway.payments import payment_intent_retrieve

    latest = payment_intent_retrieve(payment_intent_id=intent_id).get("latest_charge")
    return latest.get("id") if isinstance(latest, dict) else latest


def _mirror_ensure(*, charge_id: str, invoice_id: str = "") -> None:
    """Webhooks may arrive in any order: make sure the charge (and its invoice) are in the mirror before reading."""
    from djstripe.models import Charge, Invoice

    from .services.mirror import mirror_refresh

    if invoice_id and not Invoice.objects.filter(id=invoice_id).exists():
        mirror_refresh(kind="invoice", object_id=invoice_id)
    if not Charge.objects.filter(id=charge_id).exists():
        mirror_refresh(kind="charge", object_id=charge_id)


def _email_content(*, template: str, context: dict, language: str, attachments) -> EmailContent:
    context = {**context, "site_url": settings.SITE_URL.rstrip("/"), "language": language}
    with translation.override(language):
        subject = render_to_string(f"billing/email/{template}_subject.txt", context).strip()
        text = render_to_string(f"billing/email/{template}.txt", context).strip() + "\n"
        html = render_to_string(f"billing/email/{template}.html", context)
    return EmailContent(subject=" ".join(subject.split()), text=text, html=html, attachments=tuple(attachments))


def receipt_email_content(*, team: Team, charge_id: str, language: str, invoice_hint: str = "") -> EmailContent:
    """Subject, text, HTML and the PDF of the receipt email of one payment, in `language`."""
    receipt = receipt_for_charge_get_or_create(team=team, payment_id=charge_id, language=language,
                                               invoice_hint=invoice_hint)
    payment = _payment_for_receipt(team=team, payment_id=charge_id, invoice_hint=invoice_hint)
    with translation.override(language):
        context = {
            "team_name": team.name, "number": receipt.number,
            "amount": format_money(payment.amount_minor, payment.currency, language),
            "kind": str(PaymentKind(payment.kind).label), "date": _date_text(payment.created),
            "payment_method": _payment_method_text(payment),
            "lines": [{"description": _line_text(payment, line), "quantity": line.quantity,
                       "amount": format_money(line.amount_minor, payment.currency, language)} for line in payment.lines],
            "payments_url": settings.SITE_URL.rstrip("/") + reverse("billing:payments"),
            "receipt_url": settings.SITE_URL.rstrip("/") + reverse("billing:payment_receipt", args=[payment.id]),
            "credits": payment.kind == PaymentKind.CREDIT_PACK,
        }
    return _email_content(template="receipt", context=context, language=language,
                          attachments=[(receipt_filename(receipt), bytes(receipt.pdf), "application/pdf")])


def refund_receipt_email_content(*, team: Team, charge_id: str, refund_ids: list[str], language: str) -> EmailContent:
    payment = selectors.team_payment(team=team, payment_id=charge_id)
    if payment is None:
        raise NotFoundError("not_found", "Payment not found.")
    receipts = [receipt_for_refund_get_or_create(team=team, payment_id=charge_id, refund_id=refund_id,
                                                 language=language) for refund_id in refund_ids]
    amount = sum(r.amount_minor for r in receipts)
    context = {
        "team_name": team.name, "numbers": ", ".join(r.number for r in receipts),
        "amount": format_money(amount, payment.currency, language),
        "original_amount": format_money(payment.amount_minor, payment.currency, language),
        "payment_method": "", "payments_url": settings.SITE_URL.rstrip("/") + reverse("billing:payments"),
    }
    with translation.override(language):
        context["payment_method"] = _payment_method_text(payment)
        context["date"] = _date_text(payment.created)
    return _email_content(template="refund_receipt", context=context, language=language,
                          attachments=[(receipt_filename(r), bytes(r.pdf), "application/pdf") for r in receipts])


def _message(*, content: EmailContent, to: list[str]) -> EmailMultiAlternatives:
    message = EmailMultiAlternatives(content.subject, content.text, settings.DEFAULT_FROM_EMAIL, to)
    message.attach_alternative(content.html, "text/html")
    for name, data, mimetype in content.attachments:
        message.attach(name, data, mimetype)
    return message


def receipt_email_dedupe_key(context: dict) -> str | None:
    """
    One receipt email per payment, whichever handler queues it (Checkout's completion and the payment intent's
    success both name a credit pack's payment): keyed by the payment's first known id in the queued context.
    """
    ref = context.get("payment_intent") or context.get("charge") or context.get("invoice")
    return f"receipt:{ref}" if ref else None


def refund_receipt_email_dedupe_key(context: dict) -> str | None:
    """One refund email per set of refunds (a replayed `charge.refunded` does not email it again)."""
    refund_ids = sorted(context.get("refund_ids") or [])
    return f"refund_receipt:{','.join(refund_ids)}"[:255] if refund_ids else None


@team_email_builder("receipt", dedupe=receipt_email_dedupe_key)
def receipt_email_build(*, team: Team, context: dict, language: str,
                        to: list[str]) -> EmailMultiAlternatives | None:
    charge_id = _payment_ref(team=team, context=context)
    if not charge_id:
        logger.warning("receipt email for team %s: no charge found for %r", team.pk, context)
        return None
    _mirror_ensure(charge_id=charge_id, invoice_id=context.get("invoice") or "")
    content = receipt_email_content(team=team, charge_id=charge_id, language=language,
                                    invoice_hint=context.get("invoice") or "")
    return _message(content=content, to=to)


@team_email_builder("refund_receipt", dedupe=refund_receipt_email_dedupe_key)
def refund_receipt_email_build(*, team: Team, context: dict, language: str,
                               to: list[str]) -> EmailMultiAlternatives | None:
    charge_id = context["charge"]
    from .services.mirror import mirror_refresh

    # The refund changed the charge after whatever the mirror holds: re-read it (a Stripe call, outside any
    # transaction: this runs in the email task).
    mirror_refresh(kind="charge", object_id=charge_id)
    refund_ids = list(context.get("refund_ids") or [])
    if not refund_ids:
        # The event's charge did not embed its refunds (API 2022-11 and later, unless expanded): take them from
        # the mirror, newest first, up to the amount the event announced.
        payment = selectors.team_payment(team=team, payment_id=charge_id)
        refund_ids = refunds_new_in_event(
            charge={"refunds": {"data": [{"id": r.id, "status": r.status, "amount": r.amount_minor,
                                          "created": r.created.timestamp() if r.created else 0}
                                         for r in (payment.refunds if payment else ())]}},
            previous={}, refunded_now=int(context.get("refunded_now") or 0))
    if not refund_ids:
        logger.warning("refund email for team %s: no refund found on charge %s", team.pk, charge_id)
        return None
    content = refund_receipt_email_content(team=team, charge_id=charge_id, refund_ids=refund_ids, language=language)
    return _message(content=content, to=to)


def receipt_email_queue(*, team: Team, charge_id: str = "", payment_intent_id: str = "", invoice_id: str = "") -> None:
    """
    Email the payment's receipt (HTML + text, PDF attached) to the team, after the current transaction commits;
    once per payment: the outbox row carries the builder's dedupe key (`receipt_email_dedupe_key`), written in the
    same transaction, so an event applied twice (a replay, a duplicate delivery, two handlers naming one payment)
    queues nothing the second time.
    """
    send_team_email(team=team, template="receipt",
                    context={"charge": charge_id, "payment_intent": payment_intent_id, "invoice": invoice_id})


def refund_receipt_email_queue(*, team: Team, charge_id: str, refund_ids: list[str], refunded_now: int) -> None:
    """
    Email the refund receipt(s) (one email per `charge.refunded` event) after the transaction commits. Without
    `refund_ids` the task finds the newest refunds adding up to `refunded_now` (minor units) in the mirror.
    """
    send_team_email(team=team, template="refund_receipt", context={
        "charge": charge_id, "refund_ids": list(refund_ids), "refunded_now": int(refunded_now)})


def refunds_new_in_event(*, charge: dict, previous: dict, refunded_now: int) -> list[str]:
    """
    The refunds a `charge.refunded` event announces: those of the charge's embedded list that its previous
    attributes did not have; without previous attributes, the newest refunds that add up to `refunded_now`.
    """
    refunds = [r for r in ((charge.get("refunds") or {}).get("data") or []) if r.get("status") == "succeeded"]
    if isinstance((previous.get("refunds") or None), dict):
        seen = {r.get("id") for r in (previous["refunds"].get("data") or [])}
        return [r["id"] for r in refunds if r["id"] not in seen]
    chosen, total = [], 0
    for refund in sorted(refunds, key=lambda r: r.get("created") or 0, reverse=True):
        if total >= refunded_now:
            break
        chosen.append(refund["id"])
        total += int(refund.get("amount") or 0)
    return chosen
