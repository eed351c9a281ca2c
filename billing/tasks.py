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


@shared_task(bind=True, acks_late=True, ignore_result=True, max_retries=5, default_retry_delay=30)
def card_default_if_first_task(self, team_id: int, payment_method_id: str) -> None:
    """A card saved on Stripe's hosted page becomes the team's default when it has none (safe to run twice)."""
    from accounts.models import Team
    from billing_site.errors import BillingError

    from .services.payment_methods import card_default_if_first

    team = Team.objects.filter(pk=team_id).first()
    if team is None:
        return
    try:
        card_default_if_first(team=team, payment_method_id=payment_method_id)
    except BillingError as error:
        if error.http_status and error.http_status >= 500:
            raise self.retry(exc=error)  # Stripe unavailable: later
        logger.warning("default card %s for team %s not set: %s", payment_method_id, team_id, error.code)


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


@shared_task(acks_late=True, ignore_result=True)
def outbound_email_send_task(outbound_email_id: int) -> str:
    """
    Send one outbox row (billing.emails.outbound_email_send): a copy of this task finding the row sent or leased
    does nothing. No retry of its own: a failure sets the row's retry time and the sweep sends it when due.
    """
    from .emails import outbound_email_send

    return outbound_email_send(outbound_email_id=outbound_email_id)


@shared_task(acks_late=True, ignore_result=True)
def outbound_emails_send_due_task() -> int:
    """The outbox sweep (BILLING_EMAIL_SWEEP_SECONDS): see outbound_emails_enqueue_due."""
    from .emails import outbound_emails_enqueue_due

    return outbound_emails_enqueue_due()


@shared_task(acks_late=True, ignore_result=True)
def outbound_emails_prune_task() -> int:
    """Retention of the outbox (daily): sent rows older than BILLING_EMAIL_RETENTION_DAYS are deleted."""
    from .emails import outbound_emails_prune

    return outbound_emails_prune()


# Before the outbox, emails travelled as these two tasks' arguments. Messages queued by the previous release still
# name them: each is written to the outbox (and sent by it) instead of being dropped as an unknown task. Nothing
# sends them any more; remove them one release after the outbox shipped.
@shared_task(acks_late=True, ignore_result=True)
def send_team_email_task(team_id: int, template: str, context: dict, to: list[str] | None = None) -> None:
    from accounts.models import Team

    from .emails import send_team_email

    team = Team.objects.filter(pk=team_id).first()
    if team is not None:
        send_team_email(team=team, template=template, context=context, to=to)


@shared_task(acks_late=True, ignore_result=True)
def send_staff_email_task(subject: str, body: str) -> None:
    from .emails import send_staff_email

    send_staff_email(subject=subject, body=body)
