"""
Writes for usage and credits.

Credits: `CreditLedgerEntry` is append-only; `CreditBalance` is its cached sum, moved in the same transaction as the
ledger insert. A removal is one conditional UPDATE (`SET balance = balance - n WHERE balance >= n RETURNING
balance`): PostgreSQL re-evaluates the WHERE clause on the newest row version after waiting for a concurrent
writer's row lock, so two debits can never both pass on the same credits, and the CHECK (balance >= 0)
constraint backs it up. Lock order inside one transaction: the team's CreditBalance row first, then ledger inserts.

Usage events: stored in batches with `INSERT ... ON CONFLICT (team, idempotency_key) DO NOTHING RETURNING`, and only
the rows really inserted move `UsageDailyTotal` (same transaction), so a repeated key counts once however often it
is sent or flushed.
"""
from __future__ import annotations

import json
import logging
from collections import defaultdict
from dataclasses import dataclass, field
from datetime import datetime, timedelta, timezone as dt_timezone
from decimal import Decimal

from django.conf import settings
from django.db import connection, transaction
from django.db.models import Sum
from django.urls import reverse
from django.utils import timezone
from django.utils.dateparse import parse_datetime

from accounts.models import APIKey, Team, User
from billing import selectors as billing_selectors
from billing.catalog import load_catalog
from billing_site.errors import ApplicationError, BillingError, PermissionDeniedError

from .models import CreditBalance, CreditLedgerEntry, TeamUsagePolicy, UsageDailyTotal, UsageEvent, UsagePeriodClose
from .periods import period_for

logger = logging.getLogger(__name__)


# --- Errors ------------------------------------------------------------------------------------------------------


def _way_out_urls() -> dict:
    return {
        "buy_credits_url": settings.SITE_URL + reverse("billing:pricing") + "#credits",
        "upgrade_url": settings.SITE_URL + reverse("billing:pricing"),
        "billing_url": settings.SITE_URL + reverse("billing:overview"),
    }


class InsufficientCreditsError(ApplicationError):
    """Not enough credits for this operation. 402, with the ways out (buy credits, upgrade) in `extra`."""

    http_status = 402

    def __init__(self, *, balance: int, required: int, user_message: str | None = None):
        urls = _way_out_urls()
        message = user_message or (
            f"Not enough credits: this needs {required} and the team has {balance}. "
            f"Buy credits at {urls['buy_credits_url']} or upgrade your plan at {urls['upgrade_url']}."
        )
        super().__init__("insufficient_credits", message, http_status=402,
                         extra={"balance": balance, "required": required, **urls})
        self.balance = balance
        self.required = required


class SpendCapReachedError(BillingError):
    def __init__(self, *, metric: str, cap_units: int):
        urls = _way_out_urls()
        super().__init__(
            "spend_cap_reached",
            f"Your team's spend cap allows {cap_units} {metric} beyond the plan this month and it is reached. "
            f"The team's owner can raise the cap at {urls['billing_url']}.",
            extra={"metric": metric, "cap_units": cap_units, **urls},
        )


class UsageEventInvalidError(ApplicationError):
    """A usage event in a request is invalid; `extra` names its index in the batch and the reason."""

    def __init__(self, *, index: int | None, field: str, reason: str):
        where = f"events[{index}].{field}" if index is not None else field
        super().__init__("invalid_usage_event", f"{where}: {reason}", http_status=400,
                         extra={"index": index, "field": field, "reason": reason})


class _DuplicateEntry(Exception):
    """Internal: the ledger insert hit the idempotency constraint; roll back the balance move and replay."""


# --- Credits -----------------------------------------------------------------------------------------------------

_ENTRY_TABLE = CreditLedgerEntry._meta.db_table
_BALANCE_TABLE = CreditBalance._meta.db_table


def _validate_credit_args(*, amount: int, reason: str, reference: str) -> None:
    if not isinstance(amount, int) or isinstance(amount, bool) or amount <= 0:
        raise ApplicationError("invalid_amount", "The number of credits must be a positive whole number.")
    if reason not in CreditLedgerEntry.Reason.values:
        raise ApplicationError("invalid_reason", f"Unknown credit reason {reason!r}.")
    if not reference or len(reference) > 255:
        raise ApplicationError("invalid_reference", "A reference (at most 255 characters) is required.")


def _existing_entry(*, team: Team, reason: str, reference: str) -> CreditLedgerEntry | None:
    return CreditLedgerEntry.objects.filter(team=team, reason=reason, reference=reference).first()


def _insert_entry(*, team: Team, delta: int, balance_after: int, reason: str, reference: str,
                  created_by: User | None, note: str, metadata: dict) -> CreditLedgerEntry:
    """Insert a ledger row unless (team, reason, reference) exists; raises _DuplicateEntry when it does."""
    entry = CreditLedgerEntry(team=team, delta=delta, balance_after=balance_after, reason=reason, reference=reference,
                              created_by=created_by, note=note[:500], metadata=metadata, created=timezone.now())
    fields = [f for f in CreditLedgerEntry._meta.concrete_fields if not f.primary_key]
    columns = ", ".join(connection.ops.quote_name(f.column) for f in fields)
    values = [f.get_db_prep_save(f.pre_save(entry, True), connection) for f in fields]
    placeholders = ", ".join(["%s"] * len(values))
    sql = (f"INSERT INTO {_ENTRY_TABLE} ({columns}) VALUES ({placeholders}) "
           f"ON CONFLICT (team_id, reason, reference) DO NOTHING RETURNING id")
    with connection.cursor() as cursor:
        cursor.execute(sql, values)
        row = cursor.fetchone()
    if row is None:
        raise _DuplicateEntry()
    entry.pk = row[0]
    return entry


def credits_grant(*, team: Team, amount: int, reason: str, reference: str, created_by: User | None = None,
                  note: str = "") -> CreditLedgerEntry:
    """
    Add credits. Idempotent on (team, reason, reference): a repeat returns the first entry and grants nothing.
    Safe inside a caller's transaction (runs in a savepoint).
    """
    _validate_credit_args(amount=amount, reason=reason, reference=reference)
    existing = _existing_entry(team=team, reason=reason, reference=reference)
    if existing is not None:
        return existing
    try:
        with transaction.atomic():
            # Upsert the balance row and add in one statement; the row lock it takes is the first lock we hold.
            with connection.cursor() as cursor:
                cursor.execute(
                    f"INSERT INTO {_BALANCE_TABLE} (team_id, balance, updated) VALUES (%s, %s, %s) "
                    f"ON CONFLICT (team_id) DO UPDATE SET balance = {_BALANCE_TABLE}.balance + EXCLUDED.balance, "
                    f"updated = EXCLUDED.updated RETURNING balance",
                    [team.pk, amount, CreditBalance._meta.get_field("updated").get_db_prep_save(
                        timezone.now(), connection)],
                )
                balance_after = cursor.fetchone()[0]
            entry = _insert_entry(team=team, delta=amount, balance_after=balance_after, reason=reason,
                                  reference=reference, created_by=created_by, note=note, metadata={})
    except _DuplicateEntry:
        # A concurrent call with the same triple committed first: ours was rolled back, theirs is the answer.
        return _existing_entry(team=team, reason=reason, reference=reference)
    logger.info("credits granted: team %s %+d (%s %s), balance %s", team.pk, amount, reason, reference, balance_after,
                extra={"team_id": team.pk, "reason": reason, "reference": reference})
    return entry


def credits_remove(*, team: Team, amount: int, reason: str, reference: str, created_by: User | None = None,
                   note: str = "", allow_partial: bool = False) -> CreditLedgerEntry:
    """
    Take credits away; never below zero. Without allow_partial, raises InsufficientCreditsError when the balance is
    short. With allow_partial (e.g. a refund clawback after the credits were spent), takes what is there and records
    `requested` and `shortfall` in the entry's metadata (the entry may then move 0 credits).
    Idempotent on (team, reason, reference) like credits_grant.
    """
    _validate_credit_args(amount=amount, reason=reason, reference=reference)
    now_db = timezone.now() if connection.vendor == "postgresql" else \
        CreditBalance._meta.get_field("updated").get_db_prep_save(timezone.now(), connection)
    # Per-call usage debits only: see USAGE_ASYNC_COMMIT_USAGE_DEBITS in settings and docs/usage.md.
    async_commit = settings.USAGE_ASYNC_COMMIT_USAGE_DEBITS and reason == CreditLedgerEntry.Reason.USAGE
    try:
        if allow_partial:
            with transaction.atomic():
                balance_row = CreditBalance.objects.select_for_update().filter(team=team).first()
                current = balance_row.balance if balance_row else 0
                take = min(current, amount)
                if take:
                    CreditBalance.objects.filter(team=team).update(balance=current - take, updated=timezone.now())
                metadata = {"requested": amount, "shortfall": amount - take}
                entry = _insert_entry(team=team, delta=-take, balance_after=current - take, reason=reason,
                                      reference=reference, created_by=created_by, note=note, metadata=metadata)
                balance_after = current - take
        elif connection.vendor == "postgresql":
            # One statement: its own transaction in autocommit, or part of the caller's transaction.
            balance_after, entry = _debit(team=team, amount=amount, reason=reason, reference=reference,
                                          created_by=created_by, note=note, now_db=now_db, async_commit=async_commit)
        else:
            with transaction.atomic():
                balance_after, entry = _debit(team=team, amount=amount, reason=reason, reference=reference,
                                              created_by=created_by, note=note, now_db=now_db)
    except _DuplicateEntry:
        return _existing_entry(team=team, reason=reason, reference=reference)
    except InsufficientCreditsError:
        if allow_partial or connection.vendor != "postgresql":  # usage_credit_debit checked for a replay already
            existing = _existing_entry(team=team, reason=reason, reference=reference)
            if existing is not None:
                return existing  # a replay of a removal that succeeded earlier
        raise
    if balance_after == 0 and entry.delta != 0:
        from .tasks import usage_alert_credits_exhausted_task

        team_id = team.pk
        transaction.on_commit(lambda: usage_alert_credits_exhausted_task.delay(team_id))
    return entry


def _debit(*, team: Team, amount: int, reason: str, reference: str, created_by: User | None, note: str,
           now_db, async_commit: bool = False) -> tuple[int, CreditLedgerEntry]:
    """
    The conditional debit: `UPDATE balance SET balance = balance - n WHERE team = t AND balance >= n` plus the
    ledger insert. The conditional UPDATE is the whole concurrency story (see the module docstring). On PostgreSQL
    both run server-side in the function `usage_credit_debit` (migration 0002): one round trip, and the balance row
    is locked only while the server runs it. SQLite (one writer at a time anyway) runs the two statements here.
    Raises InsufficientCreditsError or _DuplicateEntry (the caller's atomic block then rolls the UPDATE back).
    """
    entry = CreditLedgerEntry(team=team, delta=-amount, balance_after=0, reason=reason, reference=reference,
                              created_by=created_by, note=note[:500], metadata={}, created=timezone.now())
    if connection.vendor != "postgresql":
        with connection.cursor() as cursor:
            cursor.execute(
                f"UPDATE {_BALANCE_TABLE} SET balance = balance - %s, updated = %s "
                f"WHERE team_id = %s AND balance >= %s RETURNING balance",
                [amount, now_db, team.pk, amount],
            )
            row = cursor.fetchone()
        if row is None:
            raise InsufficientCreditsError(balance=credits_balance_of(team_id=team.pk), required=amount)
        inserted = _insert_entry(team=team, delta=-amount, balance_after=row[0], reason=reason, reference=reference,
                                 created_by=created_by, note=note, metadata={})
        return row[0], inserted
    metadata_db = CreditLedgerEntry._meta.get_field("metadata").get_db_prep_save({}, connection)
    with connection.cursor() as cursor:
        cursor.execute(
            "SELECT outcome, balance_after, entry_id FROM usage_credit_debit(%s::bigint, %s::bigint, %s::text, "
            "%s::text, %s::bigint, %s::text, %s::jsonb, %s::timestamptz, %s::boolean)",
            [team.pk, amount, reason, reference, created_by.pk if created_by else None, note[:500], metadata_db,
             entry.created, async_commit],
        )
        outcome, balance_after, entry_id = cursor.fetchone()
    if outcome == "insufficient":
        raise InsufficientCreditsError(balance=balance_after, required=amount)
    if outcome == "duplicate":
        raise _DuplicateEntry()
    entry.pk = entry_id
    entry.balance_after = balance_after
    return balance_after, entry


def credits_balance_of(*, team_id: int) -> int:
    return CreditBalance.objects.filter(team_id=team_id).values_list("balance", flat=True).first() or 0


def credits_signup_grant(*, team: Team, user: User) -> None:
    """SIGNUP_HOOKS entry: every new team starts with SIGNUP_CREDIT_GRANT free credits (once per team)."""
    amount = settings.SIGNUP_CREDIT_GRANT
    if amount > 0:
        credits_grant(team=team, amount=amount, reason=CreditLedgerEntry.Reason.SIGNUP_GRANT,
                      reference=f"team:{team.pk}", created_by=user, note="Welcome credits")


def credits_expire(*, team: Team, now: datetime | None = None) -> CreditLedgerEntry | None:
    """
    Expire purchased credits older than USAGE_CREDIT_EXPIRY_DAYS (off when unset). Credits are spent oldest first,
    so what is left of grants made before the cutoff is: those grants minus everything removed so far (spending,
    clawbacks and earlier expiries). Only the purchased part of that expires; one entry per team and day.
    """
    days = settings.USAGE_CREDIT_EXPIRY_DAYS
    if not days:
        return None
    now = now or timezone.now()
    cutoff = now - timedelta(days=days)
    entries = CreditLedgerEntry.objects.filter(team=team)
    granted_before = sum(e for e in entries.filter(created__lt=cutoff, delta__gt=0).values_list("delta", flat=True))
    purchased_before = sum(entries.filter(created__lt=cutoff, reason=CreditLedgerEntry.Reason.PURCHASE)
                           .values_list("delta", flat=True))
    removed = -sum(entries.filter(delta__lt=0).values_list("delta", flat=True))
    unspent_old = max(0, granted_before - removed)
    already_expired = -sum(entries.filter(reason=CreditLedgerEntry.Reason.EXPIRY).values_list("delta", flat=True))
    expirable = min(unspent_old, max(0, purchased_before - already_expired), credits_balance_of(team_id=team.pk))
    if expirable <= 0:
        return None
    return credits_remove(team=team, amount=expirable, reason=CreditLedgerEntry.Reason.EXPIRY,
                          reference=f"expiry:{now.date().isoformat()}", allow_partial=True,
                          note=f"Purchased credits older than {days} days")


# --- Usage events: storage -----------------------------------------------------------------------------------------

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


# --- Usage events: validation and ingest ------------------------------------------------------------------------

MAX_BATCH_EVENTS = 1000
MAX_EVENT_QUANTITY = 10**12
MAX_KEY_LENGTH = 255


def _clean_event(raw, *, index: int | None, key: str | None, now: datetime, metrics: tuple[str, ...],
                 min_time: datetime, max_time: datetime) -> tuple[str, str, int, datetime, dict]:
    if not isinstance(raw, dict):
        raise UsageEventInvalidError(index=index, field="event", reason="must be a JSON object")
    if key is None:
        key = raw.get("idempotency_key")
    if not isinstance(key, str) or not key.strip():
        raise UsageEventInvalidError(index=index, field="idempotency_key",
                                     reason="is required (Idempotency-Key header for a single event)")
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
    if occurred_raw in (None, ""):
        occurred_at = now
    else:
        occurred_at = parse_datetime(occurred_raw) if isinstance(occurred_raw, str) else None
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
    metadata = raw.get("metadata") or {}
    if not isinstance(metadata, dict):
        raise UsageEventInvalidError(index=index, field="metadata", reason="must be a JSON object")
    return key, metric, quantity, occurred_at, metadata


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
    for index, raw in enumerate(events):
        key, metric, quantity, occurred_at, metadata = _clean_event(
            raw, index=None if single_key is not None else index, key=single_key, now=now, metrics=metrics,
            min_time=min_time, max_time=max_time)
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
        from .metering import get_backend

        added: dict[str, int] = defaultdict(int)
        for row in new_rows:
            if current.contains(row.occurred_at):
                added[row.metric] += row.quantity
        transaction.on_commit(lambda: get_backend().counters_add(team_id=team.pk, period=current, added=dict(added)))
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
    from .selectors import period_used

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


# --- Metering policy (plan limits + spend cap) ------------------------------------------------------------------


@dataclass(frozen=True)
class MeteringPolicy:
    plan_key: str
    rate_limit_per_second: int
    included: dict[str, int]
    overage: str  # "credits" | "metered"
    cap_units: dict[str, int]  # metric -> most overage units per period (absent: no cap)


def _unit_price_minor(*, plan_key: str, metric: str, currency: str) -> Decimal | None:
    catalog = load_catalog()
    plan = catalog.plan(plan_key)
    for price in plan.overage_prices:
        meter = catalog.meter(price.meter)
        if meter.metric == metric and currency in price.unit_amount_decimal:
            return Decimal(price.unit_amount_decimal[currency])
    return None


def team_metering_policy_load(*, team: Team) -> MeteringPolicy:
    """What metering enforces for a team: the plan's limits (billing's selector) and the owner's spend cap."""
    limits = billing_selectors.team_plan_limits(team=team)
    cap_units: dict[str, int] = {}
    policy = TeamUsagePolicy.objects.filter(team=team).first()
    if policy is not None and policy.spend_cap_minor is not None and limits.overage == "metered":
        for metric in limits.included:
            unit = _unit_price_minor(plan_key=limits.plan_key, metric=metric, currency=policy.currency)
            if unit:
                # Whole units only: a cap of 100 cents at 0.2 cents a call allows 500 calls of overage.
                cap_units[metric] = int(Decimal(policy.spend_cap_minor) / unit)
    return MeteringPolicy(plan_key=limits.plan_key, rate_limit_per_second=limits.rate_limit_per_second,
                          included=dict(limits.included), overage=limits.overage, cap_units=cap_units)


def team_spend_cap_set(*, team: Team, set_by: User, spend_cap_minor: int | None, currency: str = "usd"
                       ) -> TeamUsagePolicy:
    """The team's owner sets (or clears, with None) the most overage to bill per period."""
    from accounts.models import Membership

    if not Membership.objects.filter(team=team, user=set_by, role=Membership.Role.OWNER).exists():
        raise PermissionDeniedError("forbidden", "Only the team's owner can change the spend cap.")
    currency = currency.lower()
    if currency not in load_catalog().currencies:
        raise ApplicationError("invalid_currency", f"Unknown currency {currency!r}.")
    if spend_cap_minor is not None and (not isinstance(spend_cap_minor, int) or spend_cap_minor < 0):
        raise ApplicationError("invalid_amount", "The spend cap must be zero or more, in minor units.")
    policy, _ = TeamUsagePolicy.objects.get_or_create(team=team)
    policy.spend_cap_minor = spend_cap_minor
    policy.currency = currency
    policy.updated_by = set_by
    policy.updated = timezone.now()
    policy.full_clean()
    policy.save()
    from .metering import policy_cache_clear

    policy_cache_clear(team_id=team.pk)
    logger.info("spend cap set for team %s: %s %s", team.pk, spend_cap_minor, currency,
                extra={"team_id": team.pk, "user_id": set_by.pk})
    return policy


# --- Alerts --------------------------------------------------------------------------------------------------------


def _team_owner(team: Team) -> User | None:
    from accounts.models import Membership

    membership = (Membership.objects.filter(team=team, role=Membership.Role.OWNER).select_related("user")
                  .order_by("created").first())
    return membership.user if membership else None


def usage_alert_send(*, team: Team, kind: str, metric: str, period_start: datetime, context: dict):
    """
    Email the team's owner once per (kind, metric, period). The alert row and the email commit together: the row is
    inserted first (unique constraint) and a failed send rolls it back so the next run tries again.
    Returns the new UsageAlert, or None when it was sent before (or the team has no owner).
    """
    from django.core.mail import send_mail
    from django.db import IntegrityError
    from django.template.loader import render_to_string
    from django.utils import translation

    from .models import UsageAlert

    owner = _team_owner(team)
    if owner is None:
        return None
    if UsageAlert.objects.filter(team=team, kind=kind, metric=metric, period_start=period_start).exists():
        return None
    try:
        with transaction.atomic():
            alert = UsageAlert.objects.create(team=team, kind=kind, metric=metric, period_start=period_start,
                                              sent_to=owner.email)
            with translation.override(owner.language):
                full_context = {"team": team, "owner": owner, "metric": metric, **_way_out_urls(), **context}
                subject = render_to_string("usage/email/alert_subject.txt", {"kind": kind, **full_context}).strip()
                body = render_to_string(f"usage/email/{kind}.txt", full_context)
            send_mail(subject, body, settings.DEFAULT_FROM_EMAIL, [owner.email])
    except IntegrityError:
        return None  # a concurrent run sent it
    logger.info("usage alert %s sent to the owner of team %s", kind, team.pk, extra={"team_id": team.pk})
    return alert


def usage_alerts_check(*, team: Team, now: datetime | None = None) -> list:
    """Quota alerts for the current period: 80 % and 100 % of each metric's included amount."""
    from .models import UsageAlert
    from .selectors import period_used

    period = period_for(now)
    limits = billing_selectors.team_plan_limits(team=team)
    sent = []
    for metric, included in sorted(limits.included.items()):
        if included <= 0:
            continue
        used = period_used(team_id=team.pk, metric=metric, period_start=period.start, period_end=period.end)
        for threshold in settings.USAGE_ALERT_THRESHOLDS:
            if used * 100 >= included * threshold:
                kind = UsageAlert.Kind.QUOTA_100 if threshold >= 100 else UsageAlert.Kind.QUOTA_80
                alert = usage_alert_send(team=team, kind=kind, metric=metric, period_start=period.start,
                                         context={"used": used, "included": included, "threshold": threshold,
                                                  "plan_key": limits.plan_key, "overage": limits.overage})
                if alert:
                    sent.append(alert)
    return sent


def usage_alert_credits_exhausted(*, team: Team, now: datetime | None = None):
    """When the team's credits reach zero: tell the owner once per period (checked again: credits may be back)."""
    from .models import UsageAlert

    if credits_balance_of(team_id=team.pk) > 0:
        return None
    return usage_alert_send(team=team, kind=UsageAlert.Kind.CREDITS_EXHAUSTED, metric="",
                            period_start=period_for(now).start, context={})


# --- Metered overage reporting to Stripe -------------------------------------------------------------------------


def _stripe_customer_id(team: Team) -> str | None:
    # billing.selectors.team_stripe_customer_id is the billing core's (see notes/CONTRACTS.md).
    return billing_selectors.team_stripe_customer_id(team=team)


def _meter_for_metric(metric: str):
    return next((meter for meter in load_catalog().meters if meter.metric == metric), None)


def meter_report_prepare(*, team: Team, metric: str, period_start: datetime, period_end: datetime,
                         now: datetime | None = None):
    """
    Create the aggregation row for overage not yet reported: (used - included) minus what earlier rows cover.
    The team row is locked first (lock order: team, then its meter reports) so two runs cannot both add the same
    units. Returns the new MeterReport or None.
    """
    from .models import MeterReport
    from .selectors import period_used

    now = now or timezone.now()
    limits = billing_selectors.team_plan_limits(team=team)
    meter = _meter_for_metric(metric)
    if limits.overage != "metered" or meter is None:
        return None
    with transaction.atomic():
        Team.objects.select_for_update().filter(pk=team.pk).first()
        used = period_used(team_id=team.pk, metric=metric, period_start=period_start, period_end=period_end)
        overage = max(0, used - limits.included.get(metric, 0))
        reported = (MeterReport.objects.filter(team=team, metric=metric, period_start=period_start,
                                               kind=MeterReport.Kind.OVERAGE)
                    .aggregate(total=Sum("quantity"))["total"] or 0)
        if overage <= reported:
            return None
        customer_id = _stripe_customer_id(team)
        if not customer_id:
            logger.error("team %s has %s overage %s but no Stripe customer: not reported", team.pk, metric,
                         overage - reported, extra={"team_id": team.pk})
            return None
        report = MeterReport.objects.create(
            team=team, metric=metric, event_name=meter.event_name, period_start=period_start,
            quantity=overage - reported, stripe_customer_id=customer_id,
            # Inside the period it bills (Stripe attributes the event to the invoice period of its timestamp).
            event_timestamp=min(now, period_end - timedelta(seconds=1)),
        )
    logger.info("meter report %s prepared: team %s %s +%s", report.pk, team.pk, metric, report.quantity,
                extra={"team_id": team.pk, "meter_report_id": report.pk})
    return report


@dataclass
class SendResult:
    sent: int = 0
    failed: int = 0
    remaining: int = 0
    errors: list = field(default_factory=list)  # (meter report id, error code)


def meter_reports_send(*, limit: int | None = None) -> SendResult:
    """
    Send pending aggregation rows to Stripe, oldest first, in one batch of up to USAGE_METER_REPORT_BATCH_SIZE.
    Each row is one meter event whose identifier and idempotency key derive from the row; it is marked SENT only
    after Stripe accepted it. On a failure the batch stops (the provider is likely down) and the rest stay PENDING
    for the next run; resending a row whose first attempt did reach Stripe is answered from Stripe's idempotency
    cache / identifier deduplication, so it is never counted twice.
    """
    from billing.stripe_gateway import meters as meters_gateway

    from .models import MeterReport

    limit = limit or settings.USAGE_METER_REPORT_BATCH_SIZE
    result = SendResult()
    pending = list(MeterReport.objects.filter(status=MeterReport.Status.PENDING).order_by("id")[:limit])
    for report in pending:
        MeterReport.objects.filter(pk=report.pk).update(attempts=report.attempts + 1)
        try:
            meters_gateway.meter_event_create(
                event_name=report.event_name, stripe_customer_id=report.stripe_customer_id, value=report.quantity,
                identifier=report.identifier, timestamp=report.event_timestamp, idempotency_key=report.identifier,
            )
        except BillingError as error:
            if _is_duplicate_identifier(error):
                logger.warning("meter report %s was already accepted by Stripe (duplicate identifier)", report.pk)
            else:
                MeterReport.objects.filter(pk=report.pk).update(last_error=f"{error.code}: {error}"[:2000])
                result.failed += 1
                result.errors.append((report.pk, error.code))
                logger.warning("meter report %s failed (%s); the batch stops and is retried", report.pk, error.code,
                               extra={"meter_report_id": report.pk})
                break
        MeterReport.objects.filter(pk=report.pk, status=MeterReport.Status.PENDING).update(
            status=MeterReport.Status.SENT, sent_at=timezone.now(), last_error="")
        result.sent += 1
    result.remaining = MeterReport.objects.filter(status=MeterReport.Status.PENDING).count()
    return result


def _is_duplicate_identifier(error: BillingError) -> bool:
    cause = error.__cause__
    message = str(getattr(cause, "user_message", "") or "").lower()
    return "identifier" in message and ("already" in message or "duplicate" in message)


def meter_reports_prepare_all(*, now: datetime | None = None) -> list:
    """Aggregation rows for every team with overage this period (and last period until the rollover closes it)."""
    from .models import UsagePeriodClose
    from .selectors import period_totals_by_team

    now = now or timezone.now()
    current = period_for(now)
    reports = []
    for period in (current.previous(), current):
        closed = set(UsagePeriodClose.objects.filter(period_start=period.start).values_list("team_id", "metric"))
        for team_id, metric, _used in period_totals_by_team(period=period):
            if (team_id, metric) in closed:
                continue
            team = Team.objects.filter(pk=team_id).first()
            if team is None:
                continue
            report = meter_report_prepare(team=team, metric=metric, period_start=period.start,
                                          period_end=period.end, now=now)
            if report:
                reports.append(report)
    return reports


def meter_drift_check(*, team: Team, metric: str, period_start: datetime, now: datetime | None = None):
    """
    Compare what we reported (SENT overage rows) with Stripe's meter event summaries for the team's customer, up to
    a settled window end. Corrects when the project is sure:
    - Stripe has less and nothing is pending: a CORRECTION report for the difference (sent like any other);
    - Stripe has more by exactly the sum of corrections we sent in the last 23 hours: those corrections were not
      needed (the missing events arrived late), so they are cancelled with meter event adjustments.
    Anything else is recorded as DRIFT and logged as an error for staff.
    """
    from billing.stripe_gateway import meters as meters_gateway

    from .models import MeterDriftCheck, MeterReport

    now = now or timezone.now()
    meter = _meter_for_metric(metric)
    customer_id = _stripe_customer_id(team)
    if meter is None or not customer_id:
        return None
    period = period_for(period_start)
    settle = timedelta(seconds=settings.USAGE_METER_DRIFT_SETTLE_SECONDS)
    window_end = min(period.end, now - settle).replace(second=0, microsecond=0)  # Stripe wants whole minutes
    if window_end <= period.start:
        return None
    reports = MeterReport.objects.filter(team=team, metric=metric, period_start=period.start)
    project_total = sum(reports.filter(kind=MeterReport.Kind.OVERAGE, status=MeterReport.Status.SENT,
                                       event_timestamp__lt=window_end).values_list("quantity", flat=True))
    stripe_meter = meters_gateway.meter_find_by_event_name(event_name=meter.event_name)
    if stripe_meter is None:
        logger.error("no Stripe meter for event %s: drift check skipped", meter.event_name)
        return None
    summaries = meters_gateway.meter_event_summaries(meter_id=stripe_meter["id"], stripe_customer_id=customer_id,
                                                     start=period.start, end=window_end)
    stripe_total = int(sum(Decimal(str(s.get("aggregated_value") or 0)) for s in summaries))
    outcome = MeterDriftCheck.Outcome.MATCH
    correction = None
    if stripe_total < project_total:
        if reports.filter(status=MeterReport.Status.PENDING).exists():
            outcome = MeterDriftCheck.Outcome.DRIFT  # a send is in flight: not sure yet
        else:
            correction = MeterReport.objects.create(
                team=team, metric=metric, event_name=meter.event_name, period_start=period.start,
                quantity=project_total - stripe_total, kind=MeterReport.Kind.CORRECTION,
                stripe_customer_id=customer_id, event_timestamp=window_end - timedelta(seconds=1))
            outcome = MeterDriftCheck.Outcome.CORRECTED
    elif stripe_total > project_total:
        recent = list(reports.filter(kind=MeterReport.Kind.CORRECTION, status=MeterReport.Status.SENT,
                                     sent_at__gte=now - timedelta(hours=23), event_timestamp__lt=window_end))
        if recent and sum(r.quantity for r in recent) == stripe_total - project_total:
            for report in recent:
                meters_gateway.meter_event_adjustment_cancel(event_name=report.event_name,
                                                             identifier=report.identifier,
                                                             idempotency_key=f"{report.identifier}-cancel")
                MeterReport.objects.filter(pk=report.pk).update(status=MeterReport.Status.CANCELED)
            outcome = MeterDriftCheck.Outcome.CORRECTED
        else:
            outcome = MeterDriftCheck.Outcome.DRIFT
    check = MeterDriftCheck.objects.create(team=team, metric=metric, period_start=period.start,
                                           window_end=window_end, project_total=project_total,
                                           stripe_total=stripe_total, outcome=outcome, correction=correction)
    if outcome != MeterDriftCheck.Outcome.MATCH:
        log = logger.error if outcome == MeterDriftCheck.Outcome.DRIFT else logger.warning
        log("meter drift for team %s %s: project %s, Stripe %s (%s)", team.pk, metric, project_total, stripe_total,
            outcome, extra={"team_id": team.pk, "drift_check_id": check.pk})
    return check


def meter_drift_check_all(*, now: datetime | None = None) -> list:
    from .models import MeterReport

    now = now or timezone.now()
    current = period_for(now)
    checks = []
    pairs = (MeterReport.objects.filter(period_start__in=[current.start, current.previous().start])
             .values_list("team_id", "metric", "period_start").distinct())
    for team_id, metric, period_start in sorted(set(pairs)):
        team = Team.objects.get(pk=team_id)
        check = meter_drift_check(team=team, metric=metric, period_start=period_start, now=now)
        if check:
            checks.append(check)
    return checks


def usage_period_rollover(*, now: datetime | None = None) -> list:
    """
    Close the previous period: flush buffered calls, report its final overage, and record per team and metric what
    was used (UsagePeriodClose). Afterwards ingest refuses events dated in it, and counters start from zero in the
    new period (their Redis keys and the daily totals are per period already). Safe to run twice.
    """
    from .metering import buffer_flush
    from .models import UsagePeriodClose
    from .selectors import period_totals_by_team

    now = now or timezone.now()
    previous = period_for(now).previous()
    buffer_flush()
    closed = []
    for team_id, metric, used in period_totals_by_team(period=previous):
        team = Team.objects.filter(pk=team_id).first()
        if team is None or UsagePeriodClose.objects.filter(team=team, metric=metric,
                                                           period_start=previous.start).exists():
            continue
        meter_report_prepare(team=team, metric=metric, period_start=previous.start, period_end=previous.end, now=now)
        limits = billing_selectors.team_plan_limits(team=team)
        included = limits.included.get(metric, 0)
        close, created = UsagePeriodClose.objects.get_or_create(
            team=team, metric=metric, period_start=previous.start,
            defaults={"period_end": previous.end, "used": used, "included": included,
                      "overage": max(0, used - included), "plan_key": limits.plan_key})
        if created:
            closed.append(close)
    meter_reports_send()
    return closed
