"""
Metering overhead: the same trivial DRF view with and without `@metered("api_call")`, under gunicorn (2 workers x 4
threads, as `make run`), load from a second process over loopback with keep-alive connections, API-key auth on
both. Rounds alternate the two endpoints to spread the noise of a shared machine. Prints requests/s of each, the
ratio (target >= 0.9) and p50/p99 latency. Needs PostgreSQL and Redis (DATABASE_URL, REDIS_URL).
"""
import os
import statistics
import sys

from _usage_common import (apply_bench_env, django_setup, free_port, generate_load, make_team, migrate,
                           percentile, require_postgres_and_redis, start_gunicorn, stop_process)

ROUNDS = int(os.environ.get("USAGE_BENCH_ROUNDS", "3"))
SECONDS = float(os.environ.get("USAGE_BENCH_SECONDS", "8"))
CONNECTIONS = int(os.environ.get("USAGE_BENCH_CONNECTIONS", "8"))
PLAIN = "/api/v1/demo/ping/"
METERED = "/api/v1/demo/metered-ping/"


def main() -> None:
    apply_bench_env()
    django_setup()
    if not require_postgres_and_redis():
        return
    migrate()
    from usage import metering

    team, _owner, raw_key = make_team("metering")
    headers = {"Authorization": f"Bearer {raw_key}", "Accept": "application/json"}
    port = free_port()
    server = start_gunicorn(port)
    results = {PLAIN: [], METERED: []}
    try:
        for path in (PLAIN, METERED):  # warm both (imports, connections, Lua script load)
            generate_load(port, "GET", path, headers, None, CONNECTIONS, 1.5)
        for round_number in range(ROUNDS):
            order = (PLAIN, METERED) if round_number % 2 == 0 else (METERED, PLAIN)
            for path in order:
                run = generate_load(port, "GET", path, headers, None, CONNECTIONS, SECONDS)
                bad = {k: v for k, v in run["statuses"].items() if k != 200}
                if bad:
                    print(f"  warning: non-200 answers on {path}: {bad}", file=sys.stderr)
                results[path].append(run)
    finally:
        stop_process(server)

    def summary(path):
        runs = results[path]
        rps = [len(r["latencies"]) / r["elapsed"] for r in runs]
        latencies = sorted(x for r in runs for x in r["latencies"])
        return statistics.median(rps), rps, percentile(latencies, 0.5) * 1000, percentile(latencies, 0.99) * 1000

    plain_rps, plain_all, plain_p50, plain_p99 = summary(PLAIN)
    metered_rps, metered_all, metered_p50, metered_p99 = summary(METERED)
    buffered = metering.buffer_length()
    flush = metering.buffer_flush(max_batches=1000)
    print(f"metering overhead: gunicorn 2 workers x 4 threads, {CONNECTIONS} keep-alive connections from a second "
          f"process, {ROUNDS} rounds x {SECONDS:.0f} s per endpoint")
    print(f"  without metering: {plain_rps:,.0f} req/s (rounds: {', '.join(f'{x:,.0f}' for x in plain_all)}), "
          f"p50 {plain_p50:.1f} ms, p99 {plain_p99:.1f} ms")
    print(f"  with metering:    {metered_rps:,.0f} req/s (rounds: {', '.join(f'{x:,.0f}' for x in metered_all)}), "
          f"p50 {metered_p50:.1f} ms, p99 {metered_p99:.1f} ms")
    print(f"  ratio metered/plain (median rounds): {metered_rps / plain_rps:.3f} (target >= 0.9)")
    print(f"  buffered call events after the run: {buffered:,}; flushed to PostgreSQL: {flush.events_inserted:,} "
          f"new rows")
    print(f"  load average: {os.getloadavg()[0]:.1f} on {os.cpu_count()} cores (shared machine)")


if __name__ == "__main__":
    main()
