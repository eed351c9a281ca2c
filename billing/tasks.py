"""Celery tasks for billing. They take ids, call services, and are safe to run twice."""
import logging

from celery import shared_task
from django.conf import settings

logger = logging.getLogger(__name__)


@shared_task(bind=True, acks_late=True, ignore_result=True, max_retries=None)
def webhook_event_process_task(self, webhook_event_id: int, after_attempts: int | None = None) -> str:
    """
    Apply one stored Stripe event; on failure retry with backoff until the service parks it.

    `after_attempts`: the attempt count the sender saw. A copy whose event has moved on since (another copy or the
    sweep applied it meanwhile) does nothing, so the retry below and the sweep's re-sends never spend two attempts
    on one due time.
    """
    from .models import WebhookEvent
    from .services.webhooks import retry_delay_seconds, webhook_event_apply

    if after_attempts is not None and not WebhookEvent.objects.filter(
            pk=webhook_event_id, attempts=after_attempts,
            status__in=[WebhookEvent.Status.PENDING, WebhookEvent.Status.FAILED]).exists():
        return "superseded"
    status = webhook_event_apply(webhook_event_id=webhook_event_id)
    if status == WebhookEvent.Status.FAILED and self.request.is_eager and not settings.BILLING_EAGER_RETRY_INLINE:
        # Run in-process (`make run`): an eager retry would run at once, spending every attempt within a second.
        # The row holds its retry time; the in-process scheduler's sweep applies it when due.
        return status
    if status == WebhookEvent.Status.FAILED:
        attempts = WebhookEvent.objects.filter(pk=webhook_event_id).values_list("attempts", flat=True).first() or 1
        raise self.retry(countdown=retry_delay_seconds(attempts), kwargs={"after_attempts": attempts},
                         max_retries=settings.BILLING_WEBHOOK_MAX_ATTEMPTS + 1)
    return status


@shared_task(acks_late=True, ignore_result=True)
def webhook_events_drain_task(shard: int) -> int:
    """Apply the pending stored events of one shard (see services.webhooks: the doorbell and the drain)."""
    from .services.webhooks import webhook_events_drain

    return webhook_events_drain(shard=shard)


@shared_task(acks_late=True, ignore_result=True)
def webhook_events_retry_due_task() -> int:
    """The fast sweep of stored events (BILLING_WEBHOOK_SWEEP_SECONDS): see webhook_events_enqueue_due."""
    from .services.webhooks import webhook_events_enqueue_due

    return webhook_events_enqueue_due()


@shared_task(acks_late=True, ignore_result=True)
def events_sweep_task() -> int:
    from .services.webhooks import events_sweep

    found = events_sweep()
    if found:
        logger.warning("events sweep recorded %s missed stripe events", found)
    return found


@shared_task(bind=True, acks_late=True, ignore_result=True, max_retries=5, default_retry_delay=30)
def send_team_email_task(self, team_id: int, template: str, context: dict, to: list[str] | None = None) -> None:
    from .emails import team_email_send_now

    try:
        team_email_send_now(team_id=team_id, template=template, context=context, to=to)
    except OSError as error:  # SMTP down: retry later, the message is rendered again from ids
        raise self.retry(exc=error)


@shared_task(bind=True, acks_late=True, ignore_result=True, max_retries=5, default_retry_delay=30)
def send_staff_email_task(self, subject: str, body: str) -> None:
    from django.core.mail import send_mail

    try:
        send_mail(subject, body, settings.DEFAULT_FROM_EMAIL, settings.BILLING_STAFF_EMAILS)
    except OSError as error:
        raise self.retry(exc=error)
