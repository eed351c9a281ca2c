"""Reads for the back office: Customer 360 context and search by any Stripe id. A fixed number of queries per page."""
import logging
import re
from dataclasses import dataclass, field
from datetime import UTC, datetime
from decimal import Decimal, InvalidOperation

from django.db.models import Q
from django.utils import timezone
from djstripe import models as djstripe_models

from accounts.models import Membership, Team
from billing.extensions import credit_ledger
from billing.models import AuditEntry, CreditNote, OutboundEmail, RefundRequest, WebhookEvent
from billing_site.money import format_money

logger = logging.getLogger("billing.backoffice")

STRIPE_ID = re.compile(r"^(cus|sub|in|ch|py|pi|re|cn|evt)_[A-Za-z0-9_]+$")
# "4242 49.00" / "4242 49,90" / "•••• 4242 $49.00": a card's last 4 digits and a payment amount (major units).
CARD_AND_AMOUNT = re.compile(r"^(?:[•*.\s]*)(\d{4})\s+[^\d]{0,4}(\d{1,9}(?:[.,]\d{1,2})?)$")


def _teams_of_customers(customer_ids) -> list[int]:
    return list(djstripe_models.Customer.objects.filter(id__in=customer_ids, subscriber__isnull=False)
                .values_list("subscriber_id", flat=True))


def team_ids_for_stripe_id(*, term: str) -> list[int] | None:
    """Teams an exact Stripe id belongs to (None when `term` is not a Stripe id). Every lookup hits a unique index."""
    if not STRIPE_ID.match(term):
        return None
    prefix = term.split("_", 1)[0]
    customer_ids: list[str] = []
    team_ids: list[int] = []
    if prefix == "cus":
        customer_ids = [term]
    elif prefix == "sub":
        customer_ids = list(djstripe_models.Subscription.objects.filter(id=term).values_list("customer_id", flat=True))
    elif prefix == "in":
        customer_ids = list(djstripe_models.Invoice.objects.filter(id=term).values_list("customer_id", flat=True))
    elif prefix in ("ch", "py"):
        customer_ids = list(djstripe_models.Charge.objects.filter(id=term).values_list("customer_id", flat=True))
        team_ids = list(RefundRequest.objects.filter(stripe_charge_id=term).values_list("team_id", flat=True))
    elif prefix == "pi":
        customer_ids = list(djstripe_models.PaymentIntent.objects.filter(id=term)
                            .values_list("customer_id", flat=True))
    elif prefix == "re":
        customer_ids = list(djstripe_models.Refund.objects.filter(id=term).values_list("charge__customer_id",
                                                                                      flat=True))
        team_ids = list(RefundRequest.objects.filter(stripe_refund_id=term).values_list("team_id", flat=True))
    elif prefix == "cn":
        team_ids = list(CreditNote.objects.filter(stripe_id=term).values_list("team_id", flat=True))
        customer_ids = list(CreditNote.objects.filter(stripe_id=term).values_list("stripe_customer_id", flat=True))
    elif prefix == "evt":
        customer_ids = list(WebhookEvent.objects.filter(stripe_event_id=term)
                            .values_list("stripe_customer_id", flat=True))
        if not any(customer_ids):  # an event that reached the mirror without passing through the webhook view
            customer_ids = [
                ((data or {}).get("object") or {}).get("customer")
                for data in djstripe_models.Event.objects.filter(id=term).values_list("data", flat=True)
            ]
    customer_ids = [c for c in customer_ids if c]
    return sorted({*team_ids, *_teams_of_customers(customer_ids)} - {None})


def team_ids_for_card_and_amount(*, term: str) -> list[int] | None:
    """
    Teams with a payment of that amount on a card ending in those 4 digits ("4242 49.00"); None when `term` is not
    of that shape. The amount is in major units of whatever currency (dj-stripe's decimal `amount` column), so
    "4242 49" finds $49.00 and R$ 49,00 alike: staff read the currency on the 360 page. One indexed query
    (migration 0109: amount + last 4).
    """
    match = CARD_AND_AMOUNT.match(term.strip())
    if not match:
        return None
    last4, amount_text = match.groups()
    try:
        amount = Decimal(amount_text.replace(",", "."))
    except InvalidOperation:
        return None
    customer_ids = (djstripe_models.Charge.objects.filter(
        amount=amount, stripe_data__payment_method_details__card__last4=last4).values("customer_id")[:200])
    return sorted(set(djstripe_models.Customer.objects.filter(id__in=customer_ids, subscriber__isnull=False)
                      .values_list("subscriber_id", flat=True)))


def team_search_filter(*, term: str) -> Q:
    """Name, billing email or member email (the search box of the Customer 360 list)."""
    members = Membership.objects.filter(user__email__icontains=term).values("team_id")
    return Q(name__icontains=term) | Q(billing_email__icontains=term) | Q(pk__in=members)


@dataclass(frozen=True)
class PaymentRow:
    charge: djstripe_models.Charge
    amount_minor: int
    currency: str
    refunded_minor: int
    status: str
    disputed: bool
    refundable: bool
    card: str

    @property
    def amount_display(self) -> str:
        return format_money(self.amount_minor, self.currency)

    @property
    def refunded_display(self) -> str:
        return format_money(self.refunded_minor, self.currency) if self.refunded_minor else ""


def _card_summary(card: dict | None) -> str:
    """Brand, last 4 and expiry: never more (DESIGN invariant 5)."""
    if not card:
        return ""
    exp = f"{int(card.get('exp_month') or 0):02d}/{card.get('exp_year')}" if card.get("exp_year") else ""
    return " ".join(x for x in [(card.get("brand") or "").title(), f"•••• {card.get('last4')}" if card.get("last4")
                                else "", exp] if x)


def payment_rows(*, charges) -> list[PaymentRow]:
    rows = []
    for charge in charges:
        data = charge.stripe_data or {}
        amount = int(data.get("amount") or 0)
        refunded = int(data.get("amount_refunded") or 0)
        status = data.get("status") or str(charge.status or "")
        disputed = bool(data.get("disputed"))
        card = ((data.get("payment_method_details") or {}).get("card")) or None
        rows.append(PaymentRow(charge=charge, amount_minor=amount, currency=(data.get("currency") or "").lower(),
                               refunded_minor=refunded, status=status, disputed=disputed,
                               refundable=status == "succeeded" and not disputed and refunded < amount,
                               card=_card_summary(card)))
    return rows


def unix_to_datetime(value) -> datetime | None:
    """Stripe's unix seconds as an aware datetime (templates show it in the staff member's time zone)."""
    if value in (None, ""):
        return None
    try:
        return datetime.fromtimestamp(int(value), tz=UTC)
    except (TypeError, ValueError, OverflowError):
        return None


def _subscription_rows(subscriptions) -> list[dict]:
    rows = []
    for sub in subscriptions:
        data = sub.stripe_data or {}
        items = ((data.get("items") or {}).get("data")) or []
        price = (items[0].get("price") or {}) if items else {}
        period_end = data.get("current_period_end") or (items[0].get("current_period_end") if items else None)
        period_start = data.get("current_period_start") or (items[0].get("current_period_start") if items else None)
        rows.append({
            "subscription": sub,
            "status": data.get("status") or "",
            "plan": price.get("lookup_key") or price.get("nickname") or price.get("id") or "",
            "amount": format_money(int(price.get("unit_amount") or 0), price.get("currency") or "usd")
            if price.get("unit_amount") is not None else "",
            "interval": ((price.get("recurring") or {}).get("interval")) or "",
            "period_start": unix_to_datetime(period_start), "period_end": unix_to_datetime(period_end),
            "cancel_at_period_end": bool(data.get("cancel_at_period_end")),
            "cancel_at": unix_to_datetime(data.get("cancel_at")),
            "canceled_at": unix_to_datetime(data.get("canceled_at")),
            "trial_end": unix_to_datetime(data.get("trial_end")), "trialing": data.get("status") == "trialing",
            "paused": bool(data.get("pause_collection")),
            "latest_invoice_id": data.get("latest_invoice") if isinstance(data.get("latest_invoice"), str)
            else (data.get("latest_invoice") or {}).get("id"),
        })
    return rows


@dataclass(frozen=True)
class InvoiceRow:
    invoice: djstripe_models.Invoice
    status: str
    currency: str
    total_minor: int
    amount_remaining_minor: int
    credited_minor: int
    attempt_count: int
    next_payment_attempt: datetime | None
    number: str
    credit_notes: list = field(default_factory=list)

    @property
    def total_display(self) -> str:
        return format_money(self.total_minor, self.currency) if self.currency else ""

    @property
    def remaining_display(self) -> str:
        return format_money(self.amount_remaining_minor, self.currency) if self.currency else ""

    @property
    def credited_display(self) -> str:
        return format_money(self.credited_minor, self.currency) if self.credited_minor else ""

    @property
    def failed(self) -> bool:
        return self.status == "open" and self.attempt_count > 0


def invoice_rows(*, invoices, credit_notes=()) -> list[InvoiceRow]:
    notes_by_invoice: dict[str, list] = {}
    for note in credit_notes:
        notes_by_invoice.setdefault(note.stripe_invoice_id, []).append(note)
    rows = []
    for invoice in invoices:
        data = invoice.stripe_data or {}
        rows.append(InvoiceRow(
            invoice=invoice, status=data.get("status") or "", currency=(data.get("currency") or "").lower(),
            total_minor=int(data.get("total") or 0), amount_remaining_minor=int(data.get("amount_remaining") or 0),
            credited_minor=int(data.get("post_payment_credit_notes_amount") or 0)
            + int(data.get("pre_payment_credit_notes_amount") or 0),
            attempt_count=int(data.get("attempt_count") or 0),
            next_payment_attempt=unix_to_datetime(data.get("next_payment_attempt")),
            number=data.get("number") or "", credit_notes=notes_by_invoice.get(invoice.id, []),
        ))
    return rows


def _usage_context(team: Team) -> dict:
    """Credits and usage through the credit ledger the usage app registers. Three queries."""
    ledger = credit_ledger()
    summary = ledger.period_summary(team=team)
    # The summary is the API's shape (ISO strings): the page shows dates in the staff member's time zone.
    from django.utils.dateparse import parse_datetime

    summary = {**summary, **{key: parse_datetime(summary[key]) if isinstance(summary.get(key), str)
                             else summary.get(key) for key in ("period_start", "period_end")}}
    return {
        "usage_summary": summary,
        "credits_balance": summary["credits_balance"],
        "ledger": list(ledger.ledger(team=team)[:10]),
    }


def _webhook_events(customer_id: str | None) -> list[WebhookEvent]:
    if not customer_id:
        return []
    # The list never shows the payload: leave the big JSON column out of the query.
    return list(WebhookEvent.objects.filter(stripe_customer_id=customer_id).defer("payload")
                .order_by("-received_at")[:15])


def team_memberships_with_team(*, team_id: int) -> list[Membership]:
    """
    A team's memberships with the user and the team, annotated with its Stripe customer id and the customer's
    default card (`invoice_settings.default_payment_method`, mirrored), in one query.
    """
    from django.db.models import JSONField, OuterRef, Subquery

    customers = djstripe_models.Customer.objects.filter(subscriber_id=OuterRef("team_id")).order_by("-created")
    memberships = list(
        Membership.objects.filter(team_id=team_id).select_related("user", "team")
        .annotate(team_stripe_customer_id=Subquery(customers.values("id")[:1]),
                  team_default_card=Subquery(customers.values("default_payment_method__stripe_data__card")[:1],
                                             output_field=JSONField()))
        .order_by("created"))
    for membership in memberships:
        membership.team.stripe_customer_id = membership.team_stripe_customer_id
        membership.team.default_card = membership.team_default_card
    return memberships


def _default_card(team: Team, customer_id: str | None) -> dict | None:
    card = getattr(team, "default_card", None)
    if card is None and customer_id and not hasattr(team, "default_card"):
        card = (djstripe_models.Customer.objects.filter(id=customer_id)
                .values_list("default_payment_method__stripe_data__card", flat=True).first())
    if isinstance(card, str):  # SQLite hands a JSON subquery back as text
        import json

        card = json.loads(card)
    return card or None


def card_state(card: dict | None) -> dict:
    """Brand, last 4 and expiry of a card (never more, DESIGN invariant 5) and whether it has expired."""
    if not card:
        return {"summary": "", "expired": False}
    now = datetime.now(tz=UTC)
    year, month = int(card.get("exp_year") or 0), int(card.get("exp_month") or 0)
    return {"summary": _card_summary(card), "expired": bool(year) and (year, month) < (now.year, now.month)}


def receipt_choices(*, payments: list[PaymentRow]) -> list[tuple[str, str]]:
    """The resend-receipt picker: date, amount and description of each successful payment, not bare ch_ ids."""
    choices = []
    for row in payments:
        if row.status != "succeeded":
            continue
        description = (row.charge.stripe_data or {}).get("description") or "Payment"
        created = timezone.localtime(row.charge.created).strftime("%Y-%m-%d") if row.charge.created else ""
        choices.append((row.charge.id, f"{created} · {row.amount_display} · {description}"))
    return choices


def team_refundable_payments(*, team: Team, limit: int = 20) -> list[PaymentRow]:
    """Step 1 of a refund from the 360 page: the team's latest payments that can still be refunded. Two queries."""
    customer_id = getattr(team, "stripe_customer_id", None) or (
        djstripe_models.Customer.objects.filter(subscriber=team).order_by("-created").values_list("id", flat=True)
        .first())
    if not customer_id:
        return []
    charges = djstripe_models.Charge.objects.filter(customer_id=customer_id).order_by("-created")[:limit]
    return [row for row in payment_rows(charges=charges) if row.refundable]


def team_credit_notes(*, team: Team, limit: int = 50) -> list[CreditNote]:
    """
    A team's credit notes (newest first), from the project's mirror: for the Customer 360 page, the invoice pages
    and the customer's payments page (/billing/payments/, issue 13). One query.
    """
    return list(CreditNote.objects.filter(team=team).order_by("-stripe_created", "-id")[:limit])


def _dunning_state(subscriptions: list[dict], invoices: list[InvoiceRow], card: dict) -> list[dict]:
    """Past-due / unpaid subscriptions of one team with their failed invoice (from the already loaded rows)."""
    by_id = {row.invoice.id: row for row in invoices}
    cases = []
    for sub in subscriptions:
        if sub["status"] not in DUNNING_STATUSES:
            continue
        cases.append({"subscription": sub, "invoice": by_id.get(sub["latest_invoice_id"]), "card": card})
    return cases


def customer_360(*, team: Team, memberships: list[Membership] | None = None) -> dict:
    """
    Everything about one team for the support page, in a fixed number of queries (no N+1, whatever the history):
    memberships (+ customer and default card), subscriptions, invoices, payments, credit notes, refund requests,
    webhook events, audit, credits and usage.
    """
    customer_id = getattr(team, "stripe_customer_id", None)
    if customer_id is None:  # not annotated by the admin's queryset
        customer_id = (djstripe_models.Customer.objects.filter(subscriber=team).order_by("-created")
                       .values_list("id", flat=True).first())
    if memberships is None:
        memberships = list(Membership.objects.filter(team=team).select_related("user").order_by("created"))
    context: dict = {"team": team, "memberships": memberships, "customer_id": customer_id}
    credit_notes = team_credit_notes(team=team, limit=20)
    context["credit_notes"] = credit_notes
    if customer_id:
        context["subscriptions"] = _subscription_rows(
            djstripe_models.Subscription.objects.filter(customer_id=customer_id).order_by("-created")[:10])
        context["invoices"] = invoice_rows(
            invoices=djstripe_models.Invoice.objects.filter(customer_id=customer_id).order_by("-created")[:10],
            credit_notes=credit_notes)
        charges = list(djstripe_models.Charge.objects.filter(customer_id=customer_id).order_by("-created")[:20])
        context["payments"] = payment_rows(charges=charges)
        default_card = _default_card(team, customer_id)
        # The customer's default card (what Stripe charges next); the latest payment's card only when none is set.
        context["card"] = card_state(default_card) | {"is_default": bool(default_card)}
        if not default_card:
            latest = next((row.card for row in context["payments"] if row.card), "")
            context["card"] = {"summary": latest, "expired": False, "is_default": False}
        context["payment_method"] = context["card"]["summary"]
        context["dunning"] = _dunning_state(context["subscriptions"], context["invoices"], context["card"])
    else:
        context.update(subscriptions=[], invoices=[], payments=[], payment_method="", dunning=[],
                       card={"summary": "", "expired": False, "is_default": False})
    context["refund_requests"] = list(RefundRequest.objects.filter(team=team)
                                      .select_related("requested_by", "approved_by")[:20])
    context["webhook_events"] = _webhook_events(customer_id)
    context["audit_entries"] = list(AuditEntry.objects.filter(team=team).order_by("-id")[:20])
    context.update(_usage_context(team))
    return context


# --------------------------------------------------------------------------------------------------- dunning

DUNNING_STATUSES = ("past_due", "unpaid")


@dataclass(frozen=True)
class DunningRow:
    subscription: djstripe_models.Subscription
    team: Team | None
    status: str
    plan: str
    invoice: InvoiceRow | None
    card: dict
    paused: bool


def dunning_cases(*, limit: int = 50) -> list[DunningRow]:
    """
    Subscriptions past due or unpaid, newest first, each with its failed invoice (attempt count and Stripe's next
    retry), the team and the customer's default card. Three queries whatever the number of cases (subscriptions
    with customer and team, their latest invoices, their default payment methods).
    """
    subscriptions = list(
        djstripe_models.Subscription.objects.filter(stripe_data__status__in=list(DUNNING_STATUSES))
        .select_related("customer__subscriber", "customer__default_payment_method")
        .order_by("-created")[:limit])
    rows = _subscription_rows(subscriptions)
    invoice_ids = [row["latest_invoice_id"] for row in rows if row["latest_invoice_id"]]
    invoices = {row.invoice.id: row for row in invoice_rows(
        invoices=djstripe_models.Invoice.objects.filter(id__in=invoice_ids))}
    cases = []
    for row in rows:
        sub = row["subscription"]
        customer = sub.customer
        pm = customer.default_payment_method if customer is not None else None
        cases.append(DunningRow(
            subscription=sub, team=customer.subscriber if customer is not None else None, status=row["status"],
            plan=row["plan"], invoice=invoices.get(row["latest_invoice_id"]),
            card=card_state(((pm.stripe_data or {}).get("card")) if pm is not None else None), paused=row["paused"]))
    return cases


# --------------------------------------------------------------------------------------------------- admin home

def backoffice_home(*, limit: int = 10) -> dict:
    """The admin home's work queues: refund requests waiting for approval (and their count), recent failed refund
    requests, recent parked webhook events and emails, and the number of dunning cases. Six small indexed queries."""
    waiting = RefundRequest.objects.filter(status=RefundRequest.Status.REQUESTED)
    return {
        "waiting_count": waiting.count(),
        "waiting": list(waiting.select_related("team", "requested_by").order_by("created", "id")[:limit]),
        "failed_refunds": list(RefundRequest.objects.filter(status=RefundRequest.Status.FAILED)
                               .select_related("team").order_by("-updated")[:limit]),
        "parked_events": list(WebhookEvent.objects.filter(status=WebhookEvent.Status.PARKED).defer("payload")
                              .order_by("-received_at")[:limit]),
        "parked_emails": list(OutboundEmail.objects.filter(status=OutboundEmail.Status.PARKED).select_related("team")
                              .defer("context", "last_error").order_by("-created_at")[:limit]),
        "dunning_count": djstripe_models.Subscription.objects.filter(
            stripe_data__status__in=list(DUNNING_STATUSES))[:1000].count(),
    }
