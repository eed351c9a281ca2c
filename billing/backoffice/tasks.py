"""
Back-office Celery tasks. They take ids, are safe to run twice (the services check state under row locks) and own
their retries: a refund whose Stripe call could not be made is retried with backoff using the same idempotency key.

The tasks keep the names they had in `billing/tasks_backoffice.py` (`name=`): messages already queued and beat
rows stored by django-celery-beat still reach them.
"""
import logging
from datetime import timedelta

from celery import shared_task
from django.conf import settings
from django.utils import timezone
from django.utils.dateparse import parse_datetime

from .reconciliation import reconciliation_run
from billing.models import RefundRequest

from .refunds import (
    RefundStripeUnavailable,
    refund_request_enqueue_now,
    refund_request_execute,
    refund_requests_stuck,
    refund_retry_delay_seconds,
)

logger = logging.getLogger("billing.backoffice")

REFUND_MAX_RETRIES = 5


@shared_task(bind=True, acks_late=True, max_retries=None,
             name="billing.tasks_backoffice.refund_request_execute_task")
def refund_request_execute_task(self, refund_request_id: int) -> str:
    """
    Execute one approved refund request. Stripe unreachable: the service records the retry state on the row and
    this task retries after the same delay; if the worker dies meanwhile, the sweep sends it when it is due. The
    count of tries lives on the row (not in the message), so a re-sent copy continues it instead of starting over.
    """
    tries = RefundRequest.objects.filter(pk=refund_request_id).values_list("stripe_tries", flat=True).first() or 0
    try:
        refund_request = refund_request_execute(refund_request_id=refund_request_id,
                                                final_attempt=tries >= REFUND_MAX_RETRIES)
    except RefundStripeUnavailable as error:
        tries = RefundRequest.objects.filter(pk=refund_request_id).values_list("stripe_tries", flat=True).first() or 1
        raise self.retry(exc=error, countdown=refund_retry_delay_seconds(tries)) from error
    return refund_request.status


@shared_task(acks_late=True, name="billing.tasks_backoffice.refund_requests_resume_stuck_task")
def refund_requests_resume_stuck_task() -> int:
    """The refund sweep (every BACKOFFICE_REFUND_SWEEP_SECONDS): send every request whose time has come (see
    refund_requests_stuck). Each copy expires after a few sweeps, so an outage does not pile them up."""
    stuck = list(refund_requests_stuck().values_list("pk", flat=True)[:500])
    sent = 0
    for refund_request_id in stuck:
        if not refund_request_enqueue_now(refund_request_id=refund_request_id,
                                          expires_seconds=settings.BACKOFFICE_REFUND_SWEEP_SECONDS * 6):
            break
        sent += 1
    return sent


@shared_task(acks_late=True, soft_time_limit=1800, time_limit=1900, name="billing.tasks_backoffice.reconcile_task")
def reconcile_task(since_iso: str | None = None) -> int:
    """Scheduled reconciliation: objects created in the last BACKOFFICE_RECONCILE_LOOKBACK_DAYS (the command does
    everything, or `--since`)."""
    since = parse_datetime(since_iso) if since_iso else (
        timezone.now() - timedelta(days=settings.BACKOFFICE_RECONCILE_LOOKBACK_DAYS))
    run = reconciliation_run(since=since, triggered_by="schedule")
    return run.drift_count
