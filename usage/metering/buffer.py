"""
The metered-call buffer: events admitted in Redis are moved to the database in batches by `buffer_flush`
(`usage_buffer_flush_task`, every 5 seconds by the beat schedule). See `buffer_flush` for why no event is lost or
counted twice when a worker dies mid-flush.
"""
from __future__ import annotations

import logging
import time
import uuid
from dataclasses import dataclass

from django.conf import settings
from django.db import transaction

from accounts.models import APIKey, Team, User

from .. import ratelimit
from ..services.event_store import EventRow, usage_events_store
from .backend import CallEvent

logger = logging.getLogger(__name__)


@dataclass
class FlushResult:
    batches: int = 0
    events_read: int = 0
    events_inserted: int = 0
    recovered_batches: int = 0


def _store_buffered(raw_items: list[bytes]) -> int:
    rows = []
    for raw in raw_items:
        try:
            rows.append(CallEvent.row_from_json(raw))
        except (ValueError, KeyError, TypeError):
            logger.error("unreadable buffered usage event dropped: %r", raw[:200])
    # Teams or keys deleted since the call: drop the team's events (cascade semantics), keep others without a key.
    team_ids = set(Team.objects.filter(pk__in={r.team_id for r in rows}).values_list("pk", flat=True))
    key_ids = set(APIKey.objects.filter(pk__in={r.api_key_id for r in rows if r.api_key_id})
                  .values_list("pk", flat=True))
    user_ids = set(User.objects.filter(pk__in={r.user_id for r in rows if r.user_id}).values_list("pk", flat=True))
    cleaned = [
        EventRow(team_id=r.team_id, metric=r.metric, quantity=r.quantity, occurred_at=r.occurred_at,
                 idempotency_key=r.idempotency_key, source=r.source,
                 api_key_id=r.api_key_id if r.api_key_id in key_ids else None,
                 user_id=r.user_id if r.user_id in user_ids else None, metadata=r.metadata)
        for r in rows
        if r.team_id in team_ids
    ]
    return len(usage_events_store(rows=cleaned))


def buffer_flush(*, max_batches: int | None = None, batch_size: int | None = None) -> FlushResult:
    """
    Move buffered call events from Redis into UsageEvent/UsageDailyTotal. Crash-safe:
    1. CLAIM_LUA atomically moves up to `batch_size` events from the buffer into a list of their own
       (`batch:<uuid>`) and records the batch in an in-flight sorted set with the claim time;
    2. the batch is inserted in one transaction (ON CONFLICT DO NOTHING on (team, idempotency_key));
    3. only after the commit is the batch list deleted and removed from the in-flight set.
    A worker dying between 1 and 3 leaves the batch in flight; a later flush re-claims batches older than
    USAGE_BUFFER_STALE_SECONDS and inserts them again, and the unique key makes that a no-op for events already
    stored. So an event is never lost once the Redis call admitted it (short of losing Redis itself) and never
    counted twice.
    """
    if not settings.USAGE_REDIS_URL:
        return FlushResult()
    client = ratelimit.redis_client()
    max_batches = max_batches or settings.USAGE_FLUSH_MAX_BATCHES
    batch_size = batch_size or settings.USAGE_FLUSH_BATCH_SIZE
    inflight = ratelimit.redis_key("inflight")
    result = FlushResult()

    def process(batch_id: str) -> None:
        batch_key = ratelimit.redis_key("batch", batch_id)
        items = client.lrange(batch_key, 0, -1)
        if items:
            with transaction.atomic():
                result.events_inserted += _store_buffered(items)
            result.events_read += len(items)
        pipe = client.pipeline(transaction=True)
        pipe.delete(batch_key)
        pipe.zrem(inflight, batch_id)
        pipe.execute()
        result.batches += 1

    stale_before = time.time() - settings.USAGE_BUFFER_STALE_SECONDS
    for raw_id in client.zrangebyscore(inflight, "-inf", stale_before):
        batch_id = raw_id.decode() if isinstance(raw_id, bytes) else raw_id
        # Re-stamp before processing so a concurrent flusher does not pick the same stale batch right away.
        client.zadd(inflight, {batch_id: time.time()})
        logger.warning("re-flushing usage batch %s left in flight by a stopped worker", batch_id)
        process(batch_id)
        result.recovered_batches += 1

    claim = ratelimit.script(ratelimit.CLAIM_LUA)
    for _ in range(max_batches):
        batch_id = uuid.uuid4().hex
        moved = claim(keys=[ratelimit.redis_key("buffer"), ratelimit.redis_key("batch", batch_id), inflight],
                      args=[batch_size, batch_id])
        if not moved:
            break
        process(batch_id)
    if result.events_read:
        logger.info("flushed %s buffered usage events (%s new) in %s batches", result.events_read,
                    result.events_inserted, result.batches)
    return result


def buffer_length() -> int:
    if not settings.USAGE_REDIS_URL:
        return 0
    return int(ratelimit.redis_client().llen(ratelimit.redis_key("buffer")))
