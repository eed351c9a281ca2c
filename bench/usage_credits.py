"""
Credits: debits per second under 64 concurrent threads on PostgreSQL, all against ONE team's balance (the worst
case: every debit serialises on the same row), with the exact final balance checked.
The 64 threads run in 2 processes x 32 threads, as in the 2 gunicorn workers of `make run` (one Python process would
measure its own GIL rather than the database; more processes than cores measure the scheduler).
USAGE_BENCH_PROCESSES=1 or 4 for other splits.
Target: >= 2,000 debits/s on the 2-core machine. Run: DATABASE_URL=postgres://... python bench/usage_credits.py
"""
import multiprocessing
import os
import threading
import time

from usage_support.common import (apply_bench_env, django_setup, load_average, make_team, migrate,
                                  require_postgres_and_redis)

THREADS = 64
PROCESSES = int(os.environ.get("USAGE_BENCH_PROCESSES", "2"))
START_BALANCE = 20_000
ATTEMPTS_PER_THREAD = 400  # 25,600 attempts: the balance runs out part-way, so refusals are measured too


def run_process(index: int, team_id: int, threads: int, go, results) -> None:
    apply_bench_env()  # production-like: DEBUG off (no query log)
    django_setup()
    from django.db import connection

    from accounts.models import Team
    from usage import services
    from usage.models import CreditLedgerEntry

    team = Team.objects.get(pk=team_id)
    connection.close()
    counts = {"ok": 0, "refused": 0, "errors": 0, "first_refusal": None}
    lock = threading.Lock()
    ready = threading.Barrier(threads + 1)

    def worker(n: int) -> None:
        ok = refused = errors = 0
        first_refusal = None
        try:
            connection.ensure_connection()
            ready.wait()
            go.wait()
            for i in range(ATTEMPTS_PER_THREAD):
                try:
                    services.credits_remove(team=team, amount=1, reason=CreditLedgerEntry.Reason.USAGE,
                                            reference=f"b:{index}:{n}:{i}")
                    ok += 1
                except services.InsufficientCreditsError:
                    first_refusal = first_refusal or time.time()
                    refused += 1
        except Exception as exc:  # report, do not hide
            errors += 1
            print(f"process {index} thread {n}: {type(exc).__name__}: {exc}")
        finally:
            connection.close()
            with lock:
                counts["ok"] += ok
                counts["refused"] += refused
                counts["errors"] += errors
                if first_refusal and (counts["first_refusal"] is None or first_refusal < counts["first_refusal"]):
                    counts["first_refusal"] = first_refusal

    pool = [threading.Thread(target=worker, args=(n,)) for n in range(threads)]
    for thread in pool:
        thread.start()
    ready.wait()
    for thread in pool:
        thread.join()
    results.put(counts)


TARGET_DEBITS_PER_SECOND = 2_000


def main() -> None:
    load_at_start = load_average()
    apply_bench_env()
    django_setup()
    if not require_postgres_and_redis(need_redis=False):
        return
    migrate()
    from django.conf import settings

    from usage import selectors, services
    from usage.models import CreditLedgerEntry

    team, _owner, _key = make_team("credits")
    services.credits_grant(team=team, amount=START_BALANCE - 3, reason=CreditLedgerEntry.Reason.PURCHASE,
                           reference="bench")
    context = multiprocessing.get_context("spawn")
    go = context.Event()
    results = context.Queue()
    per_process = THREADS // PROCESSES
    processes = [context.Process(target=run_process, args=(i, team.pk, per_process, go, results))
                 for i in range(PROCESSES)]
    for process in processes:
        process.start()
    time.sleep(3 + PROCESSES)  # let every process import Django and open its connections
    started = time.time()
    go.set()
    totals = {"ok": 0, "refused": 0, "errors": 0}
    first_refusal = None
    for _ in processes:
        counts = results.get()
        for key in totals:
            totals[key] += counts[key]
        if counts["first_refusal"] and (first_refusal is None or counts["first_refusal"] < first_refusal):
            first_refusal = counts["first_refusal"]
    elapsed = time.time() - started
    for process in processes:
        process.join()
    debit_window = (first_refusal or time.time()) - started
    balance = selectors.credits_balance(team=team)
    ledger_sum = sum(CreditLedgerEntry.objects.filter(team=team).values_list("delta", flat=True))
    exact = totals["ok"] == START_BALANCE and balance == 0 and ledger_sum == 0 and totals["errors"] == 0
    print(f"credits: {THREADS} threads ({PROCESSES} processes x {per_process}), {THREADS * ATTEMPTS_PER_THREAD} "
          f"attempts against {START_BALANCE} credits on ONE team (PostgreSQL)")
    print(f"  successful debits: {totals['ok']} (expected {START_BALANCE}), refused: {totals['refused']}, "
          f"errors: {totals['errors']}")
    print(f"  final balance: {balance}, ledger sum: {ledger_sum} -> {'EXACT' if exact else 'MISMATCH'}")
    rate = totals['ok'] / debit_window
    print(f"  debits/s while credits lasted: {rate:,.0f} (target >= {TARGET_DEBITS_PER_SECOND:,}: "
          f"{rate / TARGET_DEBITS_PER_SECOND:.2f}x -> {'MET' if rate >= TARGET_DEBITS_PER_SECOND and exact else 'NOT MET'})")
    print(f"  combining: {'on' if settings.USAGE_CREDIT_DEBIT_COMBINE else 'off'} (USAGE_CREDIT_DEBIT_COMBINE)")
    print(f"  attempts/s overall (debits + refusals): {(totals['ok'] + totals['refused']) / elapsed:,.0f}")
    print(f"  load average: {load_at_start} at start, {load_average()} at the end (shared machine)")


if __name__ == "__main__":
    main()
