"""Reads for usage and credits. Usage figures come from UsageDailyTotal (exact sums of the stored events)."""
from __future__ import annotations

from collections import defaultdict
from dataclasses import dataclass
from datetime import date, datetime

from django.db.models import QuerySet, Sum
from django.urls import reverse
from django.utils import timezone

from accounts.models import APIKey, Team
from billing import selectors as billing_selectors
from billing.catalog import load_catalog

from .models import CreditBalance, CreditLedgerEntry, MeterReport, UsageDailyTotal
from .periods import Period, period_for


def credits_balance(*, team: Team) -> int:
    """The team's credits (whole credits, never negative)."""
    return CreditBalance.objects.filter(team=team).values_list("balance", flat=True).first() or 0


def credits_purchased_for(*, team: Team, reference: str) -> int:
    """Credits granted by the purchase with this reference (checkout session or payment intent id); 0 if none."""
    return (
        CreditLedgerEntry.objects.filter(team=team, reason=CreditLedgerEntry.Reason.PURCHASE, reference=reference)
        .aggregate(total=Sum("delta"))["total"]
        or 0
    )


def credit_ledger(*, team: Team) -> QuerySet[CreditLedgerEntry]:
    return CreditLedgerEntry.objects.filter(team=team).select_related("created_by").order_by("-created", "-id")


def period_used(*, team_id: int, metric: str, period_start: datetime, period_end: datetime) -> int:
    return (
        UsageDailyTotal.objects.filter(team_id=team_id, metric=metric, day__gte=period_start.date(),
                                       day__lt=period_end.date())
        .aggregate(total=Sum("quantity"))["total"]
        or 0
    )


def period_totals_by_team(*, period: Period) -> list[tuple[int, str, int]]:
    """(team_id, metric, used) for every team with usage in the period."""
    rows = (
        UsageDailyTotal.objects.filter(day__gte=period.start.date(), day__lt=period.end.date())
        .values("team_id", "metric")
        .annotate(used=Sum("quantity"))
        .order_by("team_id", "metric")
    )
    return [(row["team_id"], row["metric"], row["used"]) for row in rows]


def _iso(moment: datetime) -> str:
    return moment.isoformat().replace("+00:00", "Z")


def usage_period_summary(*, team: Team, at: datetime | None = None) -> dict:
    """
    The shape of GET /api/v1/usage/: this period per metric (used, included, remaining, overage), credits balance,
    a daily series up to today and a per-API-key breakdown. Metered calls reach these figures when the buffer is
    flushed (every few seconds); ingested events at once.
    """
    now = at or timezone.now()
    period = period_for(now)
    limits = billing_selectors.team_plan_limits(team=team)
    rows = list(
        UsageDailyTotal.objects.filter(team=team, day__gte=period.start.date(), day__lt=period.end.date())
        .values("metric", "day", "api_key_ref")
        .annotate(quantity=Sum("quantity"))
    )
    metric_names = sorted(set(load_catalog().metrics) | set(limits.included) | {row["metric"] for row in rows})
    used: dict[str, int] = defaultdict(int)
    by_day: dict[date, dict[str, int]] = defaultdict(lambda: defaultdict(int))
    by_key: dict[int, dict[str, int]] = defaultdict(lambda: defaultdict(int))
    for row in rows:
        used[row["metric"]] += row["quantity"]
        by_day[row["day"]][row["metric"]] += row["quantity"]
        by_key[row["api_key_ref"]][row["metric"]] += row["quantity"]
    metrics = {}
    for name in metric_names:
        included = limits.included.get(name, 0)
        metrics[name] = {
            "used": used[name],
            "included": included,
            "remaining": max(0, included - used[name]),
            "overage": max(0, used[name] - included),
        }
    today = now.date()
    daily = [
        {"date": day.isoformat(), "metrics": {name: by_day[day].get(name, 0) for name in metric_names}}
        for day in period.days
        if day <= today
    ]
    keys = {key.pk: key for key in APIKey.objects.filter(team=team, pk__in=[k for k in by_key if k])}
    by_api_key = [
        {
            "api_key_id": key_ref or None,
            "name": keys[key_ref].name if key_ref in keys else ("" if not key_ref else "(deleted key)"),
            "prefix": keys[key_ref].prefix if key_ref in keys else "",
            "metrics": dict(counts),
        }
        for key_ref, counts in sorted(by_key.items())
    ]
    return {
        "period_start": _iso(period.start),
        "period_end": _iso(period.end),
        "plan": limits.plan_key,
        "overage_mode": limits.overage,
        "metrics": metrics,
        "credits_balance": credits_balance(team=team),
        "daily": daily,
        "by_api_key": by_api_key,
    }


# Chart geometry for the usage panel (SVG user units; the SVG scales to its container). Two layouts of the same
# data: the wide one for desktops, and a narrow one shown below 600 px (site.css), drawn in fewer user units with a
# larger font and fewer day labels, so its text is still about 13 px on a 390 px phone instead of 6 px.
@dataclass(frozen=True)
class ChartLayout:
    width: int
    height: int
    padding_left: int
    padding_bottom: int
    padding_top: int
    font_size: int
    label_days: tuple[int, ...]  # days of the month with a label (day 1 always has one)


CHART_WIDE = ChartLayout(width=600, height=160, padding_left=40, padding_bottom=20, padding_top=10, font_size=10,
                         label_days=(5, 10, 15, 20, 25, 30))
CHART_NARROW = ChartLayout(width=300, height=170, padding_left=54, padding_bottom=26, padding_top=16, font_size=15,
                           label_days=(10, 20))


def _chart(*, layout: ChartLayout, days, values: dict[str, int], peak: int) -> dict:
    plot_width = layout.width - layout.padding_left
    plot_height = layout.height - layout.padding_bottom - layout.padding_top
    slot = plot_width / len(days)
    bars = []
    for index, day in enumerate(days):
        value = values.get(day.isoformat(), 0)
        height = round(plot_height * value / peak, 1) if peak else 0
        bars.append({
            "date": day.isoformat(),
            "day": day.day,
            "value": value,
            "x": round(layout.padding_left + index * slot + slot * 0.15, 1),
            "width": round(slot * 0.7, 1),
            "y": round(layout.padding_top + plot_height - height, 1),
            "height": height,
            "label": index == 0 or day.day in layout.label_days,
            "label_x": round(layout.padding_left + index * slot + slot / 2, 1),
        })
    return {
        "width": layout.width,
        "height": layout.height,
        "font_size": layout.font_size,
        "bars": bars,
        "peak": peak,
        "axis_x": layout.padding_left,
        "axis_y": layout.height - layout.padding_bottom,
        "label_y": layout.height - 5,
        "top_y": layout.padding_top,
        "peak_y": layout.padding_top + layout.font_size - 2,
    }


def usage_panel_context(*, team: Team, metric: str = "api_call", at: datetime | None = None) -> dict:
    """
    Everything `usage/partials/usage_panel.html` needs, chart geometry included, so the page renders an inline SVG
    bar chart on the server (no JavaScript).
    """
    summary = usage_period_summary(team=team, at=at)
    period = period_for(at or timezone.now())
    days = period.days
    values = {entry["date"]: entry["metrics"].get(metric, 0) for entry in summary["daily"]}
    peak = max(values.values(), default=0)
    figures = summary["metrics"].get(metric, {"used": 0, "included": 0, "remaining": 0, "overage": 0})
    percent = min(100, round(100 * figures["used"] / figures["included"])) if figures["included"] else 0
    return {
        "summary": summary,
        "metric": metric,
        "figures": figures,
        "percent_used": percent,
        "credits_balance": summary["credits_balance"],
        "recent_credits": list(credit_ledger(team=team)[:5]),
        "chart": _chart(layout=CHART_WIDE, days=days, values=values, peak=peak),
        "chart_narrow": _chart(layout=CHART_NARROW, days=days, values=values, peak=peak),
        "buy_credits_url": reverse("billing:pricing") + "#credit-packs",
        "usage_url": reverse("usage:overview"),
    }


def meter_reports_pending(*, limit: int) -> QuerySet[MeterReport]:
    return MeterReport.objects.filter(status=MeterReport.Status.PENDING).select_related("team").order_by("id")[:limit]
