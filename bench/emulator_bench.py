"""Stripe emulator benchmark: requests/second and latency percentiles over loopback with the official SDK.

    .venv/bin/python bench/emulator_bench.py [-n 1000] [--url http://127.0.0.1:12111]

Without --url an emulator is started in this process (server threads share the GIL with the client, so
figures are a lower bound of what a separate `python -m stripe_emulator` process serves).
Each benchmark is a function `(client, n) -> list[float]` (seconds per operation) in BENCHMARKS.
"""
from __future__ import annotations

import argparse
import os
import statistics
import sys
import time
from typing import Callable

sys.path.insert(0, os.path.dirname(os.path.dirname(os.path.abspath(__file__))))

import stripe  # noqa: E402

from stripe_emulator.testing import start_emulator  # noqa: E402


def bench_customer_create(client: stripe.StripeClient, n: int) -> list[float]:
    timings = []
    for i in range(n):
        t0 = time.perf_counter()
        client.v1.customers.create(params={"email": f"bench{i}@example.com", "metadata": {"team_id": str(i)}})
        timings.append(time.perf_counter() - t0)
    return timings


def bench_payment_intent_confirm(client: stripe.StripeClient, n: int) -> list[float]:
    timings = []
    for _ in range(n):
        t0 = time.perf_counter()
        client.v1.payment_intents.create(params={"amount": 1999, "currency": "usd", "payment_method": "pm_card_visa",
                                                 "confirm": True})
        timings.append(time.perf_counter() - t0)
    return timings


def bench_checkout_completion(client: stripe.StripeClient, n: int) -> list[float]:
    """(EMU-B) A full Checkout: create the session, complete it through the control endpoint the hosted page
    posts to (card 4242, PaymentIntent + charge + events + 303), retrieve it. Three requests per operation."""
    import urllib.request

    base = client._requestor.base_addresses["api"]  # type: ignore[attr-defined]
    price = client.v1.prices.create(params={"currency": "usd", "unit_amount": 1500, "product_data": {"name": "Bench"}})

    class _NoRedirect(urllib.request.HTTPRedirectHandler):
        def redirect_request(self, *args, **kwargs):  # type: ignore[no-untyped-def]
            return None

    opener = urllib.request.build_opener(_NoRedirect)
    timings = []
    for _ in range(n):
        t0 = time.perf_counter()
        session = client.v1.checkout.sessions.create(params={
            "mode": "payment", "line_items": [{"price": price.id, "quantity": 1}],
            "success_url": "https://example.com/ok?s={CHECKOUT_SESSION_ID}", "customer_email": "bench@example.com"})
        req = urllib.request.Request(f"{base}/_emulator/checkout_sessions/{session.id}/complete",
                                     data=b"card_number=4242424242424242", method="POST")
        try:
            opener.open(req, timeout=10)
        except urllib.error.HTTPError as exc:  # the 303 to success_url
            if exc.code != 303:
                raise
        done = client.v1.checkout.sessions.retrieve(session.id)
        timings.append(time.perf_counter() - t0)
        if done.status != "complete":
            raise RuntimeError(f"checkout {session.id} did not complete: {done.status}")
    return timings


BENCHMARKS: dict[str, Callable[[stripe.StripeClient, int], list[float]]] = {
    "customer create": bench_customer_create,
    "payment intent create+confirm": bench_payment_intent_confirm,
    "checkout create+complete+retrieve": bench_checkout_completion,
}


def report(name: str, timings: list[float]) -> None:
    ordered = sorted(timings)
    p50 = ordered[len(ordered) // 2] * 1000
    p99 = ordered[min(len(ordered) - 1, int(len(ordered) * 0.99))] * 1000
    rps = len(timings) / sum(timings)
    print(f"{name:32s} n={len(timings):5d}  {rps:8.0f} req/s  p50 {p50:6.2f} ms  p99 {p99:6.2f} ms  "
          f"mean {statistics.mean(timings) * 1000:6.2f} ms")


def main() -> int:
    ap = argparse.ArgumentParser()
    ap.add_argument("-n", type=int, default=1000)
    ap.add_argument("--url", default=None, help="benchmark a running emulator instead of an in-process one")
    ap.add_argument("--only", default=None, help="substring of the benchmark name to run")
    args = ap.parse_args()
    emu = None
    url = args.url
    if url is None:
        emu = start_emulator()
        url = emu.url
    client = stripe.StripeClient("sk_test_bench", base_addresses={"api": url}, max_network_retries=0)
    try:
        client.v1.customers.create()  # warm up: connection, param specs, imports
        for name, fn in BENCHMARKS.items():
            if args.only and args.only not in name:
                continue
            report(name, fn(client, args.n))
    finally:
        if emu is not None:
            emu.stop()
    return 0


if __name__ == "__main__":
    sys.exit(main())
