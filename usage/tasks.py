"""
Celery tasks for usage. Each calls a service, takes ids, and is safe to run twice (see each service). The beat
schedule and queued messages name them `usage.tasks.<function>`: keep the names.
"""
import logging

from celery import shared_task
from django.conf import settings

from accounts.models import Team

from . import services
from .metering.buffer import buffer_flush
from .models import CreditLedgerEntry
from .periods import period_for
from .selectors import period_totals_by_team

logger = logging.getLogger(__name__)

_RETRY = {"autoretry_for": (Exception,), "retry_backoff": 5, "retry_backoff_max": 300, "max_retries": 8,
          "acks_late": True}


@shared_task(acks_late=True, ignore_result=True)
def usage_buffer_flush_task() -> dict:
    result = buffer_flush()
    return {"events_read": result.events_read, "inserted": result.events_inserted, "batches": result.batches}


@shared_task(ignore_result=True, **_RETRY)
def usage_overage_report_task() -> dict:
    buffer_flush()
    prepared = services.meter_reports_prepare_all()
    sent = services.meter_reports_send()
    if sent.failed:
        # Let Celery retry with backoff; the rows stay PENDING so nothing is lost in the meantime.
        raise RuntimeError(f"meter reporting stopped after {sent.sent} sent: {sent.errors}")
    return {"prepared": len(prepared), "sent": sent.sent, "remaining": sent.remaining}


@shared_task(acks_late=True, ignore_result=True)
def usage_meter_reports_send_task() -> int:
    """
    The meter-report sweep (every USAGE_METER_REPORT_SWEEP_SECONDS): send what is prepared and still pending. A
    report stranded by a killed worker or a Stripe outage goes out within one interval of recovery; Stripe counts
    each report once (identifier and idempotency key derive from the row). Failures stay pending for the next run.
    """
    sent = services.meter_reports_send()
    if sent.failed:
        logger.warning("meter report sweep: %s sent, %s left pending: %s", sent.sent, sent.remaining, sent.errors)
    return sent.sent


@shared_task(ignore_result=True, **_RETRY)
def usage_meter_drift_check_task() -> int:
    return len(services.meter_drift_check_all())


@shared_task(ignore_result=True, **_RETRY)
def usage_alerts_task() -> int:
    sent = 0
    for team_id in sorted({team_id for team_id, _m, _u in period_totals_by_team(period=period_for())}):
        team = Team.objects.filter(pk=team_id).first()
        if team is not None:
            sent += len(services.usage_alerts_check(team=team))
    return sent


@shared_task(ignore_result=True, **_RETRY)
def usage_alert_credits_exhausted_task(team_id: int) -> bool:
    team = Team.objects.filter(pk=team_id).first()
    return bool(team and services.usage_alert_credits_exhausted(team=team))


def credits_exhausted_alert_enqueue(team_id: int) -> None:
    """
    A CREDITS_EXHAUSTED_HOOKS entry (registered in UsageConfig.ready): alert from a worker, off the hot path. Runs
    after the debit committed, so it must not raise: with the broker down the send is logged and skipped (the
    alert is a courtesy; the balance and the API's 402 answers are the record).
    """
    from billing_site.celery import task_send

    task_send(usage_alert_credits_exhausted_task, (team_id,), what=f"credits-exhausted alert for team {team_id}")


@shared_task(ignore_result=True, **_RETRY)
def usage_period_rollover_task() -> int:
    buffer_flush()  # the period's last metered calls must be stored before it is closed
    return len(services.usage_period_rollover())


@shared_task(ignore_result=True, **_RETRY)
def usage_credits_expire_task() -> int:
    if not settings.USAGE_CREDIT_EXPIRY_DAYS:
        return 0
    expired = 0
    team_ids = (CreditLedgerEntry.objects.filter(reason=CreditLedgerEntry.Reason.PURCHASE)
                .values_list("team_id", flat=True).distinct())
    for team in Team.objects.filter(pk__in=team_ids):
        if services.credits_expire(team=team):
            expired += 1
    return expired
