"""POST /api/v1/usage/events/ (single and batch, idempotent, all or nothing), GET /api/v1/usage/ and /credits/."""
from datetime import timedelta

import pytest
from django.urls import reverse
from django.utils import timezone

from accounts.tests.factories import make_team_with_owner
from usage import selectors, services
from usage.models import CreditLedgerEntry, UsageDailyTotal, UsageEvent
from usage.periods import period_for
from usage.tests.factories import TeamUsagePolicyFactory, UsagePeriodCloseFactory

pytestmark = pytest.mark.django_db
EVENTS = reverse("api:usage-events")


def batch(n, prefix="k", **extra):
    return {"events": [{"idempotency_key": f"{prefix}{i}", "metric": "api_call", "quantity": 2} | extra
                       for i in range(n)]}


def stored_total(team) -> int:
    return sum(UsageDailyTotal.objects.filter(team=team).values_list("quantity", flat=True))


def test_single_event_needs_the_header_and_replays_the_original(api_key_client):
    team = api_key_client.team
    missing = api_key_client.post(EVENTS, {"metric": "api_call", "quantity": 3}, format="json")
    assert missing.status_code == 400
    assert missing.json()["error"]["details"]["field"] == "idempotency_key"
    first = api_key_client.post(EVENTS, {"metric": "api_call", "quantity": 3}, format="json",
                                HTTP_IDEMPOTENCY_KEY="job-42")
    assert first.status_code == 201
    body = first.json()
    assert (body["quantity"], body["idempotency_key"], body["duplicate"]) == (3, "job-42", False)
    again = api_key_client.post(EVENTS, {"metric": "api_call", "quantity": 30}, format="json",
                                HTTP_IDEMPOTENCY_KEY="job-42")
    assert again.status_code == 200
    assert again.json() | {"duplicate": False} == body  # the original event, not the new payload
    assert again.json()["duplicate"] is True
    assert stored_total(team) == 3 and UsageEvent.objects.filter(team=team).count() == 1


def test_repeating_a_batch_leaves_counts_unchanged(api_key_client):
    team = api_key_client.team
    first = api_key_client.post(EVENTS, batch(50), format="json")
    assert first.status_code == 201
    assert (first.json()["created"], first.json()["duplicates"]) == (50, 0)
    repeat = api_key_client.post(EVENTS, batch(50), format="json")
    assert repeat.status_code == 200
    assert (repeat.json()["created"], repeat.json()["duplicates"]) == (0, 50)
    assert [e["id"] for e in repeat.json()["events"]] == [e["id"] for e in first.json()["events"]]
    overlapping = api_key_client.post(EVENTS, batch(60), format="json")
    assert (overlapping.json()["created"], overlapping.json()["duplicates"]) == (10, 50)
    assert UsageEvent.objects.filter(team=team).count() == 60
    assert stored_total(team) == 120
    summary = api_key_client.get(reverse("api:usage")).json()
    assert summary["metrics"]["api_call"] == {"used": 120, "included": 1000, "remaining": 880, "overage": 0}


def test_keys_are_per_team(api_key_client):
    other, _ = make_team_with_owner()
    services.usage_events_ingest(team=other, events=batch(3)["events"])
    assert api_key_client.post(EVENTS, batch(3), format="json").json()["created"] == 3


@pytest.mark.parametrize("event, field", [
    ({"metric": "api_call", "quantity": 0}, "quantity"),
    ({"metric": "api_call", "quantity": -5}, "quantity"),
    ({"metric": "api_call", "quantity": 1.5}, "quantity"),
    ({"metric": "api_call", "quantity": "3"}, "quantity"),
    ({"metric": "bananas", "quantity": 1}, "metric"),
    ({"metric": "api_call", "quantity": 1, "occurred_at": "yesterday"}, "occurred_at"),
    ({"metric": "api_call", "quantity": 1, "occurred_at": "2020-01-01T00:00:00Z"}, "occurred_at"),
    ({"metric": "api_call", "quantity": 1, "occurred_at": "2020-01-01T00:00:00"}, "occurred_at"),
    ({"metric": "api_call", "quantity": 1, "idempotency_key": ""}, "idempotency_key"),
    ({"metric": "api_call", "quantity": 1, "idempotency_key": None}, "idempotency_key"),
])
def test_a_bad_event_rejects_the_whole_batch_naming_its_index(api_key_client, event, field):
    events = batch(5)["events"]
    events[3] = {"idempotency_key": "bad", **event}
    response = api_key_client.post(EVENTS, {"events": events}, format="json")
    assert response.status_code == 400
    error = response.json()["error"]
    assert error["code"] == "invalid_usage_event"
    assert error["details"]["index"] == 3 and error["details"]["field"] == field
    assert error["message"].startswith(f"events[3].{field}: ")
    assert not UsageEvent.objects.filter(team=api_key_client.team).exists()


def test_future_timestamps_and_oversized_batches_are_refused(api_key_client):
    future = (timezone.now() + timedelta(hours=1)).isoformat()
    response = api_key_client.post(EVENTS, batch(2, occurred_at=future), format="json")
    assert response.status_code == 400 and "future" in response.json()["error"]["message"]
    too_many = api_key_client.post(EVENTS, batch(1001), format="json")
    assert too_many.status_code == 400
    assert too_many.json()["error"]["details"]["field"] == "events"
    assert "1000" in too_many.json()["error"]["message"]
    repeated = {"events": [{"idempotency_key": "a", "metric": "api_call"}, {"idempotency_key": "a",
                                                                           "metric": "api_call"}]}
    assert api_key_client.post(EVENTS, repeated, format="json").json()["error"]["details"]["index"] == 1
    assert not UsageEvent.objects.exists()


def test_a_batch_of_exactly_1000_is_stored(api_key_client):
    response = api_key_client.post(EVENTS, batch(1000, quantity=1), format="json")
    assert response.status_code == 201 and response.json()["created"] == 1000
    assert stored_total(api_key_client.team) == 1000  # exactly the free plan's included amount: no credits taken
    assert selectors.credits_balance(team=api_key_client.team) == 3


def test_events_for_a_closed_period_are_refused(api_key_client):
    team = api_key_client.team
    now = timezone.now()
    previous = period_for(now).previous()
    UsagePeriodCloseFactory(team=team, period=previous)
    late = (period_for(now).start - timedelta(minutes=1)).isoformat()
    response = api_key_client.post(EVENTS, batch(1, occurred_at=late), format="json")
    assert response.status_code == 400 and response.json()["error"]["details"]["field"] == "occurred_at"


def test_free_plan_ingest_past_quota_pays_credits_or_stores_nothing(api_key_client, set_plan):
    team = api_key_client.team
    set_plan(team, "free", included=10)
    assert api_key_client.post(EVENTS, batch(5), format="json").status_code == 201  # 10 units: all included
    # 2 units over the quota: 2 credits; 3 left before.
    assert api_key_client.post(EVENTS, batch(1, prefix="b"), format="json").status_code == 201
    assert selectors.credits_balance(team=team) == 1
    refused = api_key_client.post(EVENTS, batch(1, prefix="c"), format="json")
    assert refused.status_code == 402 and refused.json()["error"]["code"] == "insufficient_credits"
    assert stored_total(team) == 12 and selectors.credits_balance(team=team) == 1
    assert CreditLedgerEntry.objects.filter(team=team, reason="usage").count() == 1


def test_usage_summary_shape_daily_series_and_isolation(api_key_client):
    team = api_key_client.team
    yesterday = timezone.now() - timedelta(days=1)
    events = [{"idempotency_key": "old", "metric": "api_call", "quantity": 7, "occurred_at": yesterday.isoformat()},
              {"idempotency_key": "new", "metric": "api_call", "quantity": 5}]
    api_key_client.post(EVENTS, {"events": events}, format="json")
    other, _ = make_team_with_owner()
    services.usage_events_ingest(team=other, events=batch(3)["events"])
    body = api_key_client.get(reverse("api:usage")).json()
    period = period_for()
    assert set(body) >= {"period_start", "period_end", "metrics", "credits_balance", "daily", "by_api_key"}
    assert body["period_start"] == period.start.isoformat().replace("+00:00", "Z")
    assert body["metrics"]["api_call"]["used"] == 12
    assert body["credits_balance"] == 3
    series = {d["date"]: d["metrics"]["api_call"] for d in body["daily"]}
    assert series[timezone.now().date().isoformat()] == 5
    if period.contains(yesterday):
        assert series[yesterday.date().isoformat()] == 7
    assert sum(series.values()) == 12
    assert body["by_api_key"] == [{"api_key_id": api_key_client.api_key.pk, "name": "test",
                                   "prefix": api_key_client.api_key.prefix, "metrics": {"api_call": 12}}]


def test_credits_endpoint_answers_balance_and_paginated_ledger(api_key_client):
    team = api_key_client.team
    for n in range(30):
        services.credits_grant(team=team, amount=1, reason=CreditLedgerEntry.Reason.STAFF_GRANT, reference=f"s{n}")
    body = api_key_client.get(reverse("api:credits")).json()
    assert body["balance"] == 33 and body["count"] == 31
    assert len(body["results"]) == 25 and body["next"]
    assert body["results"][0]["reference"] == "s29" and body["results"][0]["balance_after"] == 33
    last_page = api_key_client.get(body["next"]).json()
    assert last_page["results"][-1]["reason"] == "signup_grant"
    other, _ = make_team_with_owner()
    services.credits_grant(team=other, amount=9, reason=CreditLedgerEntry.Reason.STAFF_GRANT, reference="x")
    assert api_key_client.get(reverse("api:credits")).json()["balance"] == 33


def test_usage_page_renders_an_svg_chart(team_and_owner, client):
    team, owner = team_and_owner
    services.usage_events_ingest(team=team, events=batch(4)["events"])
    client.force_login(owner)
    response = client.get(reverse("usage:overview"))
    assert response.status_code == 200
    html = response.content.decode()
    # One chart in two layouts (wide, and narrow for phones): every day has a bar in each.
    assert "<svg" in html and html.count('class="usage-bar"') == 2 * len(period_for().days)
    assert 'class="usage-chart-wide"' in html and 'class="usage-chart-narrow"' in html
    assert "8 of 1,000 API calls included" in html
    assert "3 credits left" in html


def test_usage_chart_narrow_layout_has_legible_text_and_few_day_labels(team_and_owner):
    from usage.selectors import CHART_NARROW, CHART_WIDE, usage_panel_context

    team, _owner = team_and_owner
    panel = usage_panel_context(team=team)
    narrow, wide = panel["chart_narrow"], panel["chart"]
    # On a 390 px phone the chart is about 350 px wide: a user unit is 350/width px.
    assert CHART_NARROW.font_size * 350 / CHART_NARROW.width >= 12
    assert CHART_WIDE.font_size * 350 / CHART_WIDE.width < 12  # why the wide layout is not shown there
    labels = [bar["day"] for bar in narrow["bars"] if bar["label"]]
    assert labels[0] == 1 and len(labels) <= 3 and len([b for b in wide["bars"] if b["label"]]) > len(labels)
    assert len(narrow["bars"]) == len(wide["bars"]) == len(period_for().days)


def test_admin_lists_usage_records(admin_client, api_key_client):
    services.usage_events_ingest(team=api_key_client.team, events=batch(2)["events"])
    for name in ["creditledgerentry", "creditbalance", "usageevent", "meterreport", "meterdriftcheck", "usagealert",
                 "usageperiodclose", "teamusagepolicy"]:
        response = admin_client.get(reverse(f"admin:usage_{name}_changelist"))
        assert response.status_code == 200, name
    assert admin_client.get(reverse("admin:usage_creditledgerentry_add")).status_code == 403


def test_usage_run_command_flushes(api_key_client, capsys):
    from django.core.management import call_command

    call_command("usage_run", "flush")
    assert "flushed" in capsys.readouterr().out


def test_owner_sets_the_spend_cap_on_the_usage_page(team_and_owner, client, set_plan):
    from usage.models import TeamUsagePolicy

    team, owner = team_and_owner
    set_plan(team, "pro")
    client.force_login(owner)
    page = client.get(reverse("usage:overview")).content.decode()
    assert 'name="spend_cap"' in page
    response = client.post(reverse("usage:spend_cap"), {"spend_cap": "12.34", "currency": "brl"})
    assert response.status_code == 302
    policy = TeamUsagePolicy.objects.get(team=team)
    assert (policy.spend_cap_minor, policy.currency, policy.updated_by) == (1234, "brl", owner)
    assert 'value="12.34"' in client.get(reverse("usage:overview")).content.decode()
    client.post(reverse("usage:spend_cap"), {"spend_cap": "", "currency": "usd"})
    assert TeamUsagePolicy.objects.get(team=team).spend_cap_minor is None


def test_the_spend_cap_form_shows_the_cap_in_its_currencys_units(team_and_owner, client, set_plan):
    team, owner = team_and_owner
    set_plan(team, "pro")
    # A zero-decimal currency: 500 minor units are 500 yen, not 5.00.
    TeamUsagePolicyFactory(team=team, spend_cap_minor=500, currency="jpy")
    client.force_login(owner)
    assert 'value="500"' in client.get(reverse("usage:overview")).content.decode()


def test_a_member_cannot_set_the_spend_cap(team_and_owner, client, set_plan):
    from accounts.tests.factories import MembershipFactory
    from usage.models import TeamUsagePolicy

    team, owner = team_and_owner
    set_plan(team, "pro")
    member = MembershipFactory(team=team).user
    client.force_login(member)
    assert "Only the team" in client.get(reverse("usage:overview")).content.decode()
    response = client.post(reverse("usage:spend_cap"), {"spend_cap": "1", "currency": "usd"})
    assert response.status_code == 403
    assert not TeamUsagePolicy.objects.exists()


def test_usage_chart_with_no_usage_labels_its_axis_once(team_and_owner, client):
    team, owner = team_and_owner
    client.force_login(owner)
    html = client.get(reverse("usage:overview")).content.decode()
    wide = html[html.index('class="usage-chart-wide"'):html.index("</svg>", html.index('class="usage-chart-wide"'))]
    assert wide.count('text-anchor="end"') == 1  # the 0 at the axis, no "peak 0" above it
