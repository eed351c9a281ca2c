"""
Alerts to a team: 80 % and 100 % of a metric's included amount, and credits exhausted; each once per period.

They are sent like every other team email, through `billing.emails.send_team_email`: to the team's billing address,
in its owner's language, by a task after the transaction commits (retried while the mail server is down).
"""
from __future__ import annotations

import logging
from datetime import datetime

from django.conf import settings
from django.db import IntegrityError, transaction

from accounts.models import Team
from billing import selectors as billing_selectors
from billing.emails import send_team_email, team_email_recipients

from ..models import UsageAlert
from ..periods import period_for
from ..selectors import credits_balance, period_used
from .errors import way_out_urls

logger = logging.getLogger(__name__)


def usage_alert_send(*, team: Team, kind: str, metric: str, period_start: datetime, context: dict
                     ) -> UsageAlert | None:
    """
    Email the team once per (kind, metric, period): the UsageAlert row (unique constraint) is inserted in the
    caller's transaction and the email queued for after its commit, so a rollback leaves neither. Template:
    `usage/email/<kind>.txt`. `context` must be JSON-serialisable. Returns the new UsageAlert, or None when this
    alert was sent before.
    """
    if UsageAlert.objects.filter(team=team, kind=kind, metric=metric, period_start=period_start).exists():
        return None
    recipients = team_email_recipients(team=team)
    try:
        with transaction.atomic():
            alert = UsageAlert.objects.create(team=team, kind=kind, metric=metric, period_start=period_start,
                                              sent_to=recipients[0])
    except IntegrityError:
        return None  # a concurrent run recorded it first, and its email is queued
    send_team_email(team=team, template=f"usage/email/{kind}",
                    context={"kind": kind, "metric": metric, **way_out_urls(), **context})
    logger.info("usage alert %s queued for team %s", kind, team.pk, extra={"team_id": team.pk})
    return alert


def usage_alerts_check(*, team: Team, now: datetime | None = None) -> list[UsageAlert]:
    """Quota alerts for the current period: 80 % and 100 % of each metric's included amount."""
    period = period_for(now)
    limits = billing_selectors.team_plan_limits(team=team)
    sent = []
    for metric, included in sorted(limits.included.items()):
        if included <= 0:
            continue
        used = period_used(team_id=team.pk, metric=metric, period_start=period.start, period_end=period.end)
        for threshold in settings.USAGE_ALERT_THRESHOLDS:
            if used * 100 >= included * threshold:
                kind = UsageAlert.Kind.QUOTA_100 if threshold >= 100 else UsageAlert.Kind.QUOTA_80
                alert = usage_alert_send(team=team, kind=kind, metric=metric, period_start=period.start,
                                         context={"used": used, "included": included, "threshold": threshold,
                                                  "plan_key": limits.plan_key, "overage": limits.overage})
                if alert:
                    sent.append(alert)
    return sent


def usage_alert_credits_exhausted(*, team: Team, now: datetime | None = None) -> UsageAlert | None:
    """When the team's credits reach zero: tell it once per period (checked again: credits may be back)."""
    if credits_balance(team=team) > 0:
        return None
    return usage_alert_send(team=team, kind=UsageAlert.Kind.CREDITS_EXHAUSTED, metric="",
                            period_start=period_for(now).start, context={})
