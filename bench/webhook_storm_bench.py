"""
Storm: renewal day. N events (default 10,000: invoice.created, invoice.paid, customer.subscription.updated for
~N/3 customers; `--shape renewal`: each invoice's finalized/paid/payment_succeeded in one second) are delivered
signed to the project's endpoint under gunicorn as fast as the senders go, plus 10% duplicate re-deliveries, then
applied by two Celery worker processes (prefork, concurrency 2) consuming Redis.
`--mode backlog` (default) times the workers alone on the stored backlog; `--mode live` times from the first
delivery with the workers applying while the senders and gunicorn share the machine's two cores. `--apply-batch 1`
makes the workers apply every event alone (as before drains batched them), for a before/after on one machine.
Prints the time until every event is acknowledged and until every event is applied, with counts proving none lost
(one stored row per distinct event id, all processed) and none applied twice (one attempt each). No assertions.

Needs DATABASE_URL (PostgreSQL) and REDIS_URL. The offline emulator serves the re-retrieves.
"""
import argparse
import os
import random
import subprocess
import sys
import time
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent))
sys.path.insert(0, str(Path(__file__).resolve().parent.parent))
import _webhook_common as common  # noqa: E402


def main() -> int:
    parser = argparse.ArgumentParser()
    parser.add_argument("-n", type=int, default=10000)
    parser.add_argument("--timeout", type=float, default=900)
    parser.add_argument("--mode", choices=["backlog", "live"], default="backlog",
                        help="backlog: deliver everything, then start the workers and time them (the default); "
                             "live: workers apply while the events arrive")
    parser.add_argument("--shape", choices=["spread", "renewal"], default="spread",
                        help="spread: one event per object (invoice.created, invoice.paid, subscription.updated for "
                             "N/3 customers; the default); renewal: per customer a subscription.updated and its "
                             "invoice's created, then finalized, paid and payment_succeeded in one same second "
                             "(N/5 customers), the ties a real renewal day has")
    parser.add_argument("--apply-batch", type=int, default=None,
                        help="BILLING_WEBHOOK_APPLY_BATCH for the workers (default: the settings' value; 1 applies "
                             "every event alone, as before batches)")
    args = parser.parse_args()
    print(f"storm: load average at the start {os.getloadavg()[0]:.1f} on {os.cpu_count()} cores")
    if not os.environ.get("DATABASE_URL") or not os.environ.get("REDIS_URL"):
        print("webhook_storm_bench: set DATABASE_URL (PostgreSQL) and REDIS_URL; skipped.")
        return 0
    from stripe_emulator.testing import start_emulator

    emulator = start_emulator(port=0, webhook_timeout=1.0)
    os.environ["STRIPE_API_BASE"] = emulator.url
    common.django_setup()
    from django.core.management import call_command

    call_command("migrate", verbosity=0)
    from django.db.models import Sum

    from billing.models import WebhookEvent
    from billing.stripe_gateway._core import client
    from billing_site.celery import app

    app.control.purge()
    WebhookEvent.objects.all().delete()
    sdk = client()
    n_customers = max(1, args.n // (3 if args.shape == "spread" else 5))
    t = time.perf_counter()
    with ThreadPoolExecutor(8) as pool:
        customers = list(pool.map(
            lambda i: sdk.v1.customers.create(params={"email": f"storm{i}@example.com"}).to_dict(), range(n_customers)))
    print(f"storm: {n_customers} customers created in the emulator in {time.perf_counter() - t:.1f} s")
    # A renewal day's customers are already mirrored (they were created through the gateway, which mirrors what it
    # creates): mirror them the same way before the storm, so the storm measures applying events, not first syncs.
    from billing.services.mirror import mirror_store

    t = time.perf_counter()
    for customer in customers:
        mirror_store(kind="customer", data=customer)
    print(f"storm: {n_customers} customers mirrored beforehand in {time.perf_counter() - t:.1f} s")
    emulator.emulator.request_log = []  # from here on every entry is a call made while applying the storm
    run = os.urandom(3).hex()
    bodies, ids = [], []
    now = int(time.time())
    for i in range(args.n):
        customer = customers[i % n_customers]
        if args.shape == "spread":
            kind = (i // n_customers) % 3
            if kind == 0:
                obj = {"id": f"in_{run}_{i}", "object": "invoice", "customer": customer["id"], "status": "draft",
                       "amount_due": 9900, "currency": "usd"}
                event_type = "invoice.created"
            elif kind == 1:
                obj = {"id": f"in_{run}_{i}", "object": "invoice", "customer": customer["id"], "status": "paid",
                       "amount_paid": 9900, "currency": "usd"}
                event_type = "invoice.paid"
            else:
                obj = {"id": f"sub_{run}_{i}", "object": "subscription", "customer": customer["id"],
                       "status": "active", "items": {"object": "list", "data": []}}
                event_type = "customer.subscription.updated"
            created = now
        else:
            # Round k of 5 over all customers: the subscription moves, its invoice is created, then (a second
            # later, all in one second) finalized, paid and payment_succeeded.
            step, c = divmod(i, n_customers)
            invoice = {"id": f"in_{run}_{c}", "object": "invoice", "customer": customer["id"], "currency": "usd",
                       "amount_due": 9900}
            event_type, obj, created = [
                ("customer.subscription.updated", {"id": f"sub_{run}_{c}", "object": "subscription",
                                                   "customer": customer["id"], "status": "active",
                                                   "items": {"object": "list", "data": []}}, now),
                ("invoice.created", {**invoice, "status": "draft"}, now),
                ("invoice.finalized", {**invoice, "status": "open"}, now + 1),
                ("invoice.paid", {**invoice, "status": "paid", "amount_paid": 9900}, now + 1),
                ("invoice.payment_succeeded", {**invoice, "status": "paid", "amount_paid": 9900}, now + 1),
            ][min(step, 4)]
        ids.append(f"evt_storm_{run}_{i}")
        bodies.append(common.event_body(ids[-1], event_type, obj, created=created))
    duplicates = random.Random(7).sample(bodies, k=args.n // 10)

    port = common.free_port()
    base = f"http://127.0.0.1:{port}"
    endpoint = common.endpoint_row(base)
    env = {**os.environ, "STRIPE_API_BASE": emulator.url, "DJANGO_SETTINGS_MODULE": "bench._bench_settings"}
    if args.apply_batch is not None:
        env["BILLING_WEBHOOK_APPLY_BATCH"] = str(args.apply_batch)
    from django.conf import settings

    apply_batch = env.get("BILLING_WEBHOOK_APPLY_BATCH", settings.BILLING_WEBHOOK_APPLY_BATCH)
    print(f"storm: shape {args.shape}; workers apply up to {apply_batch} events per transaction "
          f"(BILLING_WEBHOOK_APPLY_BATCH)")
    server = common.start_gunicorn(port, {"STRIPE_API_BASE": emulator.url}, workers=2)
    log = open("/tmp/webhook_storm_worker.log", "w")
    worker = None

    def start_worker() -> subprocess.Popen:
        return subprocess.Popen(
            [str(common.ROOT / ".venv" / "bin" / "celery"), "-A", "billing_site", "worker", "--concurrency", "2",
             "--pool", "prefork", "-Q", "billing-bench", "--loglevel", "WARNING", "-n", f"storm-{run}@%h",
             "--without-gossip", "--without-mingle", "--without-heartbeat"],
            cwd=common.ROOT, env=env, stdout=log, stderr=subprocess.STDOUT,
        )

    def wait_applied(t0: float) -> tuple[int, float]:
        # Only this run's rows exist (the table was emptied): "none pending or failed" is an index probe, where
        # counting 10,000 ids every poll would take a good share of the two cores the workers are measured on.
        deadline = time.perf_counter() + args.timeout
        while time.perf_counter() < deadline:
            if not WebhookEvent.objects.filter(status__in=["pending", "failed", "processing"]).exists():
                break
            time.sleep(0.25)
        elapsed = time.perf_counter() - t0
        return WebhookEvent.objects.filter(stripe_event_id__in=ids, status="processed").count(), elapsed

    try:
        url = f"{base}/stripe/webhook/{endpoint.djstripe_uuid}/"
        if args.mode == "backlog":
            # Renewal day as the workers see it: the events are all stored (acknowledged to Stripe) before the two
            # worker processes start, so the figure is the workers' apply time alone, not shared with the senders.
            t0 = time.perf_counter()
            latencies, wall, errors = common.post_all(url, bodies + duplicates, concurrency=16)
            print(f"storm: {len(bodies)} events + {len(duplicates)} duplicate deliveries acknowledged in "
                  f"{time.perf_counter() - t0:.1f} s ({len(latencies) / wall:.0f} acks/s, p99 "
                  f"{common.percentile(latencies, 99) * 1000:.0f} ms, non-2xx {errors}); workers not started yet")
            time.sleep(1)
            t1 = time.perf_counter()
            worker = start_worker()
            processed, applied = wait_applied(t1)
            label = "from the workers' start (backlog of stored events)"
        else:
            worker = start_worker()
            time.sleep(3)  # the worker is up before the first delivery
            t1 = time.perf_counter()
            latencies, wall, errors = common.post_all(url, bodies + duplicates, concurrency=16)
            print(f"storm: {len(bodies)} events + {len(duplicates)} duplicate deliveries acknowledged in "
                  f"{time.perf_counter() - t1:.1f} s ({len(latencies) / wall:.0f} acks/s, p99 "
                  f"{common.percentile(latencies, 99) * 1000:.0f} ms, non-2xx {errors}), workers applying meanwhile")
            processed, applied = wait_applied(t1)
            label = "from the first delivery (senders, gunicorn and workers share the 2 cores)"
        rows = WebhookEvent.objects.filter(stripe_event_id__in=ids)
        attempts = rows.aggregate(total=Sum("attempts"))["total"] or 0
        print(f"storm [{args.mode}]: all {processed} applied in {applied:.1f} s {label} "
              f"({processed / applied:.0f} events/s; target <= 20 s)"
              if processed >= len(ids) else f"storm: only {processed} of {len(ids)} applied within {args.timeout:.0f} s")
        api_calls = len(emulator.emulator.request_log)
        print(f"storm: Stripe API calls made while applying: {api_calls} = {api_calls / len(ids):.3f} per event "
              f"(goal well under 0.1)")
        print(f"storm: load average at the end {os.getloadavg()[0]:.1f} / {os.getloadavg()[1]:.1f} (1 / 5 min) on "
              f"{os.cpu_count()} cores")
        print(f"storm counts: distinct events sent {len(ids)}, rows stored {rows.count()}, processed {processed}, "
              f"failed/parked {rows.exclude(status='processed').count()}, total attempts {attempts} "
              f"(= events → none applied twice), lost {len(ids) - rows.count()}")
    finally:
        if worker is not None:
            worker.terminate()
            worker.wait(20)
        server.terminate()
        server.wait(10)
        log.close()
        emulator.stop()
    return 0


if __name__ == "__main__":
    sys.exit(main())
