"""Shared helpers for the webhook benchmarks (no side effects when run on its own)."""
import hashlib
import hmac
import json
import os
import socket
import statistics
import subprocess
import sys
import time
import uuid
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
PY = str(ROOT / ".venv" / "bin" / "python")
SECRET = "whsec_benchsecret000000000000000000"


def django_setup(settings_module: str = "bench._bench_settings") -> None:
    sys.path.insert(0, str(ROOT))
    os.environ["DJANGO_SETTINGS_MODULE"] = settings_module
    import django

    django.setup()


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def sign(body: str, secret: str = SECRET) -> str:
    ts = int(time.time())
    return f"t={ts},v1=" + hmac.new(secret.encode(), f"{ts}.{body}".encode(), hashlib.sha256).hexdigest()


def endpoint_row(url_base: str):
    """A webhook endpoint row with a known secret (what billing_setup stores), for both views."""
    from django.utils import timezone
    from djstripe.models import WebhookEndpoint

    endpoint_uuid = uuid.uuid4()
    WebhookEndpoint.objects.filter(id="we_bench").delete()
    return WebhookEndpoint.objects.create(
        id="we_bench", livemode=False, created=timezone.now(), url=f"{url_base}/stripe/webhook/{endpoint_uuid}/",
        enabled_events=["*"], secret=SECRET, status="enabled", djstripe_uuid=endpoint_uuid, api_version="",
        djstripe_tolerance=300, stripe_data={},
    )


def start_gunicorn(port: int, env: dict, workers: int = 2) -> subprocess.Popen:
    process = subprocess.Popen(
        [str(ROOT / ".venv" / "bin" / "gunicorn"), "billing_site.wsgi:application", "--bind", f"127.0.0.1:{port}",
         "--workers", str(workers), "--threads", "4", "--log-level", "warning"],
        cwd=ROOT, env={**os.environ, **env, "DJANGO_SETTINGS_MODULE": "bench._bench_settings"},
    )
    import requests

    for _ in range(200):
        try:
            requests.get(f"http://127.0.0.1:{port}/healthz", timeout=1)
            return process
        except requests.RequestException:
            time.sleep(0.1)
    process.terminate()
    raise RuntimeError("gunicorn did not start")


def _load_process(args) -> tuple[list[float], float, int]:
    """
    In a second process (spawned): `concurrency` keep-alive connections (http.client, the lightest client in the
    standard library) POST the signed bodies in order, each index once; `rate` paces the sends. The benchmark
    measures the server: a heavier client (requests) would take a core of the two away from it.
    """
    import http.client
    import threading

    port, path, bodies, concurrency, rate, secret = args
    latencies: list[float] = []
    errors = 0
    lock = threading.Lock()
    next_index = iter(range(len(bodies)))
    start = time.perf_counter()

    def run() -> None:
        nonlocal errors
        local: list[float] = []
        failed = 0
        conn = http.client.HTTPConnection("127.0.0.1", port, timeout=60)
        while True:
            with lock:
                index = next(next_index, None)
            if index is None:
                break
            if rate:
                delay = start + index / rate - time.perf_counter()
                if delay > 0:
                    time.sleep(delay)
            body = bodies[index]
            t0 = time.perf_counter()
            try:
                conn.request("POST", path, body=body.encode(), headers={
                    "Content-Type": "application/json", "Stripe-Signature": sign(body, secret)})
                response = conn.getresponse()
                response.read()
                status = response.status
            except (OSError, http.client.HTTPException):
                status = 0
                conn.close()
                conn = http.client.HTTPConnection("127.0.0.1", port, timeout=60)
            local.append(time.perf_counter() - t0)
            if not 200 <= status < 300:
                failed += 1
        conn.close()
        with lock:
            latencies.extend(local)
            errors += failed

    threads = [threading.Thread(target=run) for _ in range(concurrency)]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join()
    return latencies, time.perf_counter() - start, errors


def post_all(url: str, bodies: list[str], concurrency: int = 8, rate: float | None = None) -> tuple[list[float], float, int]:
    """POST signed bodies from a second process; returns (latencies in seconds, wall time, non-2xx count)."""
    import multiprocessing
    from urllib.parse import urlsplit

    parts = urlsplit(url)
    with multiprocessing.get_context("spawn").Pool(1) as pool:
        return pool.apply(_load_process, ((parts.port, parts.path, bodies, concurrency, rate, SECRET),))


def percentile(values: list[float], p: float) -> float:
    ordered = sorted(values)
    return ordered[min(len(ordered) - 1, int(round(p / 100 * (len(ordered) - 1))))]


def summary(name: str, latencies: list[float], wall: float, errors: int) -> dict:
    figures = {"name": name, "n": len(latencies), "acks_per_s": len(latencies) / wall,
               "p50_ms": percentile(latencies, 50) * 1000, "p99_ms": percentile(latencies, 99) * 1000,
               "mean_ms": statistics.mean(latencies) * 1000, "errors": errors}
    print(f"  {name:<28} n={figures['n']:>5}  {figures['acks_per_s']:8.1f} acks/s  p50 {figures['p50_ms']:7.1f} ms  "
          f"p99 {figures['p99_ms']:7.1f} ms  non-2xx {errors}")
    return figures


def event_body(event_id: str, event_type: str, obj: dict, created: int | None = None) -> str:
    return json.dumps({"id": event_id, "object": "event", "type": event_type, "created": created or int(time.time()),
                       "livemode": False, "api_version": "2026-08-26.dahlia", "pending_webhooks": 1,
                       "request": {"id": None, "idempotency_key": None}, "data": {"object": obj}})
