"""
Metered overage reported to Stripe meters, the nightly drift check against Stripe's own count, and the monthly close.

A MeterReport row is created (under the team's row lock) before anything is sent; its id gives the meter event's
identifier and idempotency key, so a retried send is counted once by Stripe. See docs/usage.md.
"""
from __future__ import annotations

import logging
from dataclasses import dataclass, field
from datetime import datetime, timedelta
from decimal import Decimal

from django.conf import settings
from django.db import transaction
from django.db.models import Sum
from django.utils import timezone

from accounts.models import Team
from billing import selectors as billing_selectors
from billing.catalog import load_catalog
from billing.stripe_gateway import meters as meters_gateway
from billing_site.errors import BillingError

from ..models import MeterDriftCheck, MeterReport, UsagePeriodClose
from ..periods import period_for
from ..selectors import period_totals_by_team, period_used

logger = logging.getLogger(__name__)


def _meter_for_metric(metric: str):
    return next((meter for meter in load_catalog().meters if meter.metric == metric), None)


def meter_report_prepare(*, team: Team, metric: str, period_start: datetime, period_end: datetime,
                         now: datetime | None = None):
    """
    Create the aggregation row for overage not yet reported: (used - included) minus what earlier rows cover.
    The team row is locked first (lock order: team, then its meter reports) so two runs cannot both add the same
    units. Returns the new MeterReport or None.
    """
    now = now or timezone.now()
    limits = billing_selectors.team_plan_limits(team=team)
    meter = _meter_for_metric(metric)
    if limits.overage != "metered" or meter is None:
        return None
    with transaction.atomic():
        Team.objects.select_for_update().filter(pk=team.pk).first()
        used = period_used(team_id=team.pk, metric=metric, period_start=period_start, period_end=period_end)
        overage = max(0, used - limits.included.get(metric, 0))
        reported = (MeterReport.objects.filter(team=team, metric=metric, period_start=period_start,
                                               kind=MeterReport.Kind.OVERAGE)
                    .aggregate(total=Sum("quantity"))["total"] or 0)
        if overage <= reported:
            return None
        customer_id = billing_selectors.team_stripe_customer_id(team=team)
        if not customer_id:
            logger.error("team %s has %s overage %s but no Stripe customer: not reported", team.pk, metric,
                         overage - reported, extra={"team_id": team.pk})
            return None
        report = MeterReport.objects.create(
            team=team, metric=metric, event_name=meter.event_name, period_start=period_start,
            quantity=overage - reported, stripe_customer_id=customer_id,
            # Inside the period it bills (Stripe attributes the event to the invoice period of its timestamp).
            event_timestamp=min(now, period_end - timedelta(seconds=1)),
        )
    logger.info("meter report %s prepared: team %s %s +%s", report.pk, team.pk, metric, report.quantity,
                extra={"team_id": team.pk, "meter_report_id": report.pk})
    return report


@dataclass
class SendResult:
    sent: int = 0
    failed: int = 0
    remaining: int = 0
    errors: list = field(default_factory=list)  # (meter report id, error code)


def meter_reports_send(*, limit: int | None = None) -> SendResult:
    """
    Send pending aggregation rows to Stripe, oldest first, in one batch of up to USAGE_METER_REPORT_BATCH_SIZE.
    Each row is one meter event whose identifier and idempotency key derive from the row; it is marked SENT only
    after Stripe accepted it. On a failure the batch stops (the provider is likely down) and the rest stay PENDING
    for the next run; resending a row whose first attempt did reach Stripe is answered from Stripe's idempotency
    cache / identifier deduplication, so it is never counted twice.
    """
    limit = limit or settings.USAGE_METER_REPORT_BATCH_SIZE
    result = SendResult()
    pending = list(MeterReport.objects.filter(status=MeterReport.Status.PENDING).order_by("id")[:limit])
    for report in pending:
        MeterReport.objects.filter(pk=report.pk).update(attempts=report.attempts + 1)
        try:
            meters_gateway.meter_event_create(
                event_name=report.event_name, stripe_customer_id=report.stripe_customer_id, value=report.quantity,
                identifier=report.identifier, timestamp=report.event_timestamp, idempotency_key=report.identifier,
            )
        except BillingError as error:
            if _is_duplicate_identifier(error):
                logger.warning("meter report %s was already accepted by Stripe (duplicate identifier)", report.pk)
            else:
                MeterReport.objects.filter(pk=report.pk).update(last_error=f"{error.code}: {error}"[:2000])
                result.failed += 1
                result.errors.append((report.pk, error.code))
                logger.warning("meter report %s failed (%s); the batch stops and is retried", report.pk, error.code,
                               extra={"meter_report_id": report.pk})
                break
        MeterReport.objects.filter(pk=report.pk, status=MeterReport.Status.PENDING).update(
            status=MeterReport.Status.SENT, sent_at=timezone.now(), last_error="")
        result.sent += 1
    result.remaining = MeterReport.objects.filter(status=MeterReport.Status.PENDING).count()
    return result


def _is_duplicate_identifier(error: BillingError) -> bool:
    cause = error.__cause__
    message = str(getattr(cause, "user_message", "") or "").lower()
    return "identifier" in message and ("already" in message or "duplicate" in message)


def meter_reports_prepare_all(*, now: datetime | None = None) -> list:
    """Aggregation rows for every team with overage this period (and last period until the rollover closes it)."""
    now = now or timezone.now()
    current = period_for(now)
    reports = []
    for period in (current.previous(), current):
        closed = set(UsagePeriodClose.objects.filter(period_start=period.start).values_list("team_id", "metric"))
        for team_id, metric, _used in period_totals_by_team(period=period):
            if (team_id, metric) in closed:
                continue
            team = Team.objects.filter(pk=team_id).first()
            if team is None:
                continue
            report = meter_report_prepare(team=team, metric=metric, period_start=period.start,
                                          period_end=period.end, now=now)
            if report:
                reports.append(report)
    return reports


def meter_drift_check(*, team: Team, metric: str, period_start: datetime, now: datetime | None = None):
    """
    Compare what we reported (SENT overage rows) with Stripe's meter event summaries for the team's customer, up to
    a settled window end. Corrects when the project is sure:
    - Stripe has less and nothing is pending: a CORRECTION report for the difference (sent like any other);
    - Stripe has more by exactly the sum of corrections we sent in the last 23 hours: those corrections were not
      needed (the missing events arrived late), so they are cancelled with meter event adjustments.
    Anything else is recorded as DRIFT and logged as an error for staff.
    """
    now = now or timezone.now()
    meter = _meter_for_metric(metric)
    customer_id = billing_selectors.team_stripe_customer_id(team=team)
    if meter is None or not customer_id:
        return None
    period = period_for(period_start)
    settle = timedelta(seconds=settings.USAGE_METER_DRIFT_SETTLE_SECONDS)
    window_end = min(period.end, now - settle).replace(second=0, microsecond=0)  # Stripe wants whole minutes
    if window_end <= period.start:
        return None
    reports = MeterReport.objects.filter(team=team, metric=metric, period_start=period.start)
    project_total = sum(reports.filter(kind=MeterReport.Kind.OVERAGE, status=MeterReport.Status.SENT,
                                       event_timestamp__lt=window_end).values_list("quantity", flat=True))
    stripe_meter = meters_gateway.meter_find_by_event_name(event_name=meter.event_name)
    if stripe_meter is None:
        logger.error("no Stripe meter for event %s: drift check skipped", meter.event_name)
        return None
    summaries = meters_gateway.meter_event_summaries(meter_id=stripe_meter["id"], stripe_customer_id=customer_id,
                                                     start=period.start, end=window_end)
    stripe_total = int(sum(Decimal(str(s.get("aggregated_value") or 0)) for s in summaries))
    outcome = MeterDriftCheck.Outcome.MATCH
    correction = None
    if stripe_total < project_total:
        if reports.filter(status=MeterReport.Status.PENDING).exists():
            outcome = MeterDriftCheck.Outcome.DRIFT  # a send is in flight: not sure yet
        else:
            correction = MeterReport.objects.create(
                team=team, metric=metric, event_name=meter.event_name, period_start=period.start,
                quantity=project_total - stripe_total, kind=MeterReport.Kind.CORRECTION,
                stripe_customer_id=customer_id, event_timestamp=window_end - timedelta(seconds=1))
            outcome = MeterDriftCheck.Outcome.CORRECTED
    elif stripe_total > project_total:
        recent = list(reports.filter(kind=MeterReport.Kind.CORRECTION, status=MeterReport.Status.SENT,
                                     sent_at__gte=now - timedelta(hours=23), event_timestamp__lt=window_end))
        if recent and sum(r.quantity for r in recent) == stripe_total - project_total:
            for report in recent:
                meters_gateway.meter_event_adjustment_cancel(event_name=report.event_name,
                                                             identifier=report.identifier,
                                                             idempotency_key=f"{report.identifier}-cancel")
                MeterReport.objects.filter(pk=report.pk).update(status=MeterReport.Status.CANCELED)
            outcome = MeterDriftCheck.Outcome.CORRECTED
        else:
            outcome = MeterDriftCheck.Outcome.DRIFT
    check = MeterDriftCheck.objects.create(team=team, metric=metric, period_start=period.start,
                                           window_end=window_end, project_total=project_total,
                                           stripe_total=stripe_total, outcome=outcome, correction=correction)
    if outcome != MeterDriftCheck.Outcome.MATCH:
        log = logger.error if outcome == MeterDriftCheck.Outcome.DRIFT else logger.warning
        log("meter drift for team %s %s: project %s, Stripe %s (%s)", team.pk, metric, project_total, stripe_total,
            outcome, extra={"team_id": team.pk, "drift_check_id": check.pk})
    return check


def meter_drift_check_all(*, now: datetime | None = None) -> list:
    now = now or timezone.now()
    current = period_for(now)
    checks = []
    pairs = (MeterReport.objects.filter(period_start__in=[current.start, current.previous().start])
             .values_list("team_id", "metric", "period_start").distinct())
    for team_id, metric, period_start in sorted(set(pairs)):
        team = Team.objects.get(pk=team_id)
        check = meter_drift_check(team=team, metric=metric, period_start=period_start, now=now)
        if check:
            checks.append(check)
    return checks


def usage_period_rollover(*, now: datetime | None = None) -> list:
    """
    Close the previous period: report its final overage, and record per team and metric what was used
    (UsagePeriodClose). Afterwards ingest refuses events dated in it, and counters start from zero in the new period
    (their Redis keys and the daily totals are per period already). Safe to run twice. The caller flushes the
    metered-call buffer first (`usage_period_rollover_task` does) so the period's last calls are counted.
    """
    now = now or timezone.now()
    previous = period_for(now).previous()
    closed = []
    for team_id, metric, used in period_totals_by_team(period=previous):
        team = Team.objects.filter(pk=team_id).first()
        if team is None or UsagePeriodClose.objects.filter(team=team, metric=metric,
                                                           period_start=previous.start).exists():
            continue
        meter_report_prepare(team=team, metric=metric, period_start=previous.start, period_end=previous.end, now=now)
        limits = billing_selectors.team_plan_limits(team=team)
        included = limits.included.get(metric, 0)
        close, created = UsagePeriodClose.objects.get_or_create(
            team=team, metric=metric, period_start=previous.start,
            defaults={"period_end": previous.end, "used": used, "included": included,
                      "overage": max(0, used - included), "plan_key": limits.plan_key})
        if created:
            closed.append(close)
    meter_reports_send()
    return closed
