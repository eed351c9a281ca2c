"""
Metering overhead: the same trivial DRF view with and without `@metered("api_call")`, under gunicorn (2 workers x 4
threads, as `make run`), load from a second process over loopback with keep-alive connections, API-key auth on
both. Short rounds run the two endpoints back to back (alternating which goes first) to follow the drifting load of a
shared machine; the headline ratio is the median of the per-round ratios. Prints requests/s of each, the
ratio (target >= 0.9) and p50/p99 latency. Needs PostgreSQL and Redis (DATABASE_URL, REDIS_URL).
"""
import os
import statistics
import sys

from usage_support.common import (apply_bench_env, django_setup, free_port, generate_load, load_average, make_team,
                                  migrate, percentile, require_postgres_and_redis, start_gunicorn, stop_process)

ROUNDS = int(os.environ.get("USAGE_BENCH_ROUNDS", "10"))
SECONDS = float(os.environ.get("USAGE_BENCH_SECONDS", "3"))
CONNECTIONS = int(os.environ.get("USAGE_BENCH_CONNECTIONS", "8"))
SERVER_THREADS = int(os.environ.get("USAGE_BENCH_SERVER_THREADS", "4"))  # per worker; `make run` uses 4
PLAIN = "/api/v1/demo/ping/"
METERED = "/api/v1/demo/metered-ping/"


def cpu_per_request(raw_key: str, rounds: int = 6, per_round: int = 400) -> tuple[float, float]:
    """CPU time of the web process per request (Django test client in this process), plain vs metered, in us."""
    import time

    from django.test import Client

    client = Client(HTTP_AUTHORIZATION=f"Bearer {raw_key}", HTTP_HOST="127.0.0.1")
    totals = {PLAIN: 0.0, METERED: 0.0}
    for round_number in range(rounds):
        for path in ((PLAIN, METERED) if round_number % 2 == 0 else (METERED, PLAIN)):
            started = time.process_time()
            for _ in range(per_round):
                assert client.get(path).status_code == 200
            totals[path] += time.process_time() - started
    count = rounds * per_round
    return totals[PLAIN] / count * 1e6, totals[METERED] / count * 1e6


TARGET_RATIO = 0.9


def main() -> None:
    load_at_start = load_average()
    apply_bench_env()
    django_setup()
    if not require_postgres_and_redis():
        return
    migrate()
    from usage import metering

    team, _owner, raw_key = make_team("metering")
    headers = {"Authorization": f"Bearer {raw_key}", "Accept": "application/json"}
    port = free_port()
    server = start_gunicorn(port, workers=2, threads=SERVER_THREADS)
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
    plain_cpu, metered_cpu = cpu_per_request(raw_key)
    buffered = metering.buffer_length()
    flush = metering.buffer_flush(max_batches=1000)
    print(f"metering overhead: gunicorn 2 workers x {SERVER_THREADS} threads, {CONNECTIONS} keep-alive connections from a second "
          f"process, {ROUNDS} rounds x {SECONDS:.0f} s per endpoint")
    print(f"  without metering: {plain_rps:,.0f} req/s (rounds: {', '.join(f'{x:,.0f}' for x in plain_all)}), "
          f"p50 {plain_p50:.1f} ms, p99 {plain_p99:.1f} ms")
    print(f"  with metering:    {metered_rps:,.0f} req/s (rounds: {', '.join(f'{x:,.0f}' for x in metered_all)}), "
          f"p50 {metered_p50:.1f} ms, p99 {metered_p99:.1f} ms")
    # Each round runs both endpoints back to back, so a round's ratio compares like with like on a machine whose
    # load drifts; the median of those ratios is the headline figure.
    pair_ratios = sorted(m / p for m, p in zip(metered_all, plain_all))
    median_ratio = statistics.median(pair_ratios)
    total_ratio = sum(metered_all) / sum(plain_all)
    print(f"  ratio metered/plain: median of per-round ratios {median_ratio:.3f}, total requests {total_ratio:.3f}; "
          f"per round: {', '.join(f'{r:.2f}' for r in pair_ratios)}")
    print(f"  vs target >= {TARGET_RATIO}: {median_ratio / TARGET_RATIO:.2f}x of target -> "
          f"{'MET' if median_ratio >= TARGET_RATIO else 'NOT MET'}")
    print(f"  CPU per request in the web process (in-process client, excludes Redis/PostgreSQL servers): plain "
          f"{plain_cpu:,.0f} us, metered {metered_cpu:,.0f} us (+{metered_cpu - plain_cpu:,.0f} us, "
          f"ratio {plain_cpu / metered_cpu:.3f})")
    print(f"  buffered call events after the run: {buffered:,}; flushed to PostgreSQL: {flush.events_inserted:,} "
          f"new rows")
    print(f"  load average: {load_at_start} at start, {load_average()} at the end (shared machine)")


if __name__ == "__main__":
    main()
