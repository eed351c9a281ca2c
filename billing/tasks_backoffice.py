"""
Back-office Celery tasks. They take ids, are safe to run twice (the services check state under row locks) and own
their retries: a refund whose Stripe call could not be made is retried with backoff using the same idempotency key.
"""
import logging

from celery import shared_task

logger = logging.getLogger("billing.backoffice")

REFUND_MAX_RETRIES = 5


@shared_task(bind=True, acks_late=True, max_retries=REFUND_MAX_RETRIES)
def refund_request_execute_task(self, refund_request_id: int) -> str:
    from billing.backoffice.refunds import RefundStripeUnavailable, refund_request_execute

    final = self.request.retries >= REFUND_MAX_RETRIES
    try:
        refund_request = refund_request_execute(refund_request_id=refund_request_id, final_attempt=final)
    except RefundStripeUnavailable as error:
        raise self.retry(exc=error, countdown=min(600, 10 * 2 ** self.request.retries)) from error
    return refund_request.status


@shared_task(acks_late=True)
def refund_requests_resume_stuck_task() -> int:
    """Resume requests left STARTED without DONE (a worker died between the Stripe call and recording it)."""
    from billing.backoffice.refunds import refund_requests_stuck

    stuck = list(refund_requests_stuck().values_list("pk", flat=True))
    for refund_request_id in stuck:
        refund_request_execute_task.delay(refund_request_id)
    return len(stuck)


@shared_task(acks_late=True, soft_time_limit=1800, time_limit=1900)
def reconcile_task(since_iso: str | None = None) -> int:
    """Scheduled reconciliation: objects created in the last BACKOFFICE_RECONCILE_LOOKBACK_DAYS (the command does
    everything, or `--since`)."""
    from datetime import timedelta

    from django.conf import settings
    from django.utils import timezone
    from django.utils.dateparse import parse_datetime

    from billing.backoffice.reconciliation import reconciliation_run

    since = parse_datetime(since_iso) if since_iso else (
        timezone.now() - timedelta(days=settings.BACKOFFICE_RECONCILE_LOOKBACK_DAYS))
    run = reconciliation_run(since=since, triggered_by="schedule")
    return run.drift_count
