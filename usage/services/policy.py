"""
What metering enforces for a team: its plan's limits (read through billing's selector) and its owner's spend cap,
cached per process for USAGE_POLICY_CACHE_SECONDS so the metered hot path does not query them on every call.
"""
from __future__ import annotations

import logging
import threading
import time
from dataclasses import dataclass
from decimal import Decimal

from django.conf import settings
from django.utils import timezone

from accounts.models import Membership, Team, User
from billing import selectors as billing_selectors
from billing.catalog import load_catalog
from billing_site.errors import ApplicationError, PermissionDeniedError

from ..models import TeamUsagePolicy

logger = logging.getLogger(__name__)


@dataclass(frozen=True)
class MeteringPolicy:
    plan_key: str
    rate_limit_per_second: int
    included: dict[str, int]
    overage: str  # "credits" | "metered"
    cap_units: dict[str, int]  # metric -> most overage units per period (absent: no cap)


def _unit_price_minor(*, plan_key: str, metric: str, currency: str) -> Decimal | None:
    catalog = load_catalog()
    plan = catalog.plan(plan_key)
    for price in plan.overage_prices:
        meter = catalog.meter(price.meter)
        if meter.metric == metric and currency in price.unit_amount_decimal:
            return Decimal(price.unit_amount_decimal[currency])
    return None


def team_metering_policy_load(*, team: Team) -> MeteringPolicy:
    """What metering enforces for a team: the plan's limits (billing's selector) and the owner's spend cap."""
    limits = billing_selectors.team_plan_limits(team=team)
    cap_units: dict[str, int] = {}
    policy = TeamUsagePolicy.objects.filter(team=team).first()
    if policy is not None and policy.spend_cap_minor is not None and limits.overage == "metered":
        for metric in limits.included:
            unit = _unit_price_minor(plan_key=limits.plan_key, metric=metric, currency=policy.currency)
            if unit:
                # Whole units only: a cap of 100 cents at 0.2 cents a call allows 500 calls of overage.
                cap_units[metric] = int(Decimal(policy.spend_cap_minor) / unit)
    return MeteringPolicy(plan_key=limits.plan_key, rate_limit_per_second=limits.rate_limit_per_second,
                          included=dict(limits.included), overage=limits.overage, cap_units=cap_units)


def team_spend_cap_set(*, team: Team, set_by: User, spend_cap_minor: int | None, currency: str = "usd"
                       ) -> TeamUsagePolicy:
    """The team's owner sets (or clears, with None) the most overage to bill per period."""
    if not Membership.objects.filter(team=team, user=set_by, role=Membership.Role.OWNER).exists():
        raise PermissionDeniedError("forbidden", "Only the team's owner can change the spend cap.")
    currency = currency.lower()
    if currency not in load_catalog().currencies:
        raise ApplicationError("invalid_currency", f"Unknown currency {currency!r}.")
    if spend_cap_minor is not None and (not isinstance(spend_cap_minor, int) or spend_cap_minor < 0):
        raise ApplicationError("invalid_amount", "The spend cap must be zero or more, in minor units.")
    policy, _ = TeamUsagePolicy.objects.get_or_create(team=team)
    policy.spend_cap_minor = spend_cap_minor
    policy.currency = currency
    policy.updated_by = set_by
    policy.updated = timezone.now()
    policy.full_clean()
    policy.save()
    policy_cache_clear(team_id=team.pk)
    logger.info("spend cap set for team %s: %s %s", team.pk, spend_cap_minor, currency,
                extra={"team_id": team.pk, "user_id": set_by.pk})
    return policy


_policy_cache: dict[int, tuple[float, MeteringPolicy]] = {}
_policy_lock = threading.Lock()


def team_metering_policy(*, team: Team) -> MeteringPolicy:
    """The team's limits, cached per process (plan changes and spend caps take effect within the TTL)."""
    ttl = settings.USAGE_POLICY_CACHE_SECONDS
    now = time.monotonic()
    cached = _policy_cache.get(team.pk)
    if cached is not None and cached[0] > now:
        return cached[1]
    policy = team_metering_policy_load(team=team)
    if ttl > 0:
        with _policy_lock:
            if len(_policy_cache) > 50_000:
                _policy_cache.clear()
            _policy_cache[team.pk] = (now + ttl, policy)
    return policy


def policy_cache_clear(*, team_id: int | None = None) -> None:
    with _policy_lock:
        if team_id is None:
            _policy_cache.clear()
        else:
            _policy_cache.pop(team_id, None)
