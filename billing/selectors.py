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
    return BillingProfile.objects.filter(team=team).values_list("stripe_customer_id", flat=True).first()


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


def subscription_plan_and_price(subscription) -> tuple[Plan, dict] | None:
    """The catalog plan a subscription pays for, and the item's price dict (metered overage items are skipped)."""
    catalog = load_catalog()
    for item in subscription_items(subscription):
        price = item.get("price") or {}
        found = catalog.plan_for_lookup_key(price.get("lookup_key") or "")
        if found:
            return found[0], price
        # Staff attach custom prices (enterprise) to a product whose metadata names the plan.
        plan_key = (price.get("metadata") or {}).get("plan_key")
        if plan_key and (price.get("recurring") or {}).get("usage_type") != "metered":
            try:
                return catalog.plan(plan_key), price
            except KeyError:
                continue
    return None


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
