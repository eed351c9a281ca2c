"""Fixtures for usage tests: teams, API clients, per-test Redis key prefixes, plan switching."""
import uuid

import pytest
from rest_framework.test import APIClient

from accounts import services as account_services
from accounts.tests.factories import make_team_with_owner
from billing import selectors as billing_selectors
from billing.catalog import load_catalog
from billing.selectors import PlanLimits


@pytest.fixture(autouse=True)
def _usage_isolation(settings):
    """Each test gets its own Redis key prefix (no flushing of a shared db) and no cached team policies."""
    from usage import ratelimit, services

    settings.USAGE_REDIS_PREFIX = f"usagetest:{uuid.uuid4().hex[:12]}:"
    settings.USAGE_POLICY_CACHE_SECONDS = 0
    services.policy_cache_clear()
    ratelimit.local_bucket.reset()
    url, prefix = settings.USAGE_REDIS_URL, settings.USAGE_REDIS_PREFIX
    yield
    if url:  # the URL of the test's start: a test may point the setting at a dead server
        import redis

        client = redis.Redis.from_url(url)
        keys = list(client.scan_iter(match=prefix + "*", count=1000))
        if keys:
            client.delete(*keys)
        client.close()


@pytest.fixture
def no_redis(settings):
    settings.USAGE_REDIS_URL = ""


@pytest.fixture
def needs_redis(settings):
    if not settings.USAGE_REDIS_URL:
        pytest.skip("needs Redis (set REDIS_URL)")


@pytest.fixture
def team_and_owner(db):
    return make_team_with_owner()


@pytest.fixture
def api_key_client(team_and_owner):
    """An APIClient authenticated with a real API key of the team (as programs call the API)."""
    team, owner = team_and_owner
    created = account_services.api_key_create(team=team, name="test", created_by=owner, scope="full")
    client = APIClient()
    client.credentials(HTTP_AUTHORIZATION=f"Bearer {created.raw_key}")
    client.team = team
    client.owner = owner
    client.api_key = created.api_key
    return client


@pytest.fixture
def set_plan(monkeypatch):
    """Put teams on a catalog plan (the billing core reads mirrored subscriptions; here we choose directly)."""
    plans: dict[int, str] = {}
    original = billing_selectors.team_plan_limits

    def fake_limits(*, team):
        key = plans.get(team.pk)
        if key is None:
            return original(team=team)
        plan = load_catalog().plan(key)
        return PlanLimits(plan_key=plan.key, seats=plan.seats, rate_limit_per_second=plan.rate_limit_per_second,
                          included=dict(plan.included), overage=plan.overage)

    monkeypatch.setattr(billing_selectors, "team_plan_limits", fake_limits)

    def choose(team, key, *, included=None, rate=None):
        plans[team.pk] = key
        if included is not None or rate is not None:
            plan = load_catalog().plan(key)

            def limited(*, team, _inner=fake_limits):
                limits = _inner(team=team)
                if plans.get(team.pk) != key:
                    return limits
                return PlanLimits(plan_key=limits.plan_key, seats=limits.seats,
                                  rate_limit_per_second=rate if rate is not None else plan.rate_limit_per_second,
                                  included={**limits.included, **({"api_call": included} if included is not None
                                                                  else {})},
                                  overage=limits.overage)

            monkeypatch.setattr(billing_selectors, "team_plan_limits", limited)

    return choose
