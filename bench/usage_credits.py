"""
Credits: debits per second under 64 concurrent threads on PostgreSQL, all against ONE team's balance (the worst
case: every debit serialises on the same row), with the exact final balance checked.
Target: >= 2,000 debits/s on the 2-core machine. Run: DATABASE_URL=postgres://... python bench/usage_credits.py
"""
import threading
import time

from _usage_common import django_setup, make_team, migrate, require_postgres_and_redis

THREADS = 64
START_BALANCE = 20_000
ATTEMPTS_PER_THREAD = 400  # 25,600 attempts: the balance runs out part-way, so refusals are measured too


def main() -> None:
    django_setup()
    if not require_postgres_and_redis(need_redis=False):
        return
    migrate()
    from django.db import connection

    from usage import selectors, services
    from usage.models import CreditLedgerEntry

    team, _owner, _key = make_team("credits")
    services.credits_grant(team=team, amount=START_BALANCE - 3, reason=CreditLedgerEntry.Reason.PURCHASE,
                           reference="bench")
    counts = {"ok": 0, "refused": 0, "errors": 0}
    lock = threading.Lock()
    barrier = threading.Barrier(THREADS + 1)
    first_refusal = []

    def worker(n: int) -> None:
        ok = refused = errors = 0
        try:
            connection.ensure_connection()
            barrier.wait()
            for i in range(ATTEMPTS_PER_THREAD):
                try:
                    services.credits_remove(team=team, amount=1, reason=CreditLedgerEntry.Reason.USAGE,
                                            reference=f"b:{n}:{i}")
                    ok += 1
                except services.InsufficientCreditsError:
                    if not first_refusal:
                        first_refusal.append(time.perf_counter())
                    refused += 1
        except Exception as exc:  # report, do not hide
            errors += 1
            print(f"thread {n}: {type(exc).__name__}: {exc}")
        finally:
            connection.close()
            with lock:
                counts["ok"] += ok
                counts["refused"] += refused
                counts["errors"] += errors

    threads = [threading.Thread(target=worker, args=(n,)) for n in range(THREADS)]
    for thread in threads:
        thread.start()
    barrier.wait()
    started = time.perf_counter()
    for thread in threads:
        thread.join()
    elapsed = time.perf_counter() - started
    debit_window = (first_refusal[0] if first_refusal else time.perf_counter()) - started
    balance = selectors.credits_balance(team=team)
    ledger_sum = sum(CreditLedgerEntry.objects.filter(team=team).values_list("delta", flat=True))
    exact = counts["ok"] == START_BALANCE and balance == 0 and ledger_sum == 0 and counts["errors"] == 0
    print(f"credits: {THREADS} threads, {THREADS * ATTEMPTS_PER_THREAD} attempts against {START_BALANCE} credits "
          f"on one team (PostgreSQL)")
    print(f"  successful debits: {counts['ok']} (expected {START_BALANCE}), refused: {counts['refused']}, "
          f"errors: {counts['errors']}")
    print(f"  final balance: {balance}, ledger sum: {ledger_sum} -> {'EXACT' if exact else 'MISMATCH'}")
    print(f"  debits/s while credits lasted: {counts['ok'] / debit_window:,.0f} (target >= 2,000)")
    print(f"  attempts/s overall (debits + refusals): {(counts['ok'] + counts['refused']) / elapsed:,.0f}")


if __name__ == "__main__":
    main()
