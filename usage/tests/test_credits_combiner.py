"""
The debit combiner (usage.services.credits): debits of one team that arrive while a batch runs go to PostgreSQL
together, in arrival order, with the same rule as single debits. Real threads on PostgreSQL (skipped on SQLite).
The batches are made deterministic by holding the first one until the others are queued.
"""
import threading
import time
from collections import Counter

import pytest
from django.db import connection

from accounts.tests.factories import TeamFactory
from usage import selectors, services
from usage.models import CreditLedgerEntry
from usage.services import credits as credits_module

pytestmark = [pytest.mark.postgres, pytest.mark.django_db(transaction=True)]
USAGE = CreditLedgerEntry.Reason.USAGE


@pytest.fixture
def batches(monkeypatch):
    """Records each batch sent to the database; the first one waits for `release` (so the next ones queue up)."""
    sent: list[list[tuple[int, str]]] = []
    release = threading.Event()
    original = credits_module._run_debit_batch

    def recording(batch):
        sent.append([(d.amount, d.reference) for d in batch])
        if len(sent) == 1:
            assert release.wait(30)
        return original(batch)

    monkeypatch.setattr(credits_module, "_run_debit_batch", recording)
    recording.sent = sent
    recording.release = release
    return recording


def _queued(team_id: int, count: int) -> None:
    """Wait until `count` debits are queued behind the running batch of the team."""
    deadline = time.monotonic() + 30
    while time.monotonic() < deadline:
        queue = credits_module._debit_queues.get(team_id)
        if queue is not None and len(queue.pending) >= count:
            return
        time.sleep(0.01)
    raise AssertionError("debits did not queue")


def _debit_in_thread(team, amount, reference, results, key=None):
    def run():
        try:
            entry = services.credits_remove(team=team, amount=amount, reason=USAGE, reference=reference)
            results[key or reference] = ("ok", entry.pk, entry.balance_after)
        except services.InsufficientCreditsError as error:
            results[key or reference] = ("insufficient", error.extra.get("balance"))
        except Exception as error:  # noqa: BLE001 - reported to the test
            results[key or reference] = ("error", repr(error))
        finally:
            connection.close()

    thread = threading.Thread(target=run)
    thread.start()
    return thread


def test_queued_debits_go_in_one_batch_in_order_with_refusals_and_replays(batches):
    team = TeamFactory()
    services.credits_grant(team=team, amount=10, reason=CreditLedgerEntry.Reason.PURCHASE, reference="pi_1")
    results: dict = {}
    first = _debit_in_thread(team, 1, "a", results)
    while not batches.sent:
        time.sleep(0.01)
    # Queued behind the held batch, in this order: fits (9 -> 5), too big (5 < 6), a replay of "b" within the same
    # batch, fits exactly (5 -> 0), then nothing is left.
    threads = []
    for count, (amount, reference, key) in enumerate(
            [(4, "b", "b"), (6, "c", "c"), (4, "b", "b-again"), (5, "d", "d"), (1, "e", "e")], start=1):
        threads.append(_debit_in_thread(team, amount, reference, results, key=key))
        _queued(team.pk, count)
    batches.release.set()
    for thread in [first, *threads]:
        thread.join(30)
    assert batches.sent == [[(1, "a")], [(4, "b"), (6, "c"), (4, "b"), (5, "d"), (1, "e")]]
    assert results["a"][0] == "ok" and results["a"][2] == 9
    assert results["b"][0] == "ok" and results["b"][2] == 5
    assert results["c"] == ("insufficient", 5)
    assert results["b-again"][:2] == ("ok", results["b"][1])  # the replay answers with the first entry
    assert results["d"][0] == "ok" and results["d"][2] == 0
    assert results["e"] == ("insufficient", 0)
    assert selectors.credits_balance(team=team) == 0
    usage = CreditLedgerEntry.objects.filter(team=team, reason=USAGE).order_by("balance_after")
    assert [(e.reference, e.delta, e.balance_after) for e in usage] == [("d", -5, 0), ("b", -4, 5), ("a", -1, 9)]


def test_a_failed_batch_fails_each_of_its_debits_and_the_next_batch_runs(batches, monkeypatch):
    team = TeamFactory()
    services.credits_grant(team=team, amount=10, reason=CreditLedgerEntry.Reason.PURCHASE, reference="pi_1")
    results: dict = {}
    first = _debit_in_thread(team, 1, "a", results)
    while not batches.sent:
        time.sleep(0.01)
    second = _debit_in_thread(team, 1, "b", results)
    third = _debit_in_thread(team, 1, "c", results)
    _queued(team.pk, 2)
    original = credits_module._run_debit_batch

    def failing_second_batch(batch):
        if len(batches.sent) == 1:
            batches.sent.append([(d.amount, d.reference) for d in batch])
            raise RuntimeError("database went away")
        return original(batch)

    # The first batch is already inside the recorder; the next call (the queued pair) fails.
    monkeypatch.setattr(credits_module, "_run_debit_batch", failing_second_batch)
    batches.release.set()
    for thread in (first, second, third):
        thread.join(30)
    assert results["a"][0] == "ok"
    assert results["b"] == results["c"] == ("error", "RuntimeError('database went away')")
    # The queue is free again: the next debit runs (as a batch of one).
    services.credits_remove(team=team, amount=2, reason=USAGE, reference="d")
    assert selectors.credits_balance(team=team) == 7
    assert not credits_module._debit_queues[team.pk].running


def test_64_threads_exact_balance_no_overdraft_with_combining():
    """The issue-12 shape: 64 threads on one team, the balance runs out part-way."""
    team = TeamFactory()
    services.credits_grant(team=team, amount=3000, reason=CreditLedgerEntry.Reason.PURCHASE, reference="pi_bulk")
    outcomes: Counter = Counter()
    lock = threading.Lock()
    start = threading.Barrier(64)
    sent: list[int] = []
    original = credits_module._run_debit_batch

    def counting(batch):
        sent.append(len(batch))
        return original(batch)

    credits_module._run_debit_batch = counting
    try:
        def worker(n: int) -> None:
            local: Counter = Counter()
            try:
                start.wait()
                for i in range(60):
                    try:
                        services.credits_remove(team=team, amount=1, reason=USAGE, reference=f"t:{n}:{i}")
                        local["ok"] += 1
                    except services.InsufficientCreditsError:
                        local["insufficient"] += 1
            except Exception as exc:  # noqa: BLE001 - fails the test below
                local[f"error:{exc!r}"] += 1
            finally:
                connection.close()
                with lock:
                    outcomes.update(local)

        pool = [threading.Thread(target=worker, args=(n,)) for n in range(64)]
        for thread in pool:
            thread.start()
        for thread in pool:
            thread.join()
    finally:
        credits_module._run_debit_batch = original
    assert outcomes == Counter({"ok": 3000, "insufficient": 64 * 60 - 3000})
    assert sum(sent) == 64 * 60  # every debit went through a batch
    assert selectors.credits_balance(team=team) == 0
    assert sum(CreditLedgerEntry.objects.filter(team=team).values_list("delta", flat=True)) == 0
    entries = CreditLedgerEntry.objects.filter(team=team, reason=USAGE)
    # Serialised exactly: every balance from 2,999 down to 0 was left by exactly one debit.
    assert sorted(entries.values_list("balance_after", flat=True)) == list(range(3000))


def test_a_debit_inside_a_transaction_is_not_combined(batches):
    from django.db import transaction

    team = TeamFactory()
    services.credits_grant(team=team, amount=5, reason=CreditLedgerEntry.Reason.PURCHASE, reference="pi_1")
    with pytest.raises(RuntimeError):
        with transaction.atomic():
            services.credits_remove(team=team, amount=2, reason=USAGE, reference="in-tx")
            raise RuntimeError("caller rolls back")
    assert batches.sent == []  # the single-debit path, part of the caller's transaction
    assert selectors.credits_balance(team=team) == 5
    assert not CreditLedgerEntry.objects.filter(team=team, reference="in-tx").exists()


def test_the_returned_entry_is_the_stored_row():
    team = TeamFactory()
    services.credits_grant(team=team, amount=5, reason=CreditLedgerEntry.Reason.PURCHASE, reference="pi_1")
    entry = services.credits_remove(team=team, amount=2, reason=USAGE, reference="call:1", note="why")
    stored = CreditLedgerEntry.objects.get(pk=entry.pk)
    fields = ("team_id", "delta", "balance_after", "reason", "reference", "created_by_id", "note", "metadata",
              "created")
    assert {f: getattr(entry, f) for f in fields} == {f: getattr(stored, f) for f in fields}
    assert entry.team == team and not entry._state.adding
