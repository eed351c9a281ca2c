"""
Writes to the credit ledger.

`CreditLedgerEntry` is append-only; `CreditBalance` is its cached sum, moved in the same transaction as the ledger
insert. A removal is one conditional UPDATE (`SET balance = balance - n WHERE balance >= n RETURNING balance`):
PostgreSQL re-evaluates the WHERE clause on the newest row version after waiting for a concurrent writer's row lock,
so two debits can never both pass on the same credits, and the CHECK (balance >= 0) constraint backs it up. Lock
order inside one transaction: the team's CreditBalance row first, then ledger inserts.
"""
from __future__ import annotations

import logging
import threading
from collections.abc import Callable
from dataclasses import dataclass, field
from datetime import datetime, timedelta

from django.conf import settings
from django.db import connection, transaction
from django.utils import timezone
from django.utils.translation import gettext_noop

from accounts.models import Team, User
from billing_site.errors import ApplicationError

from ..models import CreditBalance, CreditLedgerEntry
from ..selectors import credits_balance
from .errors import InsufficientCreditsError

logger = logging.getLogger(__name__)


# Called with a team's id after a removal that left the team with zero credits has committed. usage's AppConfig
# registers the credits-exhausted alert task here: usage.tasks imports these services, so these services do not
# import usage.tasks (no import cycle), like accounts.services.SIGNUP_HOOKS.
CREDITS_EXHAUSTED_HOOKS: list[Callable[[int], None]] = []


class _DuplicateEntry(Exception):
    """Internal: the ledger insert hit the idempotency constraint; roll back the balance move and replay."""


_ENTRY_TABLE = CreditLedgerEntry._meta.db_table
_REASONS = frozenset(CreditLedgerEntry.Reason.values)  # `Reason.values` builds a new list on every access
# Column order of a ledger row, for building the returned entry the way a query does (Model.from_db).
_ENTRY_ATTNAMES = [f.attname for f in CreditLedgerEntry._meta.concrete_fields]
_BALANCE_TABLE = CreditBalance._meta.db_table


def _validate_credit_args(*, amount: int, reason: str, reference: str) -> None:
    if not isinstance(amount, int) or isinstance(amount, bool) or amount <= 0:
        raise ApplicationError("invalid_amount", "The number of credits must be a positive whole number.")
    if reason not in _REASONS:
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
        elif connection.vendor == "postgresql" and not connection.in_atomic_block and settings.USAGE_CREDIT_DEBIT_COMBINE:
            # Autocommit (a per-call debit): joins the team's next batch, one locked statement per batch.
            balance_after, entry = _combined_debit(team=team, amount=amount, reason=reason, reference=reference,
                                                   created_by=created_by, note=note, async_commit=async_commit)
        elif connection.vendor == "postgresql":
            # One statement: part of the caller's transaction (or its own when combining is off).
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
        team_id = team.pk
        for hook in CREDITS_EXHAUSTED_HOOKS:
            transaction.on_commit(lambda hook=hook: hook(team_id))
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
            raise InsufficientCreditsError(balance=credits_balance(team=team), required=amount)
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


# --- The debit combiner (group commit) ----------------------------------------------------------------------------
#
# Every debit of one team serialises on its balance row. Instead of each thread taking that row lock in turn (one
# lock hand-over, one wake-up of the next waiter and one commit per debit), the debits of a team that arrive while a
# batch is running wait for it and then go to the database together: ONE call of usage_credit_debit_batch (migration
# 0004) locks the row once, applies them in arrival order with the same rule as a single debit, inserts their ledger
# rows with consecutive balance_after values and commits once. Nothing is weakened: the check and the decrement still
# happen under the row lock, in one transaction, so no credit is spent twice and the balance never goes below zero;
# other processes' batches and single debits serialise on the same row lock. Alone, a debit is a batch of one (no
# added wait). Only debits in autocommit are combined: one inside a caller's transaction must commit or roll back
# with it, so it takes the single-debit path.


@dataclass
class _PendingDebit:
    team_id: int
    amount: int
    reason: str
    reference: str
    created_by_id: int | None
    note: str
    async_commit: bool
    created: datetime
    done: threading.Event = field(default_factory=threading.Event)
    lead: bool = False  # set when this waiting thread is handed the job of running the next batch
    outcome: tuple | None = None  # (outcome, balance_after, entry_id) from the database
    error: BaseException | None = None


class _TeamDebitQueue:
    def __init__(self) -> None:
        self.pending: list[_PendingDebit] = []
        self.running = False


_debit_queues: dict[int, _TeamDebitQueue] = {}
_debit_queues_lock = threading.Lock()


def _run_debit_batch(batch: list[_PendingDebit]) -> None:
    """Runs on the leading thread's own connection (autocommit: the call is its own transaction)."""
    first = batch[0]
    with connection.cursor() as cursor:
        cursor.execute(
            "SELECT idx, outcome, balance_after, entry_id FROM usage_credit_debit_batch(%s::bigint, %s::bigint[], "
            "%s::text[], %s::text[], %s::bigint[], %s::text[], %s::timestamptz, %s::boolean)",
            [first.team_id, [d.amount for d in batch], [d.reason for d in batch], [d.reference for d in batch],
             [d.created_by_id for d in batch], [d.note[:500] for d in batch], first.created,
             # Asynchronous commit only when every debit of the batch allows it.
             all(d.async_commit for d in batch)],
        )
        rows = cursor.fetchall()
    for debit in batch:
        debit.created = first.created  # the time the batch's rows were stored with
    for idx, outcome, balance_after, entry_id in rows:
        batch[idx - 1].outcome = (outcome, balance_after, entry_id)


def _combined_debit(*, team: Team, amount: int, reason: str, reference: str, created_by: User | None, note: str,
                    async_commit: bool) -> tuple[int, CreditLedgerEntry]:
    """A debit through the team's batch queue; answers and raises exactly like `_debit`."""
    now = timezone.now()  # the stored time is that of the first debit of the batch (set when it ran)
    mine = _PendingDebit(team_id=team.pk, amount=amount, reason=reason, reference=reference,
                         created_by_id=created_by.pk if created_by else None, note=note, async_commit=async_commit,
                         created=now)
    with _debit_queues_lock:
        queue = _debit_queues.get(team.pk)
        if queue is None:
            queue = _debit_queues[team.pk] = _TeamDebitQueue()
        queue.pending.append(mine)
        leading = not queue.running
        queue.running = True
    if not leading:
        mine.done.wait()
    if leading or mine.lead:
        # Run the batch that is waiting now (it starts with our own debit), then hand over to the next waiter.
        with _debit_queues_lock:
            batch = queue.pending[:settings.USAGE_CREDIT_DEBIT_BATCH_MAX]
            del queue.pending[:len(batch)]
        try:
            _run_debit_batch(batch)
        except BaseException as error:  # every debit of the batch failed with it (one transaction)
            for debit in batch:
                debit.error = error
        for debit in batch:
            if debit is not mine:
                debit.done.set()
        with _debit_queues_lock:
            if queue.pending:
                successor = queue.pending[0]
                successor.lead = True
                successor.done.set()
            else:
                queue.running = False
                if len(_debit_queues) > 10_000:
                    _debit_queues.pop(team.pk, None)  # bound memory; an idle team's queue is recreated on demand
    if mine.error is not None:
        raise mine.error
    if mine.outcome is None:  # the function answers every index; anything else is a bug, never a silent success
        raise RuntimeError(f"credit debit batch gave no answer for {reference!r}")
    outcome, balance_after, entry_id = mine.outcome
    if outcome == "insufficient":
        raise InsufficientCreditsError(balance=balance_after, required=amount)
    if outcome == "duplicate":
        raise _DuplicateEntry()
    # Built like a row read from the database (half the CPU of Model(**kwargs), which runs every field's setter);
    # the team and creator we already hold are cached on it so reading them costs no query.
    row = {"id": entry_id, "team_id": team.pk, "delta": -amount, "balance_after": balance_after, "reason": reason,
           "reference": reference, "created_by_id": mine.created_by_id, "note": note[:500], "metadata": {},
           "created": mine.created}
    entry = CreditLedgerEntry.from_db(connection.alias, _ENTRY_ATTNAMES, [row[name] for name in _ENTRY_ATTNAMES])
    entry._state.fields_cache["team"] = team
    if created_by is not None:
        entry._state.fields_cache["created_by"] = created_by
    return balance_after, entry


def credits_signup_grant(*, team: Team, user: User) -> None:
    """SIGNUP_HOOKS entry: every new team starts with SIGNUP_CREDIT_GRANT free credits (once per team)."""
    amount = settings.SIGNUP_CREDIT_GRANT
    if amount > 0:
        credits_grant(team=team, amount=amount, reason=CreditLedgerEntry.Reason.SIGNUP_GRANT,
                      reference=f"team:{team.pk}", created_by=user, note=gettext_noop("Welcome credits"))


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
    expirable = min(unspent_old, max(0, purchased_before - already_expired), credits_balance(team=team))
    if expirable <= 0:
        return None
    return credits_remove(team=team, amount=expirable, reason=CreditLedgerEntry.Reason.EXPIRY,
                          reference=f"expiry:{now.date().isoformat()}", allow_partial=True,
                          note=f"Purchased credits older than {days} days")
