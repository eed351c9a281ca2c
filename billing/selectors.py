"""Reads for billing: the team's customer, its mirrored subscription, its plan and the plan's limits."""
from contextlib import contextmanager
from contextvars import ContextVar
from dataclasses import dataclass
from datetime import datetime, timedelta, timezone as dt_timezone

from django.core.cache import cache
from django.db.models import F
from django.utils.translation import gettext as _
from django.utils import timezone

from accounts.models import Team

from .catalog import Plan, load_catalog
from .models import BillingProfile
from .stripe_gateway.sync import stripe_object_customer_id

# A subscription in these states gives the team its paid plan. past_due keeps the plan while Stripe retries the card
# (dunning); unpaid, canceled, incomplete and paused fall back to free.
PLAN_GRANTING_STATUSES = ("active", "trialing", "past_due")
# The plan is read on every metered API call: cache it briefly; webhook processing clears it on every change.
TEAM_PLAN_CACHE_SECONDS = 60


@dataclass(frozen=True)
class PlanLimits:
    plan_key: str
    seats: int | None
    rate_limit_per_second: int
    included: dict[str, int]
    overage: str  # "credits" | "metered"


def team_stripe_customer_id(*, team: Team) -> str | None:
    """The team's Stripe customer id, or None (never had one, or it was deleted). `BillingProfile` is the source."""
    return BillingProfile.objects.filter(team=team).values_list("stripe_customer_id", flat=True).first()


def customer_team(*, stripe_customer_id: str | None) -> Team | None:
    """The team a Stripe customer belongs to, or None (unknown, or deleted and unlinked). Reads `BillingProfile`."""
    if not stripe_customer_id:
        return None
    read_once = _CUSTOMER_TEAMS.get()
    if read_once is not None and stripe_customer_id in read_once[0]:
        return read_once[1].get(stripe_customer_id)
    return Team.objects.filter(billing_profile__stripe_customer_id=stripe_customer_id).first()


# Customers whose team was read once for a block of work (a webhook drain's batch): (asked ids, id → team).
_CUSTOMER_TEAMS: ContextVar[tuple[set[str], dict[str, Team]] | None] = ContextVar("customer_teams", default=None)


@contextmanager
def customer_teams_read_once(*, stripe_customer_ids: set[str]):
    """
    Within the block, `customer_team` answers for these customers from one query instead of one each. Only for work
    that does not link or unlink customers meanwhile (the drain keeps customer events out of its batches).
    """
    ids = set(stripe_customer_ids) - {""}
    teams = {team.customer_id: team for team in Team.objects.filter(billing_profile__stripe_customer_id__in=ids)
             .annotate(customer_id=F("billing_profile__stripe_customer_id"))} if ids else {}
    token = _CUSTOMER_TEAMS.set((ids, teams))
    try:
        yield
    finally:
        _CUSTOMER_TEAMS.reset(token)


def team_subscription(*, team: Team, include_ended: bool = False):
    """The team's current mirrored subscription (dj-stripe `Subscription`), newest first; None when there is none."""
    from djstripe.models import Subscription

    customer_id = team_stripe_customer_id(team=team)
    if not customer_id:
        return None
    subscriptions = Subscription.objects.filter(customer_id=customer_id).order_by("-created")
    if not include_ended:
        subscriptions = subscriptions.filter(stripe_data__status__in=PLAN_GRANTING_STATUSES)
    return subscriptions.first()


def subscription_items(subscription) -> list[dict]:
    return list(((subscription.stripe_data or {}).get("items") or {}).get("data") or [])


def item_is_metered(item: dict) -> bool:
    """A metered (usage, e.g. overage) item: billed from meter events, it never says which plan the team is on."""
    return ((item.get("price") or {}).get("recurring") or {}).get("usage_type") == "metered"


def subscription_licensed_items(items: list[dict]) -> list[dict]:
    """The flat (licensed) items of a subscription's `items.data`: the plan's price, never its metered overage."""
    return [item for item in items if not item_is_metered(item)]


def subscription_metered_items(items: list[dict]) -> list[dict]:
    return [item for item in items if item_is_metered(item)]


def plan_of_items(items: list[dict]) -> tuple[Plan, dict] | None:
    """The catalog plan a list of subscription items pays for, and its licensed item's price dict."""
    catalog = load_catalog()
    for item in subscription_licensed_items(items):
        price = item.get("price") or {}
        found = catalog.plan_for_lookup_key(price.get("lookup_key") or "")
        if found:
            return found[0], price
        # Staff attach custom prices (enterprise) to a product whose metadata names the plan.
        plan_key = (price.get("metadata") or {}).get("plan_key")
        if plan_key:
            try:
                return catalog.plan(plan_key), price
            except KeyError:
                continue
    return None


def subscription_plan_and_price(subscription) -> tuple[Plan, dict] | None:
    """The catalog plan a subscription pays for, and the licensed item's price dict (metered items are skipped)."""
    return plan_of_items(subscription_items(subscription))


def overage_price_ids(*, plan: Plan, interval: str) -> dict[str, str]:
    """Meter key -> active Stripe price id of the plan's metered overage prices for subscriptions at `interval`."""
    return {price.meter: price_id_for_lookup_key(price.lookup_key) for price in plan.overage_prices_for(interval)}


def subscription_period_end(subscription) -> datetime | None:
    """End of the current period. Newer API versions keep it on the items, older ones on the subscription."""
    data = subscription.stripe_data or {}
    stamp = data.get("current_period_end") or max(
        (item.get("current_period_end") or 0 for item in subscription_items(subscription)), default=0
    )
    return datetime.fromtimestamp(stamp, tz=dt_timezone.utc) if stamp else None


def subscription_period_start(subscription) -> datetime | None:
    data = subscription.stripe_data or {}
    stamp = data.get("current_period_start") or min(
        (item.get("current_period_start") or 0 for item in subscription_items(subscription)), default=0
    )
    return datetime.fromtimestamp(stamp, tz=dt_timezone.utc) if stamp else None


def _team_plan_cache_key(team_id: int) -> str:
    return f"billing:team_plan:{team_id}"


def team_plan_cache_clear(*, team_id: int) -> None:
    cache.delete(_team_plan_cache_key(team_id))


def team_plan(*, team: Team) -> Plan:
    """The catalog plan the team is on: its mirrored subscription's plan, or `free` when none grants one."""
    catalog = load_catalog()
    key = _team_plan_cache_key(team.pk)
    plan_key = cache.get(key)
    if plan_key is None:
        subscription = team_subscription(team=team)
        found = subscription_plan_and_price(subscription) if subscription is not None else None
        plan_key = found[0].key if found else catalog.free_plan.key
        cache.set(key, plan_key, TEAM_PLAN_CACHE_SECONDS)
    try:
        return catalog.plan(plan_key)
    except KeyError:
        return catalog.free_plan


def team_plan_limits(*, team: Team) -> PlanLimits:
    plan = team_plan(team=team)
    return PlanLimits(
        plan_key=plan.key,
        seats=plan.seats,
        rate_limit_per_second=plan.rate_limit_per_second,
        included=dict(plan.included),
        overage=plan.overage,
    )


def team_has_had_subscription(*, team: Team) -> bool:
    """Trials are for first-time subscribers only: any earlier subscription, even canceled, counts."""
    from djstripe.models import Subscription

    customer_id = team_stripe_customer_id(team=team)
    return bool(customer_id) and Subscription.objects.filter(customer_id=customer_id).exists()


def price_id_for_lookup_key(lookup_key: str) -> str:
    """The active Stripe price for a lookup key, from the mirror billing_setup filled (Stripe when missing)."""
    from djstripe.models import Price

    price = Price.objects.filter(lookup_key=lookup_key, active=True).order_by("-created").first()
    if price is not None:
        return price.id
    from .stripe_gateway.products import price_list

    found = price_list(lookup_keys=[lookup_key])
    if not found:
        from billing_site.errors import NotFoundError

        raise NotFoundError("unknown_lookup_key", _("There is no price with the lookup key “%(lookup_key)s”.") % {"lookup_key": lookup_key})
    return found[0]["id"]


# -- pages -----------------------------------------------------------------------------------------------------------
def _price_amounts(lookup_key: str) -> dict[str, int]:
    """Amounts per currency of the live price (mirror), falling back to the catalog before billing_setup ran."""
    from djstripe.models import Price

    price = Price.objects.filter(lookup_key=lookup_key, active=True).order_by("-created").first()
    if price is None:
        return {}
    data = price.stripe_data or {}
    amounts = {data.get("currency", ""): data.get("unit_amount")}
    for currency, option in (data.get("currency_options") or {}).items():
        amounts[currency] = option.get("unit_amount")
    return {k: v for k, v in amounts.items() if v is not None}


def price_amounts(*, lookup_key: str) -> dict[str, int]:
    """Currency -> minor units of the active price with this lookup key (from the mirror; empty when unknown)."""
    return _price_amounts(lookup_key)


def pricing_table(*, currency: str, language: str | None = None) -> dict:
    from billing_site.money import format_money

    catalog = load_catalog()
    plans = []
    for plan in catalog.plans:
        prices = []
        for price in plan.prices:
            amount = _price_amounts(price.lookup_key).get(currency, price.amounts.get(currency))
            prices.append({"lookup_key": price.lookup_key, "interval": price.interval, "amount": amount,
                           "amount_text": format_money(amount, currency, language) if amount is not None else ""})
        from billing_site.money import format_unit_price

        overage = [{"text": format_unit_price(price.unit_amount_decimal[currency], currency, language)}
                   for price in plan.overage_prices_for("month") if currency in price.unit_amount_decimal]
        plans.append({"plan": plan, "prices": prices, "included": plan.included.get("api_call", 0),
                      "overage": overage})
    packs = []
    for pack in catalog.credit_packs:
        amount = _price_amounts(pack.lookup_key).get(currency, pack.amounts.get(currency))
        packs.append({"pack": pack, "amount": amount, "amount_text": format_money(amount, currency, language)})
    return {"plans": plans, "credit_packs": packs}


def _ts(value) -> datetime | None:
    return datetime.fromtimestamp(value, tz=dt_timezone.utc) if value else None


def team_invoices(*, team: Team, limit: int | None = None) -> list[dict]:
    """The team's invoices from the mirror, newest first, as plain dicts (number, period, total, status, URLs)."""
    from djstripe.models import Invoice

    customer_id = team_stripe_customer_id(team=team)
    if not customer_id:
        return []
    rows = Invoice.objects.filter(stripe_data__customer=customer_id).order_by("-created")
    if limit:
        rows = rows[:limit]
    out = []
    for invoice in rows:
        data = invoice.stripe_data or {}
        out.append({
            "id": invoice.id, "number": data.get("number") or "", "status": data.get("status") or "",
            "total": data.get("total") or 0, "amount_paid": data.get("amount_paid") or 0,
            "currency": data.get("currency") or "usd",
            "period_start": _ts(data.get("period_start")), "period_end": _ts(data.get("period_end")),
            "created": invoice.created, "hosted_invoice_url": data.get("hosted_invoice_url") or "",
            "invoice_pdf": data.get("invoice_pdf") or "",
        })
    return out


def team_saved_cards(*, team: Team) -> list[dict]:
    customer_id = team_stripe_customer_id(team=team)
    if not customer_id:
        return []
    from .stripe_gateway.customers import customer_payment_methods

    return [
        {"id": pm["id"], "brand": (pm.get("card") or {}).get("brand", ""), "last4": (pm.get("card") or {}).get("last4", ""),
         "exp": f"{(pm.get('card') or {}).get('exp_month', '')}/{(pm.get('card') or {}).get('exp_year', '')}"}
        for pm in customer_payment_methods(customer_id=customer_id)
    ]


def subscription_summary(subscription) -> dict | None:
    if subscription is None:
        return None
    data = subscription.stripe_data or {}
    found = subscription_plan_and_price(subscription)
    plan, price = found if found else (None, {})
    return {
        "id": subscription.id, "status": data.get("status") or "",
        "plan": plan, "lookup_key": (price or {}).get("lookup_key") or "",
        "interval": ((price or {}).get("recurring") or {}).get("interval") or "",
        "currency": data.get("currency") or "usd",
        "current_period_start": subscription_period_start(subscription),
        "current_period_end": subscription_period_end(subscription),
        "cancel_at_period_end": bool(data.get("cancel_at_period_end")),
        "cancel_at": _ts(data.get("cancel_at")),
        "trial_end": _ts(data.get("trial_end")) if data.get("status") == "trialing" else None,
        "default_payment_method": data.get("default_payment_method"),
    }


def billing_overview(*, team: Team, language: str | None = None) -> dict:
    from billing_site.money import format_money

    subscription = team_subscription(team=team) or team_subscription(team=team, include_ended=True)
    summary = subscription_summary(subscription)
    invoices = team_invoices(team=team, limit=12)
    for invoice in invoices:
        invoice["total_text"] = format_money(invoice["total"], invoice["currency"], language)
    payment_method = None
    pm_id = (summary or {}).get("default_payment_method")
    if pm_id:
        from djstripe.models import PaymentMethod

        pm = PaymentMethod.objects.filter(id=pm_id).first()
        card = ((pm.stripe_data if pm else {}) or {}).get("card") or {}
        if card:
            payment_method = {"brand": card.get("brand", ""), "last4": card.get("last4", ""),
                              "exp": f"{card.get('exp_month')}/{card.get('exp_year')}"}
    catalog = load_catalog()
    other_prices = [
        {"lookup_key": p.lookup_key, "plan": plan.name, "plan_name": plan.display_name, "interval": p.interval}
        for plan in catalog.plans for p in plan.prices
        if not summary or p.lookup_key != summary["lookup_key"]
    ]
    return {
        "plan": team_plan(team=team), "subscription": summary, "invoices": invoices,
        "payment_method": payment_method, "other_prices": other_prices, "credit_packs": catalog.credit_packs,
        "has_customer": bool(team_stripe_customer_id(team=team)),
    }


# --- payments and receipts (issue 13) -------------------------------------------------------------------------------
# The team's charges as the customer reads them: from dj-stripe's mirror (Charge, Refund, PaymentIntent, Invoice),
# never from Stripe, so the page and the API answer without a network call. A team has tens to hundreds of charges:
# the customer and date range filter in SQL, the kind and refund-aware status (which need the invoice and refund
# rows) in Python.
@dataclass(frozen=True)
class PaymentRefund:
    id: str
    amount_minor: int
    currency: str
    status: str  # Stripe's refund status: succeeded, pending, failed, canceled, requires_action
    reason: str
    created: datetime | None


@dataclass(frozen=True)
class PaymentLine:
    description: str
    quantity: int | None
    amount_minor: int


@dataclass(frozen=True)
class PaymentRow:
    id: str  # the charge (ch_...)
    payment_intent: str | None
    kind: str  # forms_payments.PaymentKind
    status: str  # forms_payments.PaymentStatus
    stripe_status: str
    amount_minor: int
    amount_refunded_minor: int
    currency: str
    description: str
    card_brand: str
    card_last4: str
    created: datetime | None
    invoice_id: str | None
    invoice_number: str
    lookup_key: str
    receipt_url: str  # Stripe's hosted receipt
    refunds: tuple[PaymentRefund, ...]
    lines: tuple[PaymentLine, ...]
    tax_minor: int
    payment_method_type: str = "card"  # card | pix | boleto (Stripe's payment_method_details.type)

    @property
    def has_receipt(self) -> bool:
        """Receipts document money received: a failed or still-processing charge has none."""
        return self.stripe_status == "succeeded"


def _payment_invoices_by_intent(*, customer_id: str, intent_ids: list[str]) -> dict[str, dict]:
    """
    Payment intent (and charge) id -> invoice data, for the customer's invoices. Since API 2025-03 a charge no
    longer names its invoice and an invoice lists its payments only when expanded (the mirror seldom has them), so
    the links recorded from Stripe's InvoicePayments (`InvoicePaymentLink`) complete what the invoices say.
    """
    from djstripe.models import Invoice

    from .models import InvoicePaymentLink

    found: dict[str, dict] = {}
    by_id: dict[str, dict] = {}
    for data in Invoice.objects.filter(customer_id=customer_id).values_list("stripe_data", flat=True):
        data = data or {}
        if data.get("id"):
            by_id[data["id"]] = data
        # API versions before 2025-03 name the intent and charge on the invoice; later ones list invoice payments.
        for key in ("payment_intent", "charge"):
            ref = data.get(key)
            ref = ref.get("id") if isinstance(ref, dict) else ref
            if ref:
                found[ref] = data
        for payment in ((data.get("payments") or {}).get("data") or []):
            ref = (payment.get("payment") or {}).get("payment_intent")
            ref = ref.get("id") if isinstance(ref, dict) else ref
            if ref:
                found[ref] = data
    links = InvoicePaymentLink.objects.filter(payment_intent_id__in=intent_ids)
    for intent_id, invoice_id in links.values_list("payment_intent_id", "invoice_id"):
        if intent_id not in found:
            # An invoice not mirrored (yet) is still named: the payment is a subscription payment all the same.
            found[intent_id] = by_id.get(invoice_id) or {"id": invoice_id}
    return found


def _payment_refunds(*, charge_data: dict, mirrored: list[dict]) -> tuple[PaymentRefund, ...]:
    """The charge's refunds: dj-stripe's Refund rows, completed by the list embedded in the charge."""
    by_id = {r["id"]: r for r in ((charge_data.get("refunds") or {}).get("data") or []) if r.get("id")}
    by_id.update({r["id"]: r for r in mirrored if r.get("id")})
    refunds = [
        PaymentRefund(id=r["id"], amount_minor=int(r.get("amount") or 0),
                      currency=r.get("currency") or charge_data.get("currency") or "", status=r.get("status") or "",
                      reason=r.get("reason") or "", created=_ts(r.get("created")))
        for r in by_id.values()
    ]
    return tuple(sorted(refunds, key=lambda r: (r.created or datetime.min.replace(tzinfo=dt_timezone.utc), r.id)))


def _payment_lines(*, invoice: dict | None, description: str, amount_minor: int) -> tuple[PaymentLine, ...]:
    if invoice:
        lines = [
            PaymentLine(description=line.get("description") or "", quantity=line.get("quantity"),
                        amount_minor=int(line.get("amount") or 0))
            for line in ((invoice.get("lines") or {}).get("data") or [])
            if line.get("amount")  # a metered line with no usage adds nothing to read
        ]
        if lines:
            return tuple(lines)
    return (PaymentLine(description=description, quantity=1, amount_minor=amount_minor),)


def _invoice_tax_minor(invoice: dict | None) -> int:
    if not invoice:
        return 0
    total_taxes = invoice.get("total_taxes")  # API 2025-03 and later
    if isinstance(total_taxes, list):
        return sum(int(t.get("amount") or 0) for t in total_taxes)
    return int(invoice.get("tax") or 0)


def _payment_row(*, charge, invoices: dict[str, dict], refunds: list[dict]) -> PaymentRow:
    from .forms_payments import PaymentKind, PaymentStatus

    data = charge.stripe_data or {}
    metadata = data.get("metadata") or {}
    intent = data.get("payment_intent")
    intent = intent.get("id") if isinstance(intent, dict) else intent
    invoice = invoices.get(intent or "") or invoices.get(charge.id)
    legacy_invoice = data.get("invoice")
    lookup_key = metadata.get("lookup_key") or ""
    catalog = load_catalog()
    pack = catalog.credit_pack_for_lookup_key(lookup_key) if lookup_key else None
    # Recognised by the invoice it paid (the link Stripe gives), never by its description, which anyone can write.
    if invoice or legacy_invoice:
        kind = PaymentKind.SUBSCRIPTION
    elif metadata.get("kind") == "credit_pack" or pack is not None:
        kind = PaymentKind.CREDIT_PACK
    else:
        kind = PaymentKind.ONE_TIME
    amount = int(data.get("amount") or 0)
    refunded = int(data.get("amount_refunded") or 0)
    stripe_status = data.get("status") or ""
    if stripe_status == "succeeded" and refunded >= amount > 0:
        status = PaymentStatus.REFUNDED
    elif stripe_status == "succeeded" and refunded > 0:
        status = PaymentStatus.PARTIALLY_REFUNDED
    elif stripe_status in (PaymentStatus.SUCCEEDED, PaymentStatus.PENDING, PaymentStatus.FAILED):
        status = PaymentStatus(stripe_status)
    else:
        status = PaymentStatus.FAILED
    card = (data.get("payment_method_details") or {}).get("card") or {}
    description = data.get("description") or ""
    if kind == PaymentKind.SUBSCRIPTION:
        description = ""  # Stripe's bookkeeping words ("Subscription update"): the kind and invoice lines say it
    if kind == PaymentKind.CREDIT_PACK and pack is not None:
        # The catalog names a pack in the reader's language (Stripe's description is the product's English name),
        # quantity on its line.
        quantity = int(metadata.get("quantity") or 1)
        description = pack.display_name
        lines = (PaymentLine(description=pack.display_name, quantity=quantity, amount_minor=amount),)
    else:
        lines = _payment_lines(invoice=invoice, description=description, amount_minor=amount)
    return PaymentRow(
        id=charge.id, payment_intent=intent, kind=kind, status=status, stripe_status=stripe_status,
        amount_minor=amount, amount_refunded_minor=refunded, currency=(data.get("currency") or "usd").lower(),
        description=description, card_brand=card.get("brand") or "", card_last4=card.get("last4") or "",
        created=charge.created or _ts(data.get("created")),
        invoice_id=(invoice or {}).get("id") or (legacy_invoice if isinstance(legacy_invoice, str) else None),
        invoice_number=(invoice or {}).get("number") or "", lookup_key=lookup_key,
        receipt_url=data.get("receipt_url") or "", refunds=_payment_refunds(charge_data=data, mirrored=refunds),
        lines=lines, tax_minor=_invoice_tax_minor(invoice),
        payment_method_type=(data.get("payment_method_details") or {}).get("type") or "card",
    )


def _payment_rows(*, customer_id: str, charges, invoice_hint: str = "") -> list[PaymentRow]:
    from djstripe.models import Invoice, Refund

    charges = list(charges)
    intent_ids = []
    for charge in charges:
        intent = (charge.stripe_data or {}).get("payment_intent")
        intent = intent.get("id") if isinstance(intent, dict) else intent
        if intent:
            intent_ids.append(intent)
    invoices = _payment_invoices_by_intent(customer_id=customer_id, intent_ids=intent_ids)
    if invoice_hint and len(charges) == 1:
        # The caller learnt from Stripe which invoice this one charge paid (receipts: see billing/receipts.py).
        hinted = Invoice.objects.filter(id=invoice_hint, customer_id=customer_id).values_list(
            "stripe_data", flat=True).first()
        intent = (charges[0].stripe_data or {}).get("payment_intent")
        if hinted:
            invoices[intent if isinstance(intent, str) and intent else charges[0].id] = hinted
    refunds: dict[str, list[dict]] = {}
    for charge_id, data in Refund.objects.filter(charge_id__in=[c.id for c in charges]).values_list(
            "charge_id", "stripe_data"):
        refunds.setdefault(charge_id, []).append(data or {})
    return [_payment_row(charge=c, invoices=invoices, refunds=refunds.get(c.id, [])) for c in charges]


def team_payments(
    *, team: Team, status: str = "", kind: str = "", created_gte: datetime | None = None,
    created_lte: datetime | None = None, ordering: str = "-created",
) -> list[PaymentRow]:
    """
    Every charge of the team (subscription invoices, credit packs, one-time card payments), newest first by default
    (`ordering`: created, -created, amount, -amount). `status` and `kind` are forms_payments' values.
    """
    from djstripe.models import Charge

    customer_id = team_stripe_customer_id(team=team)
    if not customer_id:
        return []
    charges = Charge.objects.filter(customer_id=customer_id)
    if created_gte is not None:
        charges = charges.filter(created__gte=created_gte)
    if created_lte is not None:
        charges = charges.filter(created__lte=created_lte)
    rows = [row for row in _payment_rows(customer_id=customer_id, charges=charges)
            if (not status or row.status == status) and (not kind or row.kind == kind)]
    field = ordering.lstrip("-")
    key = (lambda r: (r.amount_minor, r.id)) if field == "amount" else (
        lambda r: (r.created or datetime.min.replace(tzinfo=dt_timezone.utc), r.id))
    rows.sort(key=key, reverse=ordering.startswith("-"))
    return rows


def team_payment(*, team: Team, payment_id: str, invoice_hint: str = "") -> PaymentRow | None:
    """
    One of the team's payments by charge (ch_...) or payment intent (pi_...) id; None for anyone else's.
    `invoice_hint`: the id of the invoice the caller knows the payment paid (it must be the team's, in the mirror).
    """
    from djstripe.models import Charge
    from django.db.models import Q

    customer_id = team_stripe_customer_id(team=team)
    if not customer_id or not payment_id:
        return None
    charge = (Charge.objects.filter(customer_id=customer_id)
              .filter(Q(id=payment_id) | Q(payment_intent_id=payment_id)).order_by("-created").first())
    if charge is None:
        return None
    return _payment_rows(customer_id=customer_id, charges=[charge], invoice_hint=invoice_hint)[0]


def team_receipts_by_charge(*, team: Team, charge_ids: list[str]) -> dict[str, dict[str, str]]:
    """charge id -> {"payment": receipt number, "<refund id>": receipt number} of receipts already issued."""
    from .models import Receipt

    found: dict[str, dict[str, str]] = {}
    for charge_id, kind, refund_id, number in Receipt.objects.filter(
            team=team, stripe_charge_id__in=charge_ids).values_list("stripe_charge_id", "kind", "stripe_refund_id",
                                                                    "number"):
        found.setdefault(charge_id, {})[refund_id if kind == Receipt.Kind.REFUND else "payment"] = number
    return found


# --- Boleto and Pix purchases waiting or failed (issue 13) ----------------------------------------------------------
def team_async_payments(*, team: Team, days: int = 30) -> list[dict]:
    """
    The team's recent Boleto/Pix payments that are not settled: waiting for the customer (with the voucher or QR
    page), processing, or failed (expired unpaid). From dj-stripe's PaymentIntent mirror, newest first.
    """
    from djstripe.models import PaymentIntent

    customer_id = team_stripe_customer_id(team=team)
    if not customer_id:
        return []
    since = timezone.now() - timedelta(days=days)
    rows = []
    for intent in PaymentIntent.objects.filter(stripe_data__customer=customer_id, created__gte=since).order_by("-created")[:20]:
        data = intent.stripe_data or {}
        methods = data.get("payment_method_types") or []
        method = next((m for m in methods if m in ("boleto", "pix")), None)
        if method is None or data.get("status") in ("succeeded", "canceled"):
            continue
        action = data.get("next_action") or {}
        details = action.get("boleto_display_details") or action.get("pix_display_qr_code") or {}
        failed = data.get("status") == "requires_payment_method" and bool(data.get("last_payment_error"))
        rows.append({
            "id": intent.id, "method": method, "amount": data.get("amount") or 0,
            "currency": data.get("currency") or "brl", "created": intent.created,
            "state": "failed" if failed else ("processing" if data.get("status") == "processing" else "waiting"),
            "url": details.get("hosted_voucher_url") or details.get("hosted_instructions_url") or "",
            "expires_at": _ts(details.get("expires_at")),
        })
    return rows


# -- ownership of the Stripe ids clients send (issue 10) -----------------------------------------------------------
# Every Stripe id that arrives from a page form, a query string or an API body is checked here before any service
# uses it: one check per kind, each answering False for anyone else's object, an id that does not exist, or a value
# that is not shaped like a Stripe id (which then never reaches Stripe). Callers answer 404 in the error shape.
_STRIPE_ID_PATTERN = r"[A-Za-z0-9_]{4,255}"


def stripe_id_shaped(value, *, prefix: str) -> bool:
    """`pm_1Abc`-like: the kind's prefix, then letters, digits and underscores only (no slashes, no query)."""
    import re

    return isinstance(value, str) and value.startswith(prefix) and re.fullmatch(_STRIPE_ID_PATTERN, value) is not None


def team_owns_stripe_object(*, team: Team, stripe_object: dict) -> bool:
    """An object already retrieved from Stripe (payment intent, checkout session...) is the team's customer's."""
    customer_id = team_stripe_customer_id(team=team)
    # A team without a customer owns nothing: comparing two empty values would hand it every customer-less object.
    return bool(customer_id) and stripe_object_customer_id(stripe_object) == customer_id


def team_payment_method(*, team: Team, payment_method_id: str) -> dict | None:
    """
    The payment method as Stripe has it now (the mirror may lag an attach or detach), if it is attached to the team's
    customer; None for anyone else's, a missing one, or a value not shaped like a payment method id.
    """
    from billing_site.errors import BillingError

    from .stripe_gateway.sync import object_retrieve

    if not stripe_id_shaped(payment_method_id, prefix="pm_") or not team_stripe_customer_id(team=team):
        return None
    try:
        payment_method = object_retrieve(object_type="payment_method", object_id=payment_method_id)
    except BillingError as error:
        if error.code == "stripe_resource_missing":
            return None
        raise
    return payment_method if team_owns_stripe_object(team=team, stripe_object=payment_method) else None


def team_owns_payment_method(*, team: Team, payment_method_id: str) -> bool:
    return team_payment_method(team=team, payment_method_id=payment_method_id) is not None


def team_owns_invoice(*, team: Team, invoice_id: str) -> bool:
    """The invoice is the team's customer's, per the mirror (invoices reach it by webhook and by every change)."""
    from djstripe.models import Invoice

    customer_id = team_stripe_customer_id(team=team)
    return (bool(customer_id) and stripe_id_shaped(invoice_id, prefix="in_")
            and Invoice.objects.filter(id=invoice_id, customer_id=customer_id).exists())


def team_owns_charge(*, team: Team, charge_id: str) -> bool:
    """The charge (ch_...) or payment intent (pi_...) is one of the team's payments, per the mirror."""
    if not (stripe_id_shaped(charge_id, prefix="ch_") or stripe_id_shaped(charge_id, prefix="pi_")):
        return False
    return team_payment(team=team, payment_id=charge_id) is not None


def team_owns_subscription_item(*, team: Team, subscription_item_id: str) -> bool:
    """The item belongs to the team's current subscription, per the mirror."""
    if not stripe_id_shaped(subscription_item_id, prefix="si_"):
        return False
    subscription = team_subscription(team=team)
    return subscription is not None and any(item.get("id") == subscription_item_id
                                            for item in subscription_items(subscription))


def price_lookup_key_offered(*, lookup_key: str) -> bool:
    """A lookup key the catalog sells (plan price or credit pack): no other Stripe price can be bought through us."""
    catalog = load_catalog()
    return isinstance(lookup_key, str) and (catalog.plan_for_lookup_key(lookup_key) is not None
                                            or catalog.credit_pack_for_lookup_key(lookup_key) is not None)
