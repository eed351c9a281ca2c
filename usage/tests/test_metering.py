"""Metering on real DRF views over the test client: counts, headers, 429 at the rate, 402 at zero credits."""
import pytest
from django.urls import reverse

from billing_site.errors import PermissionDeniedError
from usage import metering, ratelimit, selectors, services
from usage.metering import buffer as metering_buffer
from usage.models import CreditLedgerEntry, UsageDailyTotal, UsageEvent

pytestmark = pytest.mark.django_db
PING = reverse("api:demo-metered-ping")
PREMIUM = reverse("api:demo-premium")


@pytest.fixture(params=["redis", "local"])
def backend(request, settings):
    """Every behaviour holds on both backends: Redis (production) and in-process (embedded default)."""
    if request.param == "redis":
        if not settings.USAGE_REDIS_URL:
            pytest.skip("needs Redis (set REDIS_URL)")
    else:
        settings.USAGE_REDIS_URL = ""
    return request.param


def used(team) -> int:
    metering.buffer_flush()
    return selectors.usage_period_summary(team=team)["metrics"]["api_call"]["used"]


def test_each_call_is_counted_once_with_rate_limit_headers(api_key_client, backend, set_plan):
    team = api_key_client.team
    set_plan(team, "pro")
    for _ in range(3):
        response = api_key_client.get(PING)
        assert response.status_code == 200
        assert response["X-RateLimit-Limit"] == "20"
        assert 0 <= int(response["X-RateLimit-Remaining"]) < 20
        assert int(response["X-RateLimit-Reset"]) >= 1
    assert used(team) == 3
    events = UsageEvent.objects.filter(team=team)
    assert events.count() == 3
    assert {e.api_key_id for e in events} == {api_key_client.api_key.pk}
    assert {e.source for e in events} == {UsageEvent.Source.METERED_CALL}
    summary = selectors.usage_period_summary(team=team)
    assert summary["by_api_key"][0]["api_key_id"] == api_key_client.api_key.pk
    assert summary["by_api_key"][0]["metrics"] == {"api_call": 3}
    # The unmetered twin counts nothing.
    assert api_key_client.get(reverse("api:demo-ping")).status_code == 200
    assert used(team) == 3


def test_over_the_rate_answers_429_with_retry_after(api_key_client, backend, set_plan):
    set_plan(api_key_client.team, "free", rate=1)
    responses = [api_key_client.get(PING) for _ in range(5)]
    codes = [r.status_code for r in responses]
    # A bucket of one token refills once a second: five back-to-back calls cannot all pass.
    assert codes[0] == 200 and 429 in codes
    limited = responses[codes.index(429)]
    assert int(limited["Retry-After"]) >= 1
    assert limited["X-RateLimit-Limit"] == "1" and limited["X-RateLimit-Remaining"] == "0"
    assert limited.json()["error"]["code"] == "rate_limited"
    # Refused calls are not counted.
    assert used(api_key_client.team) == codes.count(200)


def test_free_plan_draws_credits_past_the_quota_then_402(api_key_client, backend, set_plan, settings):
    team = api_key_client.team
    set_plan(team, "free", included=2, rate=100)
    assert selectors.credits_balance(team=team) == 3  # the signup grant
    codes = [api_key_client.get(PING).status_code for _ in range(6)]
    assert codes == [200, 200, 200, 200, 200, 402]
    assert selectors.credits_balance(team=team) == 0
    usage_entries = CreditLedgerEntry.objects.filter(team=team, reason=CreditLedgerEntry.Reason.USAGE)
    assert sorted(usage_entries.values_list("delta", flat=True)) == [-1, -1, -1]
    refused = api_key_client.get(PING)
    assert refused.status_code == 402
    error = refused.json()["error"]
    assert error["code"] == "quota_exceeded"
    assert "/pricing/" in error["message"] and error["details"]["upgrade_url"].endswith("/pricing/")
    assert refused["X-RateLimit-Limit"] == "100"
    assert used(team) == 5
    # Buying credits is the way out.
    services.credits_grant(team=team, amount=1, reason=CreditLedgerEntry.Reason.PURCHASE, reference="cs_1")
    assert api_key_client.get(PING).status_code == 200
    assert used(team) == 6 and selectors.credits_balance(team=team) == 0


def test_premium_endpoint_costs_credits_on_every_plan(api_key_client, backend, set_plan):
    team = api_key_client.team
    set_plan(team, "team")
    codes = [api_key_client.post(PREMIUM).status_code for _ in range(4)]
    assert codes == [200, 200, 200, 402]
    refused = api_key_client.post(PREMIUM).json()["error"]
    assert refused["code"] == "insufficient_credits" and refused["details"]["balance"] == 0
    assert selectors.credits_balance(team=team) == 0
    assert used(team) == 3


def test_spend_cap_turns_metered_overage_into_402(api_key_client, backend, set_plan):
    team = api_key_client.team
    set_plan(team, "pro", included=2, rate=100)
    # 0.4 cents at 0.2 cents per call: two calls of overage.
    services.team_spend_cap_set(team=team, set_by=api_key_client.owner, spend_cap_minor=0, currency="usd")
    services.team_spend_cap_set(team=team, set_by=api_key_client.owner, spend_cap_minor=1, currency="usd")
    codes = [api_key_client.get(PING).status_code for _ in range(8)]
    assert codes == [200] * 7 + [402]  # 2 included + 5 (1 cent = 5 calls at 0.2 cents)
    assert api_key_client.get(PING).json()["error"]["code"] == "spend_cap_reached"
    services.team_spend_cap_set(team=team, set_by=api_key_client.owner, spend_cap_minor=None)
    assert api_key_client.get(PING).status_code == 200


def test_spend_cap_is_the_owners(api_key_client, db):
    from accounts.tests.factories import MembershipFactory

    member = MembershipFactory(team=api_key_client.team).user
    with pytest.raises(PermissionDeniedError):
        services.team_spend_cap_set(team=api_key_client.team, set_by=member, spend_cap_minor=100)


def test_session_users_are_metered_too(team_and_owner, backend, set_plan):
    from rest_framework.test import APIClient

    team, owner = team_and_owner
    set_plan(team, "pro")
    client = APIClient()
    client.force_login(owner)
    assert client.get(PING).status_code == 200
    assert used(team) == 1
    assert UsageEvent.objects.get(team=team).user_id == owner.pk


def test_redis_counter_is_seeded_from_stored_usage(api_key_client, needs_redis, set_plan):
    team = api_key_client.team
    set_plan(team, "free", included=5, rate=100)
    services.usage_events_ingest(team=team, events=[
        {"idempotency_key": f"k{i}", "metric": "api_call", "quantity": 1} for i in range(5)])
    # The quota is already used by ingested events: the first metered call pays a credit.
    assert api_key_client.get(PING).status_code == 200
    assert selectors.credits_balance(team=team) == 2


def test_flush_survives_a_worker_dying_mid_batch(api_key_client, needs_redis, set_plan, settings):
    team = api_key_client.team
    set_plan(team, "pro")
    for _ in range(4):
        assert api_key_client.get(PING).status_code == 200
    client = ratelimit.redis_client()
    # A worker claims a batch, stores it, and dies before acknowledging it.
    claim = ratelimit.script(ratelimit.CLAIM_LUA)
    keys = [ratelimit.redis_key("buffer"), ratelimit.redis_key("batch", "dead"), ratelimit.redis_key("inflight")]
    assert claim(keys=keys, args=[3, "dead"]) == 3
    items = client.lrange(keys[1], 0, -1)
    metering_buffer._store_buffered(items)
    assert UsageEvent.objects.filter(team=team).count() == 3
    # A fresh flush takes the remaining event; the dead batch is only re-flushed once it is stale.
    result = metering.buffer_flush()
    assert (result.events_read, result.recovered_batches) == (1, 0)
    settings.USAGE_BUFFER_STALE_SECONDS = -1
    recovered = metering.buffer_flush()
    assert (recovered.recovered_batches, recovered.events_read, recovered.events_inserted) == (1, 3, 0)
    assert UsageEvent.objects.filter(team=team).count() == 4
    assert sum(UsageDailyTotal.objects.filter(team=team).values_list("quantity", flat=True)) == 4
    assert client.zcard(keys[2]) == 0 and metering.buffer_length() == 0


def test_metering_fails_closed_with_503_when_redis_is_down(api_key_client, needs_redis, settings):
    from usage import ratelimit as rl

    settings.USAGE_REDIS_URL = "redis://127.0.0.1:1/0"  # nothing listens there
    try:
        response = api_key_client.get(PING)
    finally:
        rl._redis_clients.pop("redis://127.0.0.1:1/0", None)
    assert response.status_code == 503 and response["Retry-After"] == "5"
    assert response.json()["error"]["code"] == "metering_unavailable"
    assert api_key_client.get(reverse("api:demo-ping")).status_code == 200


def test_metered_works_on_function_views_too(api_key_client, backend, set_plan):
    from rest_framework.decorators import api_view
    from rest_framework.response import Response
    from rest_framework.test import APIRequestFactory, force_authenticate

    from usage.metering import metered

    @api_view(["GET"])
    @metered("api_call", credits=2)
    def costly(request):
        return Response({"ok": True})

    team = api_key_client.team
    set_plan(team, "pro")
    factory = APIRequestFactory()
    request = factory.get("/costly/")
    force_authenticate(request, user=api_key_client.owner)
    request.session = {}
    first = costly(request)
    assert first.status_code == 200 and first["X-RateLimit-Limit"] == "20"
    request = factory.get("/costly/")
    force_authenticate(request, user=api_key_client.owner)
    request.session = {}
    assert costly(request).status_code == 402  # 3 signup credits: one call of 2, then 1 left
    assert selectors.credits_balance(team=team) == 1
    assert used(team) == 1
