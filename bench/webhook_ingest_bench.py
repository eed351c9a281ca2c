"""
Webhook ingest: the same N signed events posted to (a) the project's endpoint (verify, store, enqueue, 2xx) and
(b) dj-stripe's stock synchronous view (verify, then process inline: it re-retrieves each object from Stripe),
both under gunicorn with the same workers, same machine, same run. Prints acks/s, p50/p99 and the ratio, then the
project's endpoint paced at 200 events/s (the p99 target). No assertions: figures only.

Needs DATABASE_URL (PostgreSQL) and REDIS_URL; uses the offline emulator as Stripe. `-n` events (default 1000).
"""
import argparse
import os
import statistics
import sys
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent))
sys.path.insert(0, str(Path(__file__).resolve().parent.parent))
import _webhook_common as common  # noqa: E402


def main() -> int:
    parser = argparse.ArgumentParser()
    parser.add_argument("-n", type=int, default=1000)
    parser.add_argument("--workers", type=int, default=2)
    parser.add_argument("--concurrency", type=int, default=8)
    parser.add_argument("--rounds", type=int, default=3)
    args = parser.parse_args()
    if not os.environ.get("DATABASE_URL") or not os.environ.get("REDIS_URL"):
        print("webhook_ingest_bench: set DATABASE_URL (PostgreSQL) and REDIS_URL; skipped.")
        return 0
    from stripe_emulator.testing import start_emulator

    emulator = start_emulator(port=0)
    os.environ["STRIPE_API_BASE"] = emulator.url
    common.django_setup()
    from django.core.management import call_command

    call_command("migrate", verbosity=0)
    from billing.models import WebhookEvent
    from billing.stripe_gateway._core import client
    from billing_site.celery import app

    sdk = client()
    customers = [sdk.v1.customers.create(params={"email": f"bench{i}@example.com"}).to_dict() for i in range(50)]
    port = common.free_port()
    base = f"http://127.0.0.1:{port}"
    endpoint = common.endpoint_row(base)
    # dj-stripe's stock view runs without the project's memo of dj-stripe's account lookups (billing/services/mirror.py):
    # the comparison is against dj-stripe as shipped. The project's endpoint never calls dj-stripe, so it is unaffected.
    env = {"STRIPE_API_BASE": emulator.url, "BILLING_DJSTRIPE_ACCOUNT_MEMO": "0"}
    server = common.start_gunicorn(port, env, workers=args.workers)
    try:
        run = os.urandom(4).hex()
        print(f"webhook ingest: {args.rounds} rounds of {args.n} (ours) and {max(args.n // 3, 100)} (stock) signed "
              f"customer.updated events, gunicorn {args.workers} workers x 4 threads, {args.concurrency} keep-alive "
              f"senders in a second process; load average {os.getloadavg()[0]:.1f} at the start")
        # Rounds alternate which side goes first, to follow the drifting load of a shared machine; the headline is the
        # median of the per-round ratios, with the totals beside it.
        rounds = args.rounds
        stock_n = max(args.n // 3, 100)  # the stock view is ~10x slower: fewer events keep its rounds as long
        ours = [[common.event_body(f"evt_ours_{run}_{r}_{i}", "customer.updated", customers[i % 50])
                 for i in range(args.n)] for r in range(rounds)]
        stock = [[common.event_body(f"evt_stock_{run}_{r}_{i}", "customer.updated", customers[i % 50])
                  for i in range(stock_n)] for r in range(rounds)]
        # Warm both paths (connections, imports, caches) before measuring.
        warm = [common.event_body(f"evt_warm_{run}_{i}", "customer.updated", customers[i % 50]) for i in range(40)]
        common.post_all(f"{base}/stripe/webhook/{endpoint.djstripe_uuid}/", warm[:20], args.concurrency)
        common.post_all(f"{base}/djstripe/webhook/{endpoint.djstripe_uuid}/", warm[20:], args.concurrency)
        ours_url = f"{base}/stripe/webhook/{endpoint.djstripe_uuid}/"
        stock_url = f"{base}/djstripe/webhook/{endpoint.djstripe_uuid}/"
        results = {"ours": [], "stock": []}
        for r in range(rounds):
            order = [("ours", ours_url, ours[r]), ("stock", stock_url, stock[r])]
            for name, url, bodies in (order if r % 2 == 0 else order[::-1]):
                results[name].append(common.post_all(url, bodies, args.concurrency))
        merged = {name: ([lat for latencies, _, _ in runs for lat in latencies], sum(w for _, w, _ in runs),
                         sum(e for _, _, e in runs)) for name, runs in results.items()}
        a = common.summary("project endpoint (async)", *merged["ours"])
        b = common.summary("dj-stripe stock view (sync)", *merged["stock"])
        per_round = sorted((len(o[0]) / o[1]) / (len(k[0]) / k[1]) for o, k in zip(results["ours"], results["stock"]))
        print(f"  ratio (acks/s ours / stock): median of {rounds} rounds {statistics.median(per_round):.1f}x "
              f"(rounds {', '.join(f'{x:.1f}' for x in per_round)}; totals {a['acks_per_s'] / b['acks_per_s']:.1f}x; "
              f"target >= 8x)   p99 ours {a['p99_ms']:.1f} ms vs stock {b['p99_ms']:.1f} ms")
        paced = [common.event_body(f"evt_paced_{run}_{i}", "customer.updated", customers[i % 50])
                 for i in range(min(args.n, 2000))]
        paced_figures = common.summary("project endpoint @200/s", *common.post_all(
            f"{base}/stripe/webhook/{endpoint.djstripe_uuid}/", paced, args.concurrency, rate=200.0))
        print(f"  p99 at 200 events/s: {paced_figures['p99_ms']:.1f} ms (target <= 10 ms); load average "
              f"{os.getloadavg()[0]:.1f} at the end on {os.cpu_count()} cores")
    finally:
        server.terminate()
        server.wait(10)
        app.control.purge()  # the enqueued processing tasks are not part of this benchmark
        WebhookEvent.objects.filter(stripe_event_id__startswith="evt_").filter(
            stripe_event_id__contains="_" + run + "_").delete()
        emulator.stop()
    return 0


if __name__ == "__main__":
    sys.exit(main())
