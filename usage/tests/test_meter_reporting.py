"""Metered overage to Stripe meters, against the emulator over real HTTP: batches, retries, drift, rollover."""
from datetime import timedelta

import pytest
from django.utils import timezone

from billing import selectors as billing_selectors
from billing.stripe_gateway import _core, meters as meters_gateway
from billing_site.errors import BillingError
from usage import services
from usage.models import MeterDriftCheck, MeterReport, UsagePeriodClose
from usage.periods import period_for
from usage.tests.factories import MeterReportFactory, usage_stored

pytestmark = pytest.mark.django_db
METER_EVENTS = "/v1/billing/meter_events"


@pytest.fixture
def stripe_setup(stripe_emulator, settings, monkeypatch):
    """The catalog's meter on the emulator, and Stripe customers for teams (the billing core's job, done here)."""
    settings.STRIPE_MAX_NETWORK_RETRIES = 0  # see each failure ourselves; the task owns retries
    client = _core.client()
    meter = client.v1.billing.meters.create(params={
        "display_name": "API calls", "event_name": "api_call", "default_aggregation": {"formula": "sum"},
        "customer_mapping": {"type": "by_id", "event_payload_key": "stripe_customer_id"},
        "value_settings": {"event_payload_key": "value"},
    })
    customers: dict[int, str] = {}
    monkeypatch.setattr(billing_selectors, "team_stripe_customer_id", lambda *, team: customers.get(team.pk),
                        raising=False)

    def customer_for(team) -> str:
        customer = client.v1.customers.create(params={"email": team.billing_email},
                                              options=_core.write_options(f"test-customer-{team.pk}"))
        customers[team.pk] = customer.id
        return customer.id

    return {"meter_id": meter.id, "customer_for": customer_for, "emulator": stripe_emulator}


def stripe_total(stripe_setup, customer_id, start=None, end=None) -> int:
    period = period_for()
    start = start or period.start
    end = end or (timezone.now() + timedelta(minutes=2)).replace(second=0, microsecond=0)
    summaries = meters_gateway.meter_event_summaries(meter_id=stripe_setup["meter_id"],
                                                     stripe_customer_id=customer_id, start=start, end=end)
    return int(sum(s["aggregated_value"] for s in summaries))


def meter_event_posts(emulator) -> list[dict]:
    log = emulator.control("GET", "/_emulator/requests")
    return [r for r in log["data"] if r["path"] == METER_EVENTS and r["method"] == "POST"]


@pytest.fixture
def pro_teams(team_and_owner, set_plan, stripe_setup):
    from accounts.tests.factories import make_team_with_owner

    teams = [make_team_with_owner()[0] for _ in range(4)]
    for team in teams:
        set_plan(team, "pro", included=10)
        stripe_setup["customer_for"](team)
    return teams


def test_overage_is_reported_once_and_retried_after_a_failure_mid_batch(pro_teams, stripe_setup, monkeypatch):
    emulator = stripe_setup["emulator"]
    for n, team in enumerate(pro_teams):
        usage_stored(team, 10 + 3 * (n + 1), key=f"u{n}")  # overage 3, 6, 9, 12
    free_team, _ = __import__("accounts.tests.factories", fromlist=["x"]).make_team_with_owner()
    usage_stored(free_team, 5000, key="free")  # a credits plan is never reported to a meter

    reports = services.meter_reports_prepare_all()
    assert sorted(r.quantity for r in reports) == [3, 6, 9, 12]
    assert services.meter_reports_prepare_all() == []  # nothing new: no second row for the same units

    original = meters_gateway.meter_event_create
    calls = {"n": 0}

    def create_then_break_stripe(**kwargs):
        result = original(**kwargs)
        calls["n"] += 1
        if calls["n"] == 2:  # Stripe starts failing in the middle of the batch
            emulator.control("POST", "/_emulator/faults",
                             {"path_prefix": METER_EVENTS, "method": "POST", "status": "500", "count": "-1"})
        return result

    monkeypatch.setattr(meters_gateway, "meter_event_create", create_then_break_stripe)
    first = services.meter_reports_send()
    assert (first.sent, first.failed, first.remaining) == (2, 1, 2)
    statuses = list(MeterReport.objects.order_by("id").values_list("status", "attempts"))
    assert statuses == [("sent", 1), ("sent", 1), ("pending", 1), ("pending", 0)]
    assert MeterReport.objects.get(attempts=1, status="pending").last_error.startswith("stripe_unavailable")

    emulator.control("DELETE", "/_emulator/faults")
    monkeypatch.setattr(meters_gateway, "meter_event_create", original)
    second = services.meter_reports_send()
    assert (second.sent, second.failed, second.remaining) == (2, 0, 0)
    for n, team in enumerate(pro_teams):
        assert stripe_total(stripe_setup, billing_selectors.team_stripe_customer_id(team=team)) == 3 * (n + 1)
    assert len([r for r in meter_event_posts(emulator) if r["status"] == 200]) == 4

    # More usage later: only the new units are reported, under a new identifier.
    usage_stored(pro_teams[0], 4, key="later")
    later = services.meter_reports_prepare_all()
    assert [(r.team_id, r.quantity) for r in later] == [(pro_teams[0].pk, 4)]
    services.meter_reports_send()
    assert stripe_total(stripe_setup, billing_selectors.team_stripe_customer_id(team=pro_teams[0])) == 7


def test_a_lost_answer_is_retried_without_double_counting(pro_teams, stripe_setup, monkeypatch):
    team = pro_teams[0]
    customer = billing_selectors.team_stripe_customer_id(team=team)
    usage_stored(team, 25, key="u")
    [report] = services.meter_reports_prepare_all()
    original = meters_gateway.meter_event_create

    def reached_stripe_but_answer_lost(**kwargs):
        original(**kwargs)
        raise BillingError("stripe_unavailable", "timeout", http_status=503)

    monkeypatch.setattr(meters_gateway, "meter_event_create", reached_stripe_but_answer_lost)
    assert services.meter_reports_send().failed == 1
    assert MeterReport.objects.get(pk=report.pk).status == MeterReport.Status.PENDING
    monkeypatch.setattr(meters_gateway, "meter_event_create", original)
    assert services.meter_reports_send().sent == 1
    assert stripe_total(stripe_setup, customer) == 15  # sent twice, counted once
    posts = meter_event_posts(stripe_setup["emulator"])
    assert len(posts) == 2 and {p["idempotency_key"] for p in posts} == {report.identifier}


def test_drift_check_corrects_a_shortfall_and_cancels_a_needless_correction(pro_teams, stripe_setup, settings):
    settings.USAGE_METER_DRIFT_SETTLE_SECONDS = 0
    team = pro_teams[0]
    customer = billing_selectors.team_stripe_customer_id(team=team)
    later = timezone.now() + timedelta(minutes=2)
    usage_stored(team, 15, key="u")
    services.meter_reports_prepare_all()
    services.meter_reports_send()
    period = period_for()
    check = services.meter_drift_check(team=team, metric="api_call", period_start=period.start, now=later)
    assert (check.outcome, check.project_total, check.stripe_total) == ("match", 5, 5)

    # We believe 3 more units went to Stripe, but Stripe never got them.
    MeterReportFactory(team=team, period_start=period.start, quantity=3, status=MeterReport.Status.SENT,
                       stripe_customer_id=customer)
    check = services.meter_drift_check(team=team, metric="api_call", period_start=period.start, now=later)
    assert (check.outcome, check.drift) == ("corrected", -3)
    assert check.correction.kind == MeterReport.Kind.CORRECTION and check.correction.quantity == 3
    services.meter_reports_send()
    assert stripe_total(stripe_setup, customer) == 8
    assert services.meter_drift_check(team=team, metric="api_call", period_start=period.start,
                                      now=later).outcome == "match"

    # The "lost" 3 units turn up after all: the correction was needless and is cancelled by an adjustment.
    meters_gateway.meter_event_create(event_name="api_call", stripe_customer_id=customer, value=3,
                                      identifier="late-arrival", timestamp=timezone.now(),
                                      idempotency_key="late-arrival")
    check = services.meter_drift_check(team=team, metric="api_call", period_start=period.start, now=later)
    assert (check.outcome, check.drift) == ("corrected", 3)
    assert MeterReport.objects.get(kind=MeterReport.Kind.CORRECTION).status == MeterReport.Status.CANCELED
    assert stripe_total(stripe_setup, customer) == 8
    assert services.meter_drift_check(team=team, metric="api_call", period_start=period.start,
                                      now=later).outcome == "match"


def test_unexplained_excess_in_stripe_is_reported_not_touched(pro_teams, stripe_setup, settings):
    settings.USAGE_METER_DRIFT_SETTLE_SECONDS = 0
    team = pro_teams[0]
    customer = billing_selectors.team_stripe_customer_id(team=team)
    usage_stored(team, 12, key="u")
    services.meter_reports_prepare_all()
    services.meter_reports_send()
    meters_gateway.meter_event_create(event_name="api_call", stripe_customer_id=customer, value=4,
                                      identifier="someone-else", timestamp=timezone.now(),
                                      idempotency_key="someone-else")
    check = services.meter_drift_check(team=team, metric="api_call", period_start=period_for().start,
                                       now=timezone.now() + timedelta(minutes=2))
    assert (check.outcome, check.project_total, check.stripe_total) == ("drift", 2, 6)
    assert check.correction is None and MeterDriftCheck.objects.count() == 1
    assert stripe_total(stripe_setup, customer) == 6


def test_monthly_rollover_reports_the_final_overage_and_closes_the_period(pro_teams, stripe_setup):
    team = pro_teams[0]
    customer = billing_selectors.team_stripe_customer_id(team=team)
    now = timezone.now()
    current = period_for(now)
    previous = current.previous()
    usage_stored(team, 14, key="old", at=previous.end - timedelta(hours=1))
    usage_stored(team, 2, key="new", at=now)
    closed = services.usage_period_rollover(now=now)
    assert [(c.metric, c.used, c.included, c.overage) for c in closed] == [("api_call", 14, 10, 4)]
    report = MeterReport.objects.get(period_start=previous.start)
    assert report.status == MeterReport.Status.SENT and report.event_timestamp < previous.end
    assert stripe_total(stripe_setup, customer, start=previous.start, end=previous.end) == 4
    assert services.usage_period_rollover(now=now) == []  # safe to run twice
    assert MeterReport.objects.count() == 1 and UsagePeriodClose.objects.count() == 1
    # The new period starts from zero, and late events for the closed one are refused.
    assert services.meter_reports_prepare_all(now=now) == []
    with pytest.raises(services.UsageEventInvalidError):
        services.usage_events_ingest(team=team, events=[{
            "idempotency_key": "late", "metric": "api_call", "quantity": 1,
            "occurred_at": (current.start - timedelta(minutes=5)).isoformat()}])
    from usage.selectors import usage_period_summary

    assert usage_period_summary(team=team, at=now)["metrics"]["api_call"]["used"] == 2
