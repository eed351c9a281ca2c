"""
The webhook pipeline's writes: record an event durably (once), apply it once, retry/park, replay, sweep.

Flow: view verifies the signature → `webhook_event_record` (unique event id) → 2xx → on commit the Celery task
`webhook_event_process_task` → `webhook_event_apply`: row lock, dj-stripe mirror (which re-retrieves each object
from Stripe, so an old event never overwrites newer state), then the project's handlers from the registry, all in
one savepoint: a failure rolls every partial write back, records the traceback and schedules a retry with backoff;
after BILLING_WEBHOOK_MAX_ATTEMPTS the event is parked for replay (`replay_events`, admin).
"""
import json
import logging
import traceback
from dataclasses import dataclass
from datetime import datetime, timedelta, timezone as dt_timezone

from django.conf import settings
from django.db import IntegrityError, connection, transaction
from django.utils import timezone

from billing_site.errors import NotFoundError

from ..models import WebhookEvent
from ..webhooks.registry import handlers_for

logger = logging.getLogger("billing.webhooks")

Status = WebhookEvent.Status


def _customer_of(obj: dict) -> str:
    if obj.get("object") == "customer":
        return obj.get("id") or ""
    customer = obj.get("customer")
    if isinstance(customer, dict):
        customer = customer.get("id")
    return customer or ""


def webhook_event_enqueue_now(*, webhook_event_id: int, expires_seconds: float | None = None,
                              after_attempts: int | None = None) -> bool:
    """
    Send the apply task for a stored event; False (logged) when the broker is unreachable. Never raises: the row is
    the record of truth, and `webhook_events_enqueue_due` re-sends what a lost or failed enqueue left pending.
    `expires_seconds` bounds how long a re-sent copy may wait in the queue (the sweep sends a fresh one anyway);
    `after_attempts` makes the copy a no-op once the event has moved past that attempt count (see the task).
    """
    from billing_site.celery import task_send

    from ..tasks import webhook_event_process_task

    return task_send(webhook_event_process_task, (webhook_event_id,),
                     {"after_attempts": after_attempts} if after_attempts is not None else None,
                     what=f"stripe event row {webhook_event_id}",
                     **({"expires": expires_seconds} if expires_seconds else {}))


def _enqueue(webhook_event_id: int) -> None:
    transaction.on_commit(lambda: webhook_event_enqueue_now(webhook_event_id=webhook_event_id))


@dataclass(frozen=True)
class RecordResult:
    webhook_event_id: int | None
    created: bool


# The hot path of the endpoint: one statement, no model instance, no exception for a duplicate (an IntegrityError
# would also cost a savepoint and a rollback). Column list and defaults mirror `WebhookEvent`; the model stays the
# schema's source of truth (a test checks the raw insert against a model-made row).
_INSERT_SQL = (
    "INSERT INTO billing_webhookevent (stripe_event_id, type, status, source, payload, livemode, api_version, "
    "stripe_created, stripe_object_id, stripe_customer_id, webhook_endpoint_id, attempts, last_error, received_at) "
    "VALUES (%s, %s, %s, %s, %s::jsonb, %s, %s, %s, %s, %s, %s, 0, '', %s) "
    "ON CONFLICT (stripe_event_id) DO NOTHING RETURNING id"
)


def _record_fields(payload: dict, source: str, webhook_endpoint_id: str) -> dict:
    obj = (payload.get("data") or {}).get("object") or {}
    created_ts = payload.get("created")
    return {
        "stripe_event_id": payload["id"],
        "type": payload.get("type", ""),
        "source": source,
        "livemode": bool(payload.get("livemode")),
        "api_version": payload.get("api_version") or "",
        "stripe_created": datetime.fromtimestamp(created_ts, tz=dt_timezone.utc) if created_ts else None,
        "stripe_object_id": str(obj.get("id") or "")[:255],
        "stripe_customer_id": _customer_of(obj)[:255],
        "webhook_endpoint_id": webhook_endpoint_id,
    }


def webhook_event_record(
    *, payload: dict, source: str = WebhookEvent.Source.WEBHOOK, webhook_endpoint_id: str = "",
    payload_json: str | None = None,
) -> RecordResult:
    """
    Store an event once (unique Stripe event id) and enqueue its processing after commit. A duplicate delivery is
    a no-op that still answers 2xx, so Stripe stops retrying it. `payload_json` (the body as received) spares a
    re-serialisation on PostgreSQL.
    """
    fields = _record_fields(payload, source, webhook_endpoint_id)
    if connection.vendor == "postgresql":
        # One statement, so no explicit transaction is needed for atomicity: in autocommit the INSERT commits on its
        # own (durably, before the 2xx) and `on_commit` runs the enqueue right after; inside a caller's transaction
        # (the sweep, tests) the enqueue waits for that commit as before. Saves the BEGIN/COMMIT round trips.
        with connection.cursor() as cursor:
            cursor.execute(_INSERT_SQL, [
                fields["stripe_event_id"], fields["type"], Status.PENDING, fields["source"],
                payload_json if payload_json is not None else json.dumps(payload), fields["livemode"],
                fields["api_version"], fields["stripe_created"], fields["stripe_object_id"],
                fields["stripe_customer_id"], fields["webhook_endpoint_id"], timezone.now(),
            ])
            row = cursor.fetchone()
        if row is not None:
            _enqueue(row[0])
    else:
        try:
            with transaction.atomic():
                row = (WebhookEvent.objects.create(payload=payload, **fields).pk,)
                _enqueue(row[0])
        except IntegrityError:
            row = None
    if row is None:
        _redeliver_if_pending(stripe_event_id=payload["id"])
        return RecordResult(webhook_event_id=None, created=False)
    return RecordResult(webhook_event_id=row[0], created=True)


def _redeliver_if_pending(*, stripe_event_id: str) -> None:
    """
    Stripe delivers an event again while ours is still pending (its first enqueue may have been lost with the
    broker): send the task again instead of only answering "duplicate". Applying twice is harmless (row lock, a
    processed event is never applied again); a failed event waits for its retry time, as the sweep does.
    """
    pending = (WebhookEvent.objects.filter(stripe_event_id=stripe_event_id, status=Status.PENDING)
               .values_list("pk", "attempts").first())
    if pending is None:
        logger.info("duplicate stripe event %s ignored", stripe_event_id)
        return
    pk, attempts = pending
    logger.info("duplicate delivery of pending stripe event %s: enqueued again", stripe_event_id,
                extra={"webhook_event_id": pk})
    transaction.on_commit(lambda: webhook_event_enqueue_now(
        webhook_event_id=pk, after_attempts=attempts, expires_seconds=settings.BILLING_WEBHOOK_SWEEP_SECONDS * 6))


def retry_delay_seconds(attempts: int) -> float:
    """Exponential backoff: base, 2×base, 4×base ... capped at one hour."""
    return min(settings.BILLING_WEBHOOK_RETRY_BASE_SECONDS * (2 ** max(attempts - 1, 0)), 3600.0)


# Per-object watermark: dj-stripe's handler for these object types only re-retrieves the object and syncs it. When
# the mirrored row was written at least BILLING_WEBHOOK_WATERMARK_MARGIN_SECONDS after the event was created, it
# already holds a state read from Stripe after that event (every mirror write comes from a fresh retrieve), so a
# re-retrieve would bring nothing the event could add: the round trip and the sync are skipped. Deletions and other
# object types keep dj-stripe's handlers (purges, detaches). The margin covers the retrieve-to-save gap and clock
# skew between Stripe and us; when in doubt the event is applied normally.
_WATERMARKED_OBJECTS = {
    "invoice": "Invoice",
    "subscription": "Subscription",
    "payment_intent": "PaymentIntent",
    "charge": "Charge",
    "checkout.session": "Session",
}


def _only_djstripe_receivers(event_type: str) -> bool:
    """True when dj-stripe's own handlers are the only receivers of its webhook signal for this event type."""
    import weakref

    from djstripe.signals import WEBHOOK_SIGNALS

    signal = WEBHOOK_SIGNALS.get(event_type)
    if signal is None:
        return True
    for entry in signal.receivers:
        receiver = entry[1]() if isinstance(entry[1], weakref.ReferenceType) else entry[1]
        if getattr(receiver, "__module__", None) != "djstripe.event_handlers":
            return False
    return True


def _mirror_is_newer(payload: dict) -> bool:
    from djstripe import models as dj

    obj = (payload.get("data") or {}).get("object") or {}
    model_name = _WATERMARKED_OBJECTS.get(obj.get("object") or "")
    created = payload.get("created")
    if model_name is None or not obj.get("id") or not created or str(payload.get("type", "")).endswith(".deleted"):
        return False
    margin = settings.BILLING_WEBHOOK_WATERMARK_MARGIN_SECONDS
    if margin < 0:
        return False  # watermark turned off
    if not _only_djstripe_receivers(payload["type"]):
        return False  # someone else listens to dj-stripe's signal for this type: it must still be sent
    threshold = datetime.fromtimestamp(created, tz=dt_timezone.utc) + timedelta(seconds=margin)
    return getattr(dj, model_name).objects.filter(id=obj["id"], djstripe_updated__gte=threshold).exists()


def _mirror(payload: dict) -> None:
    """
    dj-stripe's sync for the mirror. Its handlers re-retrieve the object, so the mirror holds current state; the
    watermark above skips that re-retrieve when the mirror is already newer than the event.
    """
    from djstripe.models import Event

    from ..stripe_gateway import configure_module_sdk

    configure_module_sdk()
    existing = Event.objects.filter(id=payload["id"]).first()
    if existing is not None:
        # A replay: dj-stripe's Event.process would return early; run its handlers again to re-sync.
        existing.invoke_webhook_handlers()
    elif _mirror_is_newer(payload):
        # dj-stripe's event table stays complete; only the handler (re-retrieve + sync) is skipped.
        Event._create_from_stripe_object(payload)
        logger.info("stripe event %s (%s): mirror of %s already newer, re-retrieve skipped", payload["id"],
                    payload.get("type"), payload["data"]["object"]["id"])
    else:
        Event.process(payload)


def _clear_plan_cache(payload: dict) -> None:
    from ..selectors import customer_team, team_plan_cache_clear

    team = customer_team(stripe_customer_id=_customer_of((payload.get("data") or {}).get("object") or {}))
    if team is not None:
        transaction.on_commit(lambda: team_plan_cache_clear(team_id=team.pk))


def _commit_without_fsync_wait() -> None:
    """
    Let this transaction's commit return before its WAL is flushed (PostgreSQL `synchronous_commit = off`, for this
    transaction only). Safe here and only here: applying is idempotent and recoverable. If the database crashed in
    the fraction of a second before the flush, the event row is back to pending (or failed) with the mirror's writes
    undone together (same transaction), and `billing-webhook-retry-due` re-applies it. Never used for the endpoint's
    insert: that one must be durable before we answer Stripe 2xx.
    """
    if connection.vendor == "postgresql":
        with connection.cursor() as cursor:
            cursor.execute("SET LOCAL synchronous_commit TO OFF")


def webhook_event_apply(*, webhook_event_id: int, force: bool = False) -> str:
    """
    Apply one stored event exactly once; returns its new status. Safe to call twice, concurrently or not: the row
    lock serialises workers and a processed event is never applied again (unless `force`, the staff replay).
    """
    with transaction.atomic():
        _commit_without_fsync_wait()
        event = WebhookEvent.objects.select_for_update().filter(pk=webhook_event_id).first()
        if event is None:
            return ""
        if event.status == Status.PROCESSED and not force:
            return event.status
        if event.status == Status.PARKED and not force:
            return event.status
        event.status = Status.PROCESSING
        event.attempts += 1
        payload = event.payload
        handlers = handlers_for(event.type)
        try:
            # Savepoint: a handler failure undoes the mirror and every handler's writes together.
            with transaction.atomic():
                _mirror(payload)
                for handler in handlers:
                    handler(event=payload)
                _clear_plan_cache(payload)
        except Exception as error:  # noqa: BLE001 - any failure is recorded and retried, never lost
            event.last_error = traceback.format_exc()
            if event.attempts >= settings.BILLING_WEBHOOK_MAX_ATTEMPTS:
                event.status = Status.PARKED
                event.next_attempt_at = None
                logger.error("stripe event %s (%s) parked after %s attempts: %r", event.stripe_event_id,
                             event.type, event.attempts, error)
            else:
                event.status = Status.FAILED
                event.next_attempt_at = timezone.now() + timedelta(seconds=retry_delay_seconds(event.attempts))
                logger.warning("stripe event %s (%s) failed attempt %s: %r", event.stripe_event_id, event.type,
                               event.attempts, error)
        else:
            if not handlers:
                logger.info("stripe event %s of type %s has no project handler (mirror only)",
                            event.stripe_event_id, event.type)
            event.status = Status.PROCESSED
            event.processed_at = timezone.now()
            event.next_attempt_at = None
            event.last_error = ""
        event.save(update_fields=["status", "attempts", "last_error", "processed_at", "next_attempt_at"])
        return event.status


def webhook_event_replay(*, event_id: str | int) -> str:
    """Staff replay of one event (by Stripe event id or our row id): attempts restart, status is recomputed."""
    lookup = {"pk": event_id} if str(event_id).isdigit() else {"stripe_event_id": event_id}
    event = WebhookEvent.objects.filter(**lookup).first()
    if event is None:
        raise NotFoundError("webhook_event_not_found", f"No stored event {event_id}.")
    WebhookEvent.objects.filter(pk=event.pk).update(attempts=0)
    logger.info("replaying stripe event %s (%s), was %s", event.stripe_event_id, event.type, event.status)
    return webhook_event_apply(webhook_event_id=event.pk, force=True)


def webhook_events_enqueue_due(*, now: datetime | None = None) -> int:
    """
    The fast sweep (every BILLING_WEBHOOK_SWEEP_SECONDS): the event rows, not the broker's messages, say what is
    left to do. Re-enqueues failed events whose retry time has come and pending events older than
    BILLING_WEBHOOK_PENDING_GRACE_SECONDS (their message was lost with a killed worker or a broker outage, or is
    still waiting behind a backlog). Each copy expires after a few sweep intervals, so a long outage does not pile
    up duplicates; a duplicate that does run finds the event processed under its row lock and does nothing.
    """
    now = now or timezone.now()
    grace = timedelta(seconds=settings.BILLING_WEBHOOK_PENDING_GRACE_SECONDS)
    limit = settings.BILLING_WEBHOOK_SWEEP_BATCH
    due = list(
        WebhookEvent.objects.filter(status=Status.FAILED, next_attempt_at__lte=now)
        .order_by("next_attempt_at").values_list("pk", "attempts")[:limit]
    ) + list(
        WebhookEvent.objects.filter(status=Status.PENDING, received_at__lte=now - grace)
        .order_by("received_at").values_list("pk", "attempts")[:limit]
    )
    sent = 0
    for pk, attempts in due:
        if not webhook_event_enqueue_now(webhook_event_id=pk, after_attempts=attempts,
                                         expires_seconds=settings.BILLING_WEBHOOK_SWEEP_SECONDS * 6):
            break  # the broker is down: the next sweep tries again
        sent += 1
    if sent:
        logger.info("webhook sweep re-enqueued %s stored events", sent)
    return sent


def events_sweep(*, days: int | None = None) -> int:
    """
    Read Stripe's event list for the last `days` and record (then apply) every event of a subscribed type we never
    received.
    """
    from ..stripe_gateway.events import event_iter
    from .setup import WEBHOOK_EVENTS

    days = settings.BILLING_EVENTS_SWEEP_DAYS if days is None else days
    since = int((timezone.now() - timedelta(days=days)).timestamp())
    found = 0
    batch: list[dict] = []

    subscribed = set(WEBHOOK_EVENTS)

    def flush() -> int:
        # Only the types the endpoint subscribes to: anything else has no handler and would only cost a mirror
        # re-retrieve per event (issue 11: half of one run's events were of other types).
        batch[:] = [e for e in batch if e.get("type") in subscribed]
        known = set(
            WebhookEvent.objects.filter(stripe_event_id__in=[e["id"] for e in batch]).values_list(
                "stripe_event_id", flat=True
            )
        )
        added = 0
        # Oldest first, so missed events are applied in the order Stripe created them.
        for payload in sorted((e for e in batch if e["id"] not in known), key=lambda e: e.get("created") or 0):
            if webhook_event_record(payload=payload, source=WebhookEvent.Source.SWEEP).created:
                logger.warning("events sweep found undelivered stripe event %s (%s)", payload["id"], payload["type"])
                added += 1
        batch.clear()
        return added

    for payload in event_iter(created_gte=since):
        batch.append(payload)
        if len(batch) >= 100:
            found += flush()
    if batch:
        found += flush()
    return found
