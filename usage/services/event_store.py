"""
Storing usage events, once each.

Events are stored in batches with `INSERT ... ON CONFLICT (team, idempotency_key) DO NOTHING RETURNING`, and only the
rows really inserted move `UsageDailyTotal` (same transaction), so a repeated key counts once however often it is
sent or flushed.
"""
from __future__ import annotations

import json
from collections import defaultdict
from dataclasses import dataclass
from datetime import datetime

from django.db import connection, transaction
from django.utils import timezone

from ..models import UsageDailyTotal, UsageEvent


_EVENT_FIELDS = [f for f in UsageEvent._meta.concrete_fields if not f.primary_key]
_EVENT_COLUMNS = ", ".join(connection.ops.quote_name(f.column) for f in _EVENT_FIELDS)
_EVENT_CHUNK = 500  # rows per INSERT statement: well under SQLite's and PostgreSQL's parameter limits


@dataclass(frozen=True)
class EventRow:
    """A usage event to store (validated). occurred_at is aware UTC."""

    team_id: int
    metric: str
    quantity: int
    occurred_at: datetime
    idempotency_key: str
    source: str
    api_key_id: int | None = None
    user_id: int | None = None
    metadata: dict | None = None


def usage_events_store(*, rows: list[EventRow]) -> list[EventRow]:
    """
    Insert events, skipping any whose (team, idempotency_key) is stored already, and add the inserted ones to the
    daily totals in the same transaction. Returns the rows that were new. Call inside transaction.atomic() when more
    must commit with them; it opens its own otherwise.
    """
    new_rows, _ids = usage_events_store_with_ids(rows=rows)
    return new_rows


def usage_events_store_with_ids(*, rows: list[EventRow]) -> tuple[list[EventRow], dict[tuple[int, str], int]]:
    """usage_events_store, also answering the new rows' ids by (team_id, idempotency_key)."""
    if not rows:
        return [], {}
    now = timezone.now()
    inserted: dict[tuple[int, str], int] = {}
    with transaction.atomic():
        chunk_size = 5000 if connection.vendor == "postgresql" else _EVENT_CHUNK  # arrays have no placeholder limit
        for start in range(0, len(rows), chunk_size):
            chunk = rows[start:start + chunk_size]
            with connection.cursor() as cursor:
                if connection.vendor == "postgresql":
                    _insert_events_postgres(cursor, chunk, now)
                else:
                    _insert_events_generic(cursor, chunk, now)
                inserted.update(((team_id, key), pk) for pk, team_id, key in cursor.fetchall())
        new_rows = [row for row in rows if (row.team_id, row.idempotency_key) in inserted]
        _daily_totals_add(rows=new_rows)
    return new_rows, inserted


_INSERT_TAIL = "ON CONFLICT (team_id, idempotency_key) DO NOTHING RETURNING id, team_id, idempotency_key"


def _insert_events_postgres(cursor, chunk: list[EventRow], now: datetime) -> None:
    # One array per column and unnest(): a short statement with 10 parameters, however many rows (a VALUES list
    # of 500 rows has 5,000 placeholders that the driver must parse and adapt one by one).
    cursor.execute(
        f"INSERT INTO {UsageEvent._meta.db_table} (team_id, api_key_id, user_id, metric, quantity, occurred_at, "
        f"idempotency_key, source, metadata, created) "
        f"SELECT t, a, u, m, q, o, k, s, d::jsonb, %s FROM unnest(%s::bigint[], %s::bigint[], %s::bigint[], "
        f"%s::text[], %s::bigint[], %s::timestamptz[], %s::text[], %s::text[], %s::text[]) "
        f"AS x(t, a, u, m, q, o, k, s, d) {_INSERT_TAIL}",
        [now, [r.team_id for r in chunk], [r.api_key_id for r in chunk], [r.user_id for r in chunk],
         [r.metric for r in chunk], [r.quantity for r in chunk], [r.occurred_at for r in chunk],
         [r.idempotency_key for r in chunk], [r.source for r in chunk],
         [json.dumps(r.metadata or {}, separators=(",", ":")) for r in chunk]],
    )


def _insert_events_generic(cursor, chunk: list[EventRow], now: datetime) -> None:
    params: list = []
    for row in chunk:
        event = UsageEvent(team_id=row.team_id, api_key_id=row.api_key_id, user_id=row.user_id, metric=row.metric,
                           quantity=row.quantity, occurred_at=row.occurred_at, idempotency_key=row.idempotency_key,
                           source=row.source, metadata=row.metadata or {}, created=now)
        params.extend(f.get_db_prep_save(getattr(event, f.attname), connection) for f in _EVENT_FIELDS)
    values = ", ".join(["(" + ", ".join(["%s"] * len(_EVENT_FIELDS)) + ")"] * len(chunk))
    cursor.execute(
        f"INSERT INTO {UsageEvent._meta.db_table} ({_EVENT_COLUMNS}) VALUES {values} {_INSERT_TAIL}", params)


def _daily_totals_add(*, rows: list[EventRow]) -> None:
    sums: dict[tuple[int, str, object, int], int] = defaultdict(int)
    for row in rows:
        sums[(row.team_id, row.metric, row.occurred_at.date(), row.api_key_id or 0)] += row.quantity
    if not sums:
        return
    table = UsageDailyTotal._meta.db_table
    day_field = UsageDailyTotal._meta.get_field("day")
    # Sorted: concurrent flushes and ingests lock the same total rows in the same order, so they cannot deadlock.
    items = sorted(sums.items())
    with connection.cursor() as cursor:
        for start in range(0, len(items), _EVENT_CHUNK):
            chunk = items[start:start + _EVENT_CHUNK]
            params: list = []
            for (team_id, metric, day, key_ref), quantity in chunk:
                params.extend([team_id, metric, day_field.get_db_prep_save(day, connection), key_ref, quantity])
            values = ", ".join(["(%s, %s, %s, %s, %s)"] * len(chunk))
            cursor.execute(
                f"INSERT INTO {table} (team_id, metric, day, api_key_ref, quantity) VALUES {values} "
                f"ON CONFLICT (team_id, metric, day, api_key_ref) "
                f"DO UPDATE SET quantity = {table}.quantity + EXCLUDED.quantity",
                params,
            )
