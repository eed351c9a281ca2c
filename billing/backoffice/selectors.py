"""Reads for the back office: Customer 360 context and search by any Stripe id. A fixed number of queries per page."""
import logging
import re
from dataclasses import dataclass

from django.db.models import Q
from djstripe import models as djstripe_models

from accounts.models import Membership, Team
from billing.extensions import credit_ledger
from billing.models import AuditEntry, RefundRequest, WebhookEvent
from billing_site.money import format_money

logger = logging.getLogger("billing.backoffice")

STRIPE_ID = re.compile(r"^(cus|sub|in|ch|py|pi|re|evt)_[A-Za-z0-9_]+$")


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
            "period_start": period_start, "period_end": period_end,
            "cancel_at_period_end": bool(data.get("cancel_at_period_end")),
            "cancel_at": data.get("cancel_at"), "canceled_at": data.get("canceled_at"),
            "trial_end": data.get("trial_end"), "trialing": data.get("status") == "trialing",
        })
    return rows


def _usage_context(team: Team) -> dict:
    """Credits and usage through the credit ledger the usage app registers. Three queries."""
    ledger = credit_ledger()
    summary = ledger.period_summary(team=team)
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
    """A team's memberships with the user and the team (annotated with its Stripe customer id), in one query."""
    from django.db.models import OuterRef, Subquery

    customer_id = (djstripe_models.Customer.objects.filter(subscriber_id=OuterRef("team_id"))
                   .order_by("-created").values("id")[:1])
    memberships = list(Membership.objects.filter(team_id=team_id).select_related("user", "team")
                       .annotate(team_stripe_customer_id=Subquery(customer_id)).order_by("created"))
    for membership in memberships:
        membership.team.stripe_customer_id = membership.team_stripe_customer_id
    return memberships


def customer_360(*, team: Team, memberships: list[Membership] | None = None) -> dict:
    """
    Everything about one team for the support page, in a fixed number of queries (no N+1, whatever the history):
    memberships, subscriptions, invoices, payments, refund requests, webhook events, audit, credits and usage.
    """
    customer_id = getattr(team, "stripe_customer_id", None)
    if customer_id is None:  # not annotated by the admin's queryset
        customer_id = (djstripe_models.Customer.objects.filter(subscriber=team).order_by("-created")
                       .values_list("id", flat=True).first())
    if memberships is None:
        memberships = list(Membership.objects.filter(team=team).select_related("user").order_by("created"))
    context: dict = {"team": team, "memberships": memberships, "customer_id": customer_id}
    if customer_id:
        context["subscriptions"] = _subscription_rows(
            djstripe_models.Subscription.objects.filter(customer_id=customer_id).order_by("-created")[:10])
        context["invoices"] = list(djstripe_models.Invoice.objects.filter(customer_id=customer_id)
                                   .order_by("-created")[:10])
        charges = list(djstripe_models.Charge.objects.filter(customer_id=customer_id).order_by("-created")[:20])
        context["payments"] = payment_rows(charges=charges)
        # The card of the latest payment: brand, last 4 and expiry only.
        card = next((row.card for row in context["payments"] if row.card), "")
        context["payment_method"] = card
    else:
        context.update(subscriptions=[], invoices=[], payments=[], payment_method="")
    context["refund_requests"] = list(RefundRequest.objects.filter(team=team)
                                      .select_related("requested_by", "approved_by")[:20])
    context["webhook_events"] = _webhook_events(customer_id)
    context["audit_entries"] = list(AuditEntry.objects.filter(team=team).order_by("-id")[:20])
    context.update(_usage_context(team))
    return context
