"""
The webhook pipeline's writes: record an event durably (once), apply it once, retry/park, replay, sweep.

Flow: view verifies the signature → `webhook_event_record` (unique event id) → 2xx → on commit the doorbell of the
row's shard sends a drain task (`webhook_events_drain`, which applies what it can in batches, see
`webhook_events_apply_batch`), or one task per event in-process → `webhook_event_apply`:
row lock, the mirror (from the event's own payload when it is the newest state seen for the object, per-object
watermark; re-retrieved only when order is ambiguous or the payload is partial; an older event writes nothing), then
the project's handlers from the registry, all in one transaction with no Stripe call inside (reads are deferred and
fetched between rounds). A failure rolls every write back, records the traceback and schedules a retry with backoff;
after BILLING_WEBHOOK_MAX_ATTEMPTS the event is parked for replay (`replay_events`, admin).
"""
import json
import logging
import time
import traceback
from dataclasses import dataclass
from enum import StrEnum
from datetime import datetime, timedelta, timezone as dt_timezone

from django.conf import settings
from django.db import IntegrityError, connection, transaction
from django.db.models import F
from django.utils import timezone

from billing_site.backoff import backoff_seconds
from billing_site.errors import BillingError, NotFoundError

from ..models import MirrorWatermark, WebhookEvent
from ..stripe_gateway.deferred_reads import (StripeReadDeferred, StripeReads, atomic_with_stripe_reads,
                                             stripe_reads_deferred)
from ..stripe_gateway.sync import stripe_object_customer_id
from ..webhooks.registry import handlers_for

logger = logging.getLogger("billing.webhooks")

Status = WebhookEvent.Status


def _customer_of(obj: dict) -> str:
    """The customer an event is about: a customer object itself, else the object's customer."""
    if obj.get("object") == "customer":
        return obj.get("id") or ""
    return stripe_object_customer_id(obj)


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
    transaction.on_commit(lambda: webhook_events_wake(webhook_event_id=webhook_event_id))


# --- Draining stored events in batches ----------------------------------------------------------------------------
# One Celery message per stored event cost the endpoint a broker publish and the workers a task each (receive, ack,
# pool hand-off): a third of a storm's time. Instead stored events are split into BILLING_WEBHOOK_DRAIN_SHARDS shards
# (row id modulo), and a "doorbell" key per shard (cache `add`, i.e. Redis SET NX with a TTL) makes sure one drain
# task is on its way for a shard with new events: a storm sends a handful of messages, not ten thousand.
#
# No event is left behind: the drain deletes its doorbell before it looks for rows, and an endpoint rings after its
# row is committed. Either the endpoint's ring finds the key gone (and sends a new drain), or the key was still there,
# which means the drain that owns it has not looked yet and will see the row. A lost drain message (worker killed)
# leaves rows pending: its doorbell expires and the fast sweep (`webhook_events_enqueue_due`) picks them up after
# BILLING_WEBHOOK_PENDING_GRACE_SECONDS. Failed events are retried by that sweep at their `next_attempt_at`.


def _doorbell_key(shard: int) -> str:
    return f"billing:webhook-drain:{shard}"


def webhook_events_wake(*, webhook_event_id: int) -> bool:
    """
    After an event row is committed: make sure it will be applied. Sends a drain for the row's shard unless one is
    already on its way; with tasks in-process (`make run`), or drains turned off, applies/sends this event alone.
    Never raises (the row is the record; the sweep re-sends).
    """
    from django.core.cache import cache

    from billing_site.celery import app, task_send

    from ..tasks import webhook_events_drain_task

    shards = settings.BILLING_WEBHOOK_DRAIN_SHARDS
    in_process = app.conf.task_always_eager or app.conf.get("CELERY_TASK_ALWAYS_EAGER")  # as task_send reads it
    if shards <= 0 or in_process:
        return webhook_event_enqueue_now(webhook_event_id=webhook_event_id)
    shard = webhook_event_id % shards
    if not cache.add(_doorbell_key(shard), webhook_event_id, timeout=settings.BILLING_WEBHOOK_DRAIN_DOORBELL_SECONDS):
        return True  # a drain of this shard has not looked yet: it will find the row
    sent = task_send(webhook_events_drain_task, (shard,), what=f"webhook drain of shard {shard}",
                     expires=settings.BILLING_WEBHOOK_DRAIN_DOORBELL_SECONDS * 4)
    if not sent:
        cache.delete(_doorbell_key(shard))  # the next event rings again (and the sweep covers this one)
    return sent


def webhook_events_drain(*, shard: int) -> int:
    """
    Apply the pending events of one shard, oldest first, in chunks of BILLING_WEBHOOK_APPLY_BATCH: what needs only
    its payload together (`webhook_events_apply_batch`), the rest one by one (`webhook_event_apply`), until none is
    left or BILLING_WEBHOOK_DRAIN_MAX_SECONDS have passed (then a fresh drain is sent to go on). Returns how many
    events were applied. Rows another worker holds are skipped (that worker is applying them).
    """
    from django.core.cache import cache
    from django.db.models.functions import Mod

    shards = max(settings.BILLING_WEBHOOK_DRAIN_SHARDS, 1)
    cache.delete(_doorbell_key(shard))  # first: any event committed from here on rings again
    deadline = time.monotonic() + settings.BILLING_WEBHOOK_DRAIN_MAX_SECONDS
    applied, after = 0, 0
    with _session_commits_without_fsync_wait():
        while True:
            batch = list(
                WebhookEvent.objects.filter(status=Status.PENDING, pk__gt=after).alias(shard=Mod("id", shards))
                .filter(shard=shard).order_by("pk").values_list("pk", flat=True)[:settings.BILLING_WEBHOOK_DRAIN_BATCH]
            )
            if not batch:
                return applied
            size = max(settings.BILLING_WEBHOOK_APPLY_BATCH, 1)
            for start in range(0, len(batch), size):
                chunk = batch[start:start + size]
                together, alone = webhook_events_apply_batch(webhook_event_ids=chunk) if size > 1 else (0, chunk)
                applied += together
                for pk in alone:
                    if webhook_event_apply(webhook_event_id=pk, skip_locked=True):
                        applied += 1
                    if time.monotonic() > deadline:
                        break
                if time.monotonic() > deadline:
                    cache.delete(_doorbell_key(shard))
                    webhook_events_wake(webhook_event_id=chunk[0])  # a fresh task goes on with the rest
                    return applied
            after = batch[-1]


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
    return backoff_seconds(attempts=attempts, base=settings.BILLING_WEBHOOK_RETRY_BASE_SECONDS)


# --- Applying an event to the mirror ------------------------------------------------------------------------------
# Stripe's event carries the object as of the event, and `created` orders events. For the object types below the
# mirror is written from that payload (dj-stripe's `sync_from_stripe_data`, no API call) when the event is the newest
# state seen for the object, per a high-water mark (`MirrorWatermark`: the event's `created` + event id, or "read from
# Stripe at T" after a retrieve). dj-stripe's own handlers would re-retrieve the object for every event: one Stripe
# API call per event, exactly when a renewal day produces thousands of them. Other types keep dj-stripe's handlers.
_PAYLOAD_OBJECTS = {"customer", "subscription", "invoice", "payment_intent", "charge", "product", "price",
                    "setup_intent", "payment_method", "refund", "dispute"}
# Not here, because their payload is known to be partial: Checkout Sessions (`line_items` only come when expanded).
# Their events keep dj-stripe's handler, whose re-retrieve expands what the mirror needs.
# `.deleted` of these removes the mirrored row (dj-stripe's CRUD delete; a customer is purged). A subscription's
# `.deleted` is a cancellation: its payload (status canceled) is applied like an update.
_DELETABLE_OBJECTS = {"customer", "invoice", "product", "price"}


class ApplyMode(StrEnum):
    PAYLOAD = "payload"  # sync the event's own snapshot (no Stripe call)
    REFETCH = "refetch"  # re-retrieve the object and sync that (one Stripe call)
    DELETE = "delete"  # the newest event deletes the object: remove the mirrored row
    SKIP = "skip"  # the mirror already holds a newer state than this event: write nothing
    DJSTRIPE = "djstripe"  # not a payload-applied type: dj-stripe's handlers as shipped


@dataclass(frozen=True)
class ApplyDecision:
    mode: ApplyMode
    reason: str


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


def _payload_incomplete(obj: dict) -> str:
    """Why the payload lacks something the mirror needs (expanded fields dj-stripe reads), or ''."""
    kind = obj.get("object")
    if kind == "price" and obj.get("tiers_mode") and "tiers" not in obj:
        return "price tiers are only present when expanded"
    if kind == "invoice" and any(isinstance(d, str) for d in obj.get("discounts") or ()):
        return "invoice discounts are ids, dj-stripe needs the expanded objects"
    return ""


def _position(*, created: int, event_id: str, mark) -> str:
    """Where an event stands against the object's mark: 'newer', 'older', 'same' (this very event) or 'tie'."""
    if mark is None or mark.state_at < 0:
        return "newer"
    if not mark.stripe_event_id:
        # The mirror was read from Stripe at `state_at` (our clock): within the margin either may be first.
        margin = max(settings.BILLING_WEBHOOK_WATERMARK_MARGIN_SECONDS, 0)
        if created > mark.state_at + margin:
            return "newer"
        return "older" if created < mark.state_at - margin else "tie"
    if event_id == mark.stripe_event_id:
        return "same"
    if created != mark.state_at:
        return "newer" if created > mark.state_at else "older"
    # Same second: Stripe's `created` has one-second resolution and event ids are not ordered by time, so the id
    # tie-break orders the marks but cannot say which state is newer.
    return "tie"


# Stripe's invoice lifecycle only moves forward: draft → open → paid, void or uncollectible, and uncollectible → paid
# or void. Two states of one invoice in the same second are ordered by it when their statuses differ in rank.
_INVOICE_STATUS_RANK = {"draft": 0, "open": 1, "uncollectible": 2, "paid": 3, "void": 3}


def _tie_broken(obj: dict, held: dict | None) -> str:
    """
    What two states of one object within the same second say themselves: 'same' (identical: either order gives the
    same mirror), 'newer' or 'older' (a later or earlier status of the invoice lifecycle than the held one), or ''.
    """
    if held is None:
        return ""
    if obj == held:
        return "same"
    if obj.get("object") == "invoice":
        ours, theirs = _INVOICE_STATUS_RANK.get(obj.get("status")), _INVOICE_STATUS_RANK.get(held.get("status"))
        if ours is not None and theirs is not None and ours != theirs:
            return "newer" if ours > theirs else "older"
    return ""


def webhook_apply_decision(*, payload: dict, mark, held=None) -> ApplyDecision:
    """
    How to apply `payload` to the mirror given the object's watermark `mark` (None: never mirrored through an event
    or a retrieve). `held`, called only on a same-second tie, returns the object as the mirror holds it (or None):
    the two states may order themselves (`_tie_broken`) and spare a re-retrieve. The caller holds the watermark
    lock and acts on the answer.
    """
    obj = (payload.get("data") or {}).get("object") or {}
    kind, event_type, created = obj.get("object") or "", str(payload.get("type", "")), payload.get("created")
    if kind not in _PAYLOAD_OBJECTS or not obj.get("id") or not created:
        return ApplyDecision(ApplyMode.DJSTRIPE, f"{kind or 'no'} object is not applied from payloads")
    if settings.BILLING_WEBHOOK_WATERMARK_MARGIN_SECONDS < 0:
        return ApplyDecision(ApplyMode.DJSTRIPE, "watermark turned off")
    if not _only_djstripe_receivers(event_type):
        return ApplyDecision(ApplyMode.DJSTRIPE, "another receiver listens to dj-stripe's signal for this type")
    deletes = event_type.endswith(".deleted") and kind in _DELETABLE_OBJECTS
    position = _position(created=int(created), event_id=payload["id"], mark=mark)
    if position == "older":
        return ApplyDecision(ApplyMode.SKIP, "the mirror holds a newer state than this event")
    if deletes:
        # A deletion is final on Stripe's side: whether it ties or is newer, the object is gone.
        return ApplyDecision(ApplyMode.DELETE, f"{event_type} is the newest event for the object")
    if mark is not None and mark.deleted and position == "tie":
        return ApplyDecision(ApplyMode.SKIP, "deleted in the same second; a deletion is final")
    if position == "tie":
        broken = _tie_broken(obj, held() if held is not None else None)
        if broken == "same":
            return ApplyDecision(ApplyMode.SKIP, "same second, and the mirror holds this very state")
        if broken == "older":
            return ApplyDecision(ApplyMode.SKIP, "same second, an earlier status than the mirror's")
        if broken != "newer":
            return ApplyDecision(ApplyMode.REFETCH, "event order within one second is unknown: read Stripe's state")
    missing = _payload_incomplete(obj)
    if missing:
        return ApplyDecision(ApplyMode.REFETCH, missing)
    return ApplyDecision(ApplyMode.PAYLOAD, "newest event for the object")


def _djstripe_events_insert(payloads: list[dict]) -> None:
    """
    dj-stripe's Event rows, built by dj-stripe (`_stripe_object_to_record`, its request id hook) and inserted with
    `ON CONFLICT DO NOTHING`: one statement instead of a get-then-insert each, and a replay's row is left as it is.
    """
    from djstripe.models import Event

    events = []
    for payload in payloads:
        event = Event(**Event._stripe_object_to_record(payload))
        event._attach_objects_hook(Event, payload)
        events.append(event)
    Event.objects.bulk_create(events, ignore_conflicts=True)


def _djstripe_delete(*, kind: str, object_id: str) -> None:
    from .mirror import _model_for

    rows = _model_for(kind).objects.filter(id=object_id)
    if kind == "customer":
        # dj-stripe's `Customer.purge` without its Stripe calls (it deletes the customer on Stripe first, and
        # detaches sources): this is the customer's own `.deleted` event, so Stripe has done that already, and no
        # Stripe write may run inside the event's transaction. The row stays, soft-deleted, as purge leaves it.
        for customer in rows:
            customer.subscriber = None
            customer.stripe_data["default_source"] = None
            customer.date_purged = timezone.now()
            customer.save()
    else:
        rows.delete()


def _mirror(payload: dict) -> ApplyDecision:
    """
    Apply one event to dj-stripe's mirror (see `webhook_apply_decision`); dj-stripe's Event table stays complete.
    Returns what was done, for the log and the tests.
    """
    from djstripe.models import Event

    from ..stripe_gateway import configure_module_sdk
    from .mirror import mirror_apply_event_payload, mirror_object_data, mirror_watermark_lock, mirror_watermark_set

    configure_module_sdk()
    obj = (payload.get("data") or {}).get("object") or {}
    decision = webhook_apply_decision(payload=payload, mark=None)
    if decision.mode == ApplyMode.DJSTRIPE:
        existing = Event.objects.filter(id=payload["id"]).first()
        if existing is not None:
            # A replay: dj-stripe's Event.process would return early; run its handlers again to re-sync.
            existing.invoke_webhook_handlers()
        else:
            Event.process(payload)
        return decision
    # Serialise every event of this object (row lock held until commit), then decide against its mark.
    customer_id = _customer_of(obj) if obj["object"] != "customer" else ""
    locked = mirror_watermark_lock(object_id=obj["id"], object_type=obj["object"], customer_id=customer_id or None)
    decision = webhook_apply_decision(payload=payload, mark=locked.state,
                                      held=lambda: mirror_object_data(kind=obj["object"], object_id=obj["id"]))
    _djstripe_events_insert([payload])
    created = int(payload["created"])
    if decision.mode == ApplyMode.PAYLOAD:
        mirror_apply_event_payload(kind=obj["object"], data=obj, customer_mirrored=bool(locked.customer_mirrored))
        mirror_watermark_set(object_id=obj["id"], object_type=obj["object"], state_at=created,
                             stripe_event_id=payload["id"])
    elif decision.mode == ApplyMode.DELETE:
        _djstripe_delete(kind=obj["object"], object_id=obj["id"])
        mirror_watermark_set(object_id=obj["id"], object_type=obj["object"], state_at=created,
                             stripe_event_id=payload["id"], deleted=True)
    elif decision.mode == ApplyMode.REFETCH:
        _mirror_refetch(payload)
    logger.debug("stripe event %s (%s) on %s: %s (%s)", payload["id"], payload.get("type"), obj["id"],
                 decision.mode, decision.reason)
    return decision


def _mirror_refetch(payload: dict) -> None:
    """Mirror the event's object as Stripe has it now (which sets its mark: read from Stripe now)."""
    from .mirror import mirror_refresh

    obj = payload["data"]["object"]
    try:
        mirror_refresh(kind=obj["object"], object_id=obj["id"])
    except BillingError as error:
        if error.code != "stripe_resource_missing":
            raise
        # Gone on Stripe's side since (dj-stripe skips these too); its `.deleted` event, if any, removes the row.
        logger.warning("stripe event %s (%s): %s no longer exists on Stripe, skipped", payload["id"],
                       payload.get("type"), obj["id"])


# The team's plan is read from its mirrored subscriptions (and the customer link): only events that can write those
# clear the cached plan. Saves a team lookup on every invoice, charge and payment event of a renewal storm. A
# re-retrieve or dj-stripe's own handler may sync related objects too, so those always clear.
_PLAN_OBJECTS = {"subscription", "customer"}


def _clear_plan_cache(payload: dict, decision: ApplyDecision | None = None) -> None:
    from ..selectors import customer_team, team_plan_cache_clear

    obj = (payload.get("data") or {}).get("object") or {}
    if (decision is not None and decision.mode in (ApplyMode.PAYLOAD, ApplyMode.SKIP)
            and obj.get("object") not in _PLAN_OBJECTS):
        return

    team = customer_team(stripe_customer_id=_customer_of((payload.get("data") or {}).get("object") or {}))
    if team is not None:
        transaction.on_commit(lambda: team_plan_cache_clear(team_id=team.pk))


class _session_commits_without_fsync_wait:  # noqa: N801 - a context manager
    """
    `synchronous_commit = off` for the whole connection while a drain applies its events (one statement instead of
    one per event; see `_commit_without_fsync_wait` for why it is safe), restored afterwards: the worker's next task
    on this connection (a refund, say) commits durably again.
    """

    def __enter__(self):
        self.active = connection.vendor == "postgresql" and not connection.in_atomic_block
        if self.active:
            with connection.cursor() as cursor:
                cursor.execute("SET synchronous_commit TO OFF")
            connection.billing_async_commit = True
        return self

    def __exit__(self, *exc_info) -> None:
        if self.active:
            connection.billing_async_commit = False
            if connection.connection is not None and not connection.needs_rollback:
                with connection.cursor() as cursor:
                    cursor.execute("RESET synchronous_commit")


def _commit_without_fsync_wait() -> None:
    """
    Let this transaction's commit return before its WAL is flushed (PostgreSQL `synchronous_commit = off`, for this
    transaction only). Safe here and only here: applying is idempotent and recoverable. If the database crashed in
    the fraction of a second before the flush, the event row is back to pending (or failed) with the mirror's writes
    undone together (same transaction), and `billing-webhook-retry-due` re-applies it. Never used for the endpoint's
    insert: that one must be durable before we answer Stripe 2xx.
    """
    if connection.vendor == "postgresql" and not getattr(connection, "billing_async_commit", False):
        with connection.cursor() as cursor:
            cursor.execute("SET LOCAL synchronous_commit TO OFF")


# Rounds of "run the transaction, fetch the Stripe reads it found missing, run again". Each round finds the reads
# that depend on the previous ones: dj-stripe's sync of a Checkout Session walks session → customer → payment
# intent → payment method → charge → ..., one level per round. Events of a storm need none (one round).
_READ_ROUNDS = 12


class _ReadsMissing(Exception):
    """Rolls a round's whole transaction back so its missing Stripe reads are fetched with no transaction open."""


def webhook_event_apply(*, webhook_event_id: int, force: bool = False, skip_locked: bool = False) -> str:
    """
    Apply one stored event exactly once; returns its new status. Safe to call twice, concurrently or not: the row
    lock serialises workers and a processed event is never applied again (unless `force`, the staff replay).
    `skip_locked`: a row another worker holds is left to it ("" returned) instead of waited for (drains).

    No Stripe call is made while the transaction is open: a round that needs Stripe's current state (a re-retrieve,
    a handler's read, dj-stripe's own handlers) is rolled back, the reads are fetched, and the round runs again with
    them (`billing.stripe_gateway.deferred_reads`).
    """
    reads = StripeReads()
    for round_number in range(1, _READ_ROUNDS + 1):
        try:
            return _apply_round(webhook_event_id=webhook_event_id, force=force, reads=reads,
                                last_round=round_number == _READ_ROUNDS, skip_locked=skip_locked)
        except _ReadsMissing:
            reads.fetch_missing()  # no transaction is open here
            logger.debug("stripe event row %s: round %s fetched %s reads", webhook_event_id, round_number,
                         reads.fetched)
    raise AssertionError("unreachable: the last round records a failure instead of asking for reads")


class _ApplyFailed(Exception):
    """Rolls the round's whole transaction back; the failure is then recorded in a transaction of its own."""

    def __init__(self, error: Exception, trace: str):
        super().__init__(repr(error))
        self.error, self.trace = error, trace


def _apply_round(*, webhook_event_id: int, force: bool, reads: StripeReads, last_round: bool,
                 skip_locked: bool) -> str:
    # A failure rolls back the whole transaction (mirror, handlers, the row's own changes) and is recorded in a
    # second, short one: no savepoint on the success path, which is nearly every event (two round trips fewer).
    try:
        with transaction.atomic():
            _commit_without_fsync_wait()
            event = WebhookEvent.objects.select_for_update(skip_locked=skip_locked).filter(
                pk=webhook_event_id).first()
            if event is None:
                return ""
            if event.status in (Status.PROCESSED, Status.PARKED) and not force:
                return event.status
            try:
                with stripe_reads_deferred(reads):
                    _handlers_run(event, _mirror(event.payload))
                    if reads.missing:  # a read was deferred and its error swallowed on the way (dj-stripe does)
                        raise StripeReadDeferred("reads missing")
            except Exception as error:  # noqa: BLE001 - any failure is recorded and retried, never lost
                if reads.missing and not last_round:
                    raise _ReadsMissing() from error
                raise _ApplyFailed(error, traceback.format_exc()) from error
            event.attempts += 1
            event.status = Status.PROCESSED
            event.processed_at = timezone.now()
            event.next_attempt_at = None
            event.last_error = ""
            event.save(update_fields=["status", "attempts", "last_error", "processed_at", "next_attempt_at"])
            return event.status
    except _ApplyFailed as failed:
        return _failure_record(webhook_event_id=webhook_event_id, failed=failed, force=force)


def _failure_record(*, webhook_event_id: int, failed: _ApplyFailed, force: bool) -> str:
    """One failed attempt: `failed` with its retry time, or `parked` after BILLING_WEBHOOK_MAX_ATTEMPTS."""
    with transaction.atomic():
        event = WebhookEvent.objects.select_for_update().filter(pk=webhook_event_id).first()
        if event is None:
            return ""
        if event.status in (Status.PROCESSED, Status.PARKED) and not force:
            return event.status  # applied by another worker between our rollback and this lock
        event.attempts += 1
        event.last_error = failed.trace
        error = failed.error
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
        event.save(update_fields=["status", "attempts", "last_error", "processed_at", "next_attempt_at"])
        return event.status


# --- Applying a drain's batch -------------------------------------------------------------------------------------
# A drain applies a chunk of events together, in one transaction and with bulk writes (event rows, watermarks,
# dj-stripe's Event rows and mirrored objects, the teams the handlers look up), with the same decisions as one by one
# (`webhook_apply_decision`, each object's mark moving as the batch goes), then runs each event's handlers in event
# order. Events of one object that tie within a second (a renewal's invoice.finalized, invoice.paid, ... all carry
# the same `created`) cost one re-retrieve of the object per batch, not one per event. Stripe reads the batch needs
# (re-retrieves, handlers' reads) are all found in one round, fetched with no transaction open, and the batch runs
# again with them. What stays one by one (`webhook_event_apply`, after the batch, so each object's events keep their
# order): types dj-stripe handles itself, customer events, and every event of an object whose customer is not
# mirrored yet. The batch is all or nothing: any failure rolls it back and each of its events gets its own attempt,
# where a failure is recorded against that event alone.
#
# One difference from one by one, by design: the mirror holds each object's newest state of the batch before the
# handlers run, so a handler of an older event of the same object reads the newer state (its payload is its own).

# Customer events stay out: their handlers link and unlink teams, which the batch's one read of teams assumes fixed,
# and dj-stripe re-attaches a customer's subscriber while it syncs.
_BATCH_KINDS = _PAYLOAD_OBJECTS - {"customer"}


def webhook_events_apply_batch(*, webhook_event_ids: list[int]) -> tuple[int, list[int]]:
    """
    Apply the pending events among `webhook_event_ids` in one transaction, but those that must go one by one.
    Returns (how many were applied, the ids left to apply one by one, in order). Rows another worker holds are left
    to it.
    """
    try:
        # Rounds as for one event: the Stripe reads a round found missing are fetched with no transaction open.
        return atomic_with_stripe_reads(lambda: _apply_batch(webhook_event_ids=webhook_event_ids),
                                        rounds=_READ_ROUNDS)
    except Exception as error:  # noqa: BLE001 - nothing was written
        # Each event gets its own attempt instead, where a failure is recorded against that event alone.
        logger.info("webhook batch of %s events rolled back (%r); applying them one by one",
                    len(webhook_event_ids), error)
        return 0, list(webhook_event_ids)


def _apply_batch(*, webhook_event_ids: list[int]) -> tuple[int, list[int]]:
    from ..selectors import customer_teams_read_once
    from .mirror import (mirror_apply_event_payloads, mirror_object_data, mirror_watermarks_lock,
                         mirror_watermarks_set)

    _commit_without_fsync_wait()
    events = list(WebhookEvent.objects.select_for_update(skip_locked=True)
                  .filter(pk__in=webhook_event_ids, status=Status.PENDING).order_by("pk")
                  .only("pk", "stripe_event_id", "type", "payload"))
    candidates, alone = [], []
    for event in events:
        obj = (event.payload.get("data") or {}).get("object") or {}
        batchable = (obj.get("object") in _BATCH_KINDS
                     and webhook_apply_decision(payload=event.payload, mark=None).mode != ApplyMode.DJSTRIPE)
        (candidates if batchable else alone).append(event)
    if not candidates:
        return 0, [event.pk for event in events]

    def object_of(event) -> dict:
        return event.payload["data"]["object"]

    locked = mirror_watermarks_lock(objects={
        object_of(event)["id"]: (object_of(event)["object"], _customer_of(object_of(event)))
        for event in candidates})
    marks, excluded = {}, set()
    for object_id, lock in locked.items():
        if lock.customer_mirrored is False:
            excluded.add(object_id)  # the sync would read the customer from Stripe first
        marks[object_id] = lock.state
    planned: list[tuple[WebhookEvent, ApplyDecision]] = []
    final: dict[str, tuple[WebhookEvent, ApplyDecision]] = {}  # object id → the event that decides what is written

    def held_state(obj: dict):
        """The object as the mirror will hold it when this event comes: the batch's latest payload, else the row."""
        decided = final.get(obj["id"])
        if decided is None:
            return mirror_object_data(kind=obj["object"], object_id=obj["id"])
        return object_of(decided[0]) if decided[1].mode == ApplyMode.PAYLOAD else None

    for event in candidates:
        obj = object_of(event)
        if obj["id"] in excluded:
            alone.append(event)
            continue
        decision = webhook_apply_decision(payload=event.payload, mark=marks[obj["id"]], held=lambda: held_state(obj))
        planned.append((event, decision))
        if decision.mode == ApplyMode.SKIP:
            continue
        final[obj["id"]] = (event, decision)
        # What the mirror holds after this event: its payload, its deletion, or (a tie, a partial payload) Stripe's
        # state read now, which later events of the same second also tie with (and are answered by the same read).
        marks[obj["id"]] = MirrorWatermark(
            stripe_object_id=obj["id"], object_type=obj["object"],
            state_at=int(time.time()) if decision.mode == ApplyMode.REFETCH else int(event.payload["created"]),
            stripe_event_id="" if decision.mode == ApplyMode.REFETCH else event.payload["id"],
            deleted=decision.mode == ApplyMode.DELETE)
    if not planned:
        return 0, sorted(event.pk for event in alone)
    _djstripe_events_insert([event.payload for event, _ in planned])
    # Every Stripe read the batch needs is found in one round (each object's re-retrieve, each handler's read), so
    # the next round has them all: a round with a read missing is rolled back anyway (`atomic_with_stripe_reads`).
    for event, decision in final.values():
        if decision.mode == ApplyMode.REFETCH:
            _until_a_read_is_missing(_mirror_refetch, event.payload)
    mirror_apply_event_payloads(objects=[
        object_of(event) for event, decision in final.values() if decision.mode == ApplyMode.PAYLOAD])
    for event, decision in final.values():
        if decision.mode == ApplyMode.DELETE:
            _djstripe_delete(kind=object_of(event)["object"], object_id=object_of(event)["id"])
    mirror_watermarks_set(marks=[marks[object_id] for object_id, (_, decision) in final.items()
                                 if decision.mode != ApplyMode.REFETCH])  # a re-retrieve set its own
    with customer_teams_read_once(stripe_customer_ids={_customer_of(object_of(event)) for event, _ in planned}):
        for event, decision in planned:
            _until_a_read_is_missing(_handlers_run, event, decision)
    WebhookEvent.objects.filter(pk__in=[event.pk for event, _ in planned]).update(
        status=Status.PROCESSED, attempts=F("attempts") + 1, processed_at=timezone.now(),
        next_attempt_at=None, last_error="")
    return len(planned), sorted(event.pk for event in alone)


def _until_a_read_is_missing(step, *args) -> None:
    """Run one step of a batch; a Stripe read it lacks is recorded (the batch goes on to find the others)."""
    try:
        step(*args)
    except StripeReadDeferred:
        pass


def _handlers_run(event: WebhookEvent, decision: ApplyDecision) -> None:
    """The project's handlers for the event's type, in the registry's order; then the team's cached plan is cleared."""
    handlers = handlers_for(event.type)
    for handler in handlers:
        handler(event=event.payload)
    _clear_plan_cache(event.payload, decision)
    if not handlers:
        logger.info("stripe event %s of type %s has no project handler (mirror only)", event.stripe_event_id,
                    event.type)


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
