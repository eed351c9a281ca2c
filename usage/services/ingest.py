"""
Usage reported by other servers (POST /api/v1/usage/events/): validated all or nothing, stored once per key, paid
from credits or held to the spend cap past the plan's included amount.
"""
from __future__ import annotations

import json
import re
from collections import defaultdict
from dataclasses import dataclass
from datetime import datetime, timedelta, timezone as dt_timezone

from django.conf import settings
from django.db import transaction
from django.utils import timezone
from django.utils.dateparse import parse_datetime

from accounts.models import APIKey, Team, User
from billing.catalog import load_catalog
from billing_site.errors import ApplicationError

from .. import ratelimit
from ..models import CreditLedgerEntry, UsageEvent, UsagePeriodClose
from ..periods import period_for
from ..selectors import period_used
from .credits import credits_remove
from .errors import SpendCapReachedError, UsageEventInvalidError
from .event_store import EventRow, usage_events_store_with_ids
from .policy import team_metering_policy_load


MAX_BATCH_EVENTS = 1000
MAX_EVENT_QUANTITY = 10**12
MAX_KEY_LENGTH = 255
# Metadata is bounded like Stripe's (50 keys, keys up to 40 characters, values up to 500) and by its serialised
# size, per event and per batch: a client must not be able to store megabytes per event (issue 10).
MAX_METADATA_KEYS = 50
MAX_METADATA_KEY_LENGTH = 40
MAX_METADATA_VALUE_LENGTH = 500
MAX_METADATA_BYTES = 8 * 1024  # one event's metadata as compact JSON (UTF-8)
MAX_BATCH_METADATA_BYTES = 256 * 1024  # all the batch's metadata together; above it: 413


# NUL and lone surrogates are legal JSON escapes that PostgreSQL's text and jsonb refuse (a 500 when stored):
# refused here, where the client's strings are stored. Other API inputs go through DRF fields, which refuse them.
_UNSTORABLE_TEXT = re.compile("[\x00\ud800-\udfff]")


def _text_storable(value: str) -> bool:
    return _UNSTORABLE_TEXT.search(value) is None


class UsageBatchTooLargeError(ApplicationError):
    """A batch whose metadata together exceeds MAX_BATCH_METADATA_BYTES: 413 like an oversized body."""

    def __init__(self, *, size: int):
        super().__init__("request_too_large",
                         f"The events' metadata totals {size} bytes; a batch may carry at most "
                         f"{MAX_BATCH_METADATA_BYTES} bytes of metadata. Send smaller batches.",
                         http_status=413, extra={"limit": MAX_BATCH_METADATA_BYTES})


def _metadata_clean(metadata, *, index: int | None) -> tuple[dict, int]:
    """The event's metadata and its size in bytes, or UsageEventInvalidError naming the rule it breaks."""
    if not isinstance(metadata, dict):
        raise UsageEventInvalidError(index=index, field="metadata", reason="must be a JSON object")
    if len(metadata) > MAX_METADATA_KEYS:
        raise UsageEventInvalidError(index=index, field="metadata",
                                     reason=f"may have at most {MAX_METADATA_KEYS} keys")
    for name, value in metadata.items():
        if not _text_storable(name) or (isinstance(value, str) and not _text_storable(value)):
            raise UsageEventInvalidError(index=index, field="metadata",
                                         reason="may not contain NUL characters or lone surrogates")
        if len(name) > MAX_METADATA_KEY_LENGTH:
            raise UsageEventInvalidError(index=index, field="metadata",
                                         reason=f"keys must be at most {MAX_METADATA_KEY_LENGTH} characters")
        if not (value is None or isinstance(value, (str, int, float, bool))):
            raise UsageEventInvalidError(index=index, field="metadata",
                                         reason="values must be strings, numbers, booleans or null")
        if isinstance(value, str) and len(value) > MAX_METADATA_VALUE_LENGTH:
            raise UsageEventInvalidError(index=index, field="metadata",
                                         reason=f"values must be at most {MAX_METADATA_VALUE_LENGTH} characters")
    size = len(json.dumps(metadata, separators=(",", ":"), ensure_ascii=False).encode())
    if size > MAX_METADATA_BYTES:
        raise UsageEventInvalidError(index=index, field="metadata",
                                     reason=f"must be at most {MAX_METADATA_BYTES} bytes as JSON")
    return metadata, size


def _clean_event(raw, *, index: int | None, key: str | None, now: datetime, metrics: tuple[str, ...],
                 min_time: datetime, max_time: datetime) -> tuple[str, str, int, datetime, dict, int]:
    if not isinstance(raw, dict):
        raise UsageEventInvalidError(index=index, field="event", reason="must be a JSON object")
    if key is None:
        key = raw.get("idempotency_key")
    if not isinstance(key, str) or not key.strip():
        raise UsageEventInvalidError(index=index, field="idempotency_key",
                                     reason="is required (Idempotency-Key header for a single event)")
    if not _text_storable(key):
        raise UsageEventInvalidError(index=index, field="idempotency_key",
                                     reason="may not contain NUL characters or lone surrogates")
    if len(key) > MAX_KEY_LENGTH:
        raise UsageEventInvalidError(index=index, field="idempotency_key",
                                     reason=f"must be at most {MAX_KEY_LENGTH} characters")
    metric = raw.get("metric")
    if metric not in metrics:
        raise UsageEventInvalidError(index=index, field="metric",
                                     reason=f"unknown metric {metric!r}; known: {', '.join(metrics)}")
    quantity = raw.get("quantity", 1)
    if not isinstance(quantity, int) or isinstance(quantity, bool):
        raise UsageEventInvalidError(index=index, field="quantity", reason="must be a whole number")
    if quantity <= 0 or quantity > MAX_EVENT_QUANTITY:
        raise UsageEventInvalidError(index=index, field="quantity",
                                     reason=f"must be between 1 and {MAX_EVENT_QUANTITY}")
    occurred_raw = raw.get("occurred_at")
    if occurred_raw is None:
        occurred_at = now
    else:
        try:
            occurred_at = parse_datetime(occurred_raw) if isinstance(occurred_raw, str) else None
        except ValueError:  # well-formed but impossible, e.g. 2026-02-30T10:00:00Z, or an out-of-range offset
            occurred_at = None
        if occurred_at is None:
            raise UsageEventInvalidError(index=index, field="occurred_at", reason="must be an ISO 8601 date-time")
        if timezone.is_naive(occurred_at):
            raise UsageEventInvalidError(index=index, field="occurred_at",
                                         reason="must include a time zone (e.g. Z or +00:00)")
        if occurred_at < min_time:
            raise UsageEventInvalidError(index=index, field="occurred_at",
                                         reason=f"is too far in the past (earliest {min_time.isoformat()})")
        if occurred_at > max_time:
            raise UsageEventInvalidError(index=index, field="occurred_at",
                                         reason=f"is too far in the future (latest {max_time.isoformat()})")
    metadata, metadata_bytes = _metadata_clean({} if raw.get("metadata") is None else raw.get("metadata"),
                                              index=index)
    return key, metric, quantity, occurred_at, metadata, metadata_bytes


@dataclass(frozen=True)
class IngestResult:
    events: list[dict]  # in request order: the stored event (the original one for a repeated key)
    created: int
    duplicates: int


def usage_events_ingest(*, team: Team, events: list, api_key: APIKey | None = None, user: User | None = None,
                        single_key: str | None = None) -> IngestResult:
    """
    Record usage reported by another server. All or nothing: one invalid event rejects the whole request with its
    index and reason (400) and stores nothing. A repeated idempotency key counts once and answers with the original.
    Past the included amount, a `credits` plan pays from credits (402 and nothing stored when short) and a metered
    plan is held to the team's spend cap (402 and nothing stored when over).
    `single_key` is the Idempotency-Key header of a single-event request.
    """
    if not isinstance(events, list) or not events:
        raise UsageEventInvalidError(index=None, field="events", reason="must be a non-empty list")
    if len(events) > MAX_BATCH_EVENTS:
        raise UsageEventInvalidError(index=None, field="events",
                                     reason=f"at most {MAX_BATCH_EVENTS} events per batch (got {len(events)})")
    now = timezone.now()
    current = period_for(now)
    min_time = now - timedelta(seconds=settings.USAGE_EVENT_MAX_AGE_SECONDS)
    max_time = now + timedelta(seconds=settings.USAGE_EVENT_MAX_FUTURE_SECONDS)
    previous_closed = UsagePeriodClose.objects.filter(team=team, period_start=current.previous().start).exists()
    if previous_closed:
        # The monthly rollover has billed last month: late events for it can no longer count.
        min_time = max(min_time, current.start)
    metrics = load_catalog().metrics
    rows: list[EventRow] = []
    seen: set[str] = set()
    metadata_total = 0
    for index, raw in enumerate(events):
        key, metric, quantity, occurred_at, metadata, metadata_bytes = _clean_event(
            raw, index=None if single_key is not None else index, key=single_key, now=now, metrics=metrics,
            min_time=min_time, max_time=max_time)
        metadata_total += metadata_bytes
        if metadata_total > MAX_BATCH_METADATA_BYTES:
            raise UsageBatchTooLargeError(size=metadata_total)
        if key in seen:
            raise UsageEventInvalidError(index=index, field="idempotency_key", reason="repeated within the batch")
        seen.add(key)
        rows.append(EventRow(team_id=team.pk, metric=metric, quantity=quantity, occurred_at=occurred_at,
                             idempotency_key=key, source=UsageEvent.Source.INGEST,
                             api_key_id=api_key.pk if api_key else None, user_id=user.pk if user else None,
                             metadata=metadata))
    with transaction.atomic():
        new_rows, new_ids = usage_events_store_with_ids(rows=rows)
        _charge_ingested_overage(team=team, new_rows=new_rows, period_start=current.start, period_end=current.end)
    if new_rows:
        added: dict[str, int] = defaultdict(int)
        for row in new_rows:
            if current.contains(row.occurred_at):
                added[row.metric] += row.quantity
        transaction.on_commit(lambda: ratelimit.period_counters_add(team_id=team.pk, period_key=current.key,
                                                                    added=dict(added)))
    # New events are answered from what we inserted; only repeats are read back (the original wins).
    repeated_keys = [row.idempotency_key for row in rows if (team.pk, row.idempotency_key) not in new_ids]
    originals = {
        values["idempotency_key"]: values
        for values in UsageEvent.objects.filter(team=team, idempotency_key__in=repeated_keys).values(
            "id", "idempotency_key", "metric", "quantity", "occurred_at", "source", "api_key_id", "metadata")
    } if repeated_keys else {}
    payload = []
    for row in rows:
        new_id = new_ids.get((team.pk, row.idempotency_key))
        if new_id is not None:
            payload.append(_event_payload(new_id, row.idempotency_key, row.metric, row.quantity, row.occurred_at,
                                          row.source, row.api_key_id, row.metadata or {}, False))
        else:
            o = originals[row.idempotency_key]
            payload.append(_event_payload(o["id"], o["idempotency_key"], o["metric"], o["quantity"],
                                          o["occurred_at"], o["source"], o["api_key_id"], o["metadata"], True))
    return IngestResult(events=payload, created=len(new_rows), duplicates=len(rows) - len(new_rows))


def _event_payload(pk, key, metric, quantity, occurred_at, source, api_key_id, metadata, duplicate) -> dict:
    return {
        "id": pk,
        "idempotency_key": key,
        "metric": metric,
        "quantity": quantity,
        "occurred_at": occurred_at.astimezone(dt_timezone.utc).isoformat().replace("+00:00", "Z"),
        "source": source,
        "api_key_id": api_key_id,
        "metadata": metadata,
        "duplicate": duplicate,
    }


def _charge_ingested_overage(*, team: Team, new_rows: list[EventRow], period_start, period_end) -> None:
    """Inside the ingest transaction: pay overage from credits, or enforce the spend cap; raising rolls back."""
    policy = team_metering_policy_load(team=team)
    added: dict[str, int] = defaultdict(int)
    for row in new_rows:
        if period_start <= row.occurred_at < period_end:
            added[row.metric] += row.quantity
    for metric, quantity in sorted(added.items()):
        included = policy.included.get(metric, 0)
        used_after = period_used(team_id=team.pk, metric=metric, period_start=period_start, period_end=period_end)
        over_before = max(0, used_after - quantity - included)
        over_after = max(0, used_after - included)
        if policy.overage == "credits" and over_after > over_before:
            first_key = min(row.idempotency_key for row in new_rows if row.metric == metric)
            credits_remove(team=team, amount=(over_after - over_before) * settings.USAGE_CREDITS_PER_OVERAGE_UNIT,
                           reason=CreditLedgerEntry.Reason.USAGE, reference=f"ingest:{metric}:{first_key}")
        cap_units = policy.cap_units.get(metric)
        if policy.overage == "metered" and cap_units is not None and over_after > cap_units:
            raise SpendCapReachedError(metric=metric, cap_units=cap_units)
