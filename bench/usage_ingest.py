"""
Ingest: usage events per second through POST /api/v1/usage/events/ in batches of 1,000, each event with its own
idempotency key, under gunicorn (2 workers x 4 threads), from a second process with 2 concurrent clients.
Also: the same batches sent again (all duplicates: answered with the originals, nothing counted twice).
Target: >= 5,000 events/s. Needs PostgreSQL (DATABASE_URL); Redis optional.
"""
import json
import os
import time
import uuid

from usage_support.common import (apply_bench_env, django_setup, free_port, load_average, make_team, migrate,
                                  require_postgres_and_redis, start_gunicorn, stop_process)

BATCH = 1000
BATCHES = int(os.environ.get("USAGE_BENCH_INGEST_BATCHES", "40"))
CLIENTS = 2


def send_batches(args) -> dict:
    """In a second process: CLIENTS threads posting the given batches over keep-alive connections."""
    import http.client
    import threading

    port, headers, bodies = args
    statuses: dict[int, int] = {}
    created = duplicates = 0
    lock = threading.Lock()
    queue = list(bodies)

    def run() -> None:
        nonlocal created, duplicates
        conn = http.client.HTTPConnection("127.0.0.1", port, timeout=120)
        while True:
            with lock:
                if not queue:
                    break
                body = queue.pop()
            conn.request("POST", "/api/v1/usage/events/", body=body, headers=headers)
            response = conn.getresponse()
            payload = json.loads(response.read())
            with lock:
                statuses[response.status] = statuses.get(response.status, 0) + 1
                created += payload.get("created", 0)
                duplicates += payload.get("duplicates", 0)
        conn.close()

    threads = [threading.Thread(target=run) for _ in range(CLIENTS)]
    started = time.perf_counter()
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join()
    return {"elapsed": time.perf_counter() - started, "statuses": statuses, "created": created,
            "duplicates": duplicates}


def main() -> None:
    import multiprocessing

    load_at_start = load_average()
    apply_bench_env()
    django_setup()
    if not require_postgres_and_redis(need_redis=False):
        return
    migrate()
    from usage.models import UsageDailyTotal

    team, _owner, raw_key = make_team("ingest")
    headers = {"Authorization": f"Bearer {raw_key}", "Content-Type": "application/json"}
    run_id = uuid.uuid4().hex[:8]
    bodies = [
        json.dumps({"events": [{"idempotency_key": f"{run_id}-{b}-{i}", "metric": "api_call", "quantity": 1}
                               for i in range(BATCH)]}).encode()
        for b in range(BATCHES)
    ]
    port = free_port()
    server = start_gunicorn(port)
    try:
        with multiprocessing.get_context("spawn").Pool(1) as pool:
            pool.apply(send_batches, ((port, headers, bodies[:2]),))  # warm up (2 batches, counted below)
            first = pool.apply(send_batches, ((port, headers, bodies[2:]),))
            repeat = pool.apply(send_batches, ((port, headers, bodies),))
    finally:
        stop_process(server)
    stored = sum(UsageDailyTotal.objects.filter(team=team).values_list("quantity", flat=True))
    new_events = first["created"]
    print(f"ingest: batches of {BATCH} events with idempotency keys, {CLIENTS} clients from a second process, "
          f"gunicorn 2 workers x 4 threads (PostgreSQL)")
    print(f"  new events: {new_events:,} in {first['elapsed']:.2f} s -> {new_events / first['elapsed']:,.0f} "
          f"events/s (target >= 5,000); answers {first['statuses']}")
    print(f"  repeated batches (all duplicates): {repeat['duplicates']:,} in {repeat['elapsed']:.2f} s -> "
          f"{repeat['duplicates'] / repeat['elapsed']:,.0f} events/s; created on repeat: {repeat['created']}")
    print(f"  stored total: {stored:,} (expected {BATCHES * BATCH:,}) -> "
          f"{'EXACT' if stored == BATCHES * BATCH and repeat['created'] == 0 else 'MISMATCH'}")
    print(f"  load average: {load_at_start} at start, {load_average()} at the end (shared machine)")


if __name__ == "__main__":
    main()
