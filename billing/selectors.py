"""Reads for billing: the team's customer, its mirrored subscription, its plan and the plan's limits."""
from dataclasses import dataclass
from datetime import datetime, timezone as dt_timezone

from django.core.cache import cache

from accounts.models import Team

from .catalog import Plan, load_catalog
from .models import BillingProfile

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
    return Team.objects.filter(billing_profile__stripe_customer_id=stripe_customer_id).first()


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

        raise NotFoundError("unknown_lookup_key", f"There is no price with the lookup key “{lookup_key}”.")
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
        plans.append({"plan": plan, "prices": prices, "included": plan.included.get("api_call", 0)})
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
        {"lookup_key": p.lookup_key, "plan": plan.name, "interval": p.interval}
        for plan in catalog.plans for p in plan.prices
        if not summary or p.lookup_key != summary["lookup_key"]
    ]
    return {
        "plan": team_plan(team=team), "subscription": summary, "invoices": invoices,
        "payment_method": payment_method, "other_prices": other_prices, "credit_packs": catalog.credit_packs,
        "has_customer": bool(team_stripe_customer_id(team=team)),
    }
