"""The balance never goes below zero under concurrency: real threads on PostgreSQL (skipped on SQLite)."""
import threading
from collections import Counter

import pytest
from django.db import connection

from accounts.tests.factories import TeamFactory
from usage import selectors, services
from usage.models import CreditLedgerEntry

pytestmark = [pytest.mark.postgres, pytest.mark.django_db(transaction=True)]


def _hammer(team, *, threads: int, per_thread: int, amount: int, prefix: str) -> Counter:
    outcomes: Counter = Counter()
    lock = threading.Lock()
    start = threading.Barrier(threads)

    def worker(n: int) -> None:
        local: Counter = Counter()
        try:
            start.wait()
            for i in range(per_thread):
                try:
                    services.credits_remove(team=team, amount=amount, reason=CreditLedgerEntry.Reason.USAGE,
                                            reference=f"{prefix}:{n}:{i}")
                    local["ok"] += 1
                except services.InsufficientCreditsError:
                    local["insufficient"] += 1
        except Exception as exc:  # anything else fails the test below
            local[f"error:{type(exc).__name__}:{exc}"] += 1
        finally:
            connection.close()
            with lock:
                outcomes.update(local)

    pool = [threading.Thread(target=worker, args=(n,)) for n in range(threads)]
    for thread in pool:
        thread.start()
    for thread in pool:
        thread.join()
    return outcomes


def test_32_threads_x_200_debits_against_5000_end_at_exactly_zero():
    team = TeamFactory()
    services.credits_grant(team=team, amount=5000, reason=CreditLedgerEntry.Reason.PURCHASE, reference="pi_bulk")
    outcomes = _hammer(team, threads=32, per_thread=200, amount=1, prefix="t")
    assert outcomes == Counter({"ok": 5000, "insufficient": 6400 - 5000})
    assert selectors.credits_balance(team=team) == 0
    entries = CreditLedgerEntry.objects.filter(team=team, reason=CreditLedgerEntry.Reason.USAGE)
    assert entries.count() == 5000
    assert sum(CreditLedgerEntry.objects.filter(team=team).values_list("delta", flat=True)) == 0
    assert not CreditLedgerEntry.objects.filter(team=team, balance_after__lt=0).exists()
    # Every balance_after from 0 to 4999 appears exactly once: the debits were serialised, none skipped or doubled.
    assert sorted(entries.values_list("balance_after", flat=True)) == list(range(5000))


def test_uneven_debits_leave_the_exact_remainder():
    team = TeamFactory()
    services.credits_grant(team=team, amount=5000, reason=CreditLedgerEntry.Reason.PURCHASE, reference="pi_bulk")
    outcomes = _hammer(team, threads=32, per_thread=60, amount=3, prefix="u")
    # 1,666 debits of 3 fit in 5,000; 2 credits remain and every later debit is refused.
    assert outcomes == Counter({"ok": 1666, "insufficient": 32 * 60 - 1666})
    assert selectors.credits_balance(team=team) == 2


def test_concurrent_replays_of_one_reference_debit_once():
    team = TeamFactory()
    services.credits_grant(team=team, amount=100, reason=CreditLedgerEntry.Reason.PURCHASE, reference="pi_1")
    results = []
    barrier = threading.Barrier(16)

    def worker():
        try:
            barrier.wait()
            entry = services.credits_remove(team=team, amount=7, reason=CreditLedgerEntry.Reason.USAGE,
                                            reference="call:same")
            results.append(entry.pk)
        finally:
            connection.close()

    pool = [threading.Thread(target=worker) for _ in range(16)]
    for thread in pool:
        thread.start()
    for thread in pool:
        thread.join()
    assert len(results) == 16 and len(set(results)) == 1
    assert selectors.credits_balance(team=team) == 93
