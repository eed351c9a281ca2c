"""Webhook delivery: a worker thread per endpoint, never the API request thread.

Each endpoint's first attempts go out in event order. A failed attempt (non-2xx, timeout, refused)
is re-scheduled with Stripe's exponential backoff (1h, 2h, 4h, ... capped at 1 day, up to 3 days)
multiplied by `retry_scale`, so tests see retries within milliseconds. A hanging receiver only
stalls its own endpoint's worker (bounded by `timeout`). Every attempt is recorded.
"""
from __future__ import annotations

import hashlib
import heapq
import hmac
import itertools
import json
import threading
import time
import urllib.error
import urllib.request
from typing import Any

from .state import new_id

# Live-mode schedule in seconds; the total stays under Stripe's 3 days.
RETRY_SCHEDULE = [3600, 7200, 14400, 28800, 57600, 86400, 86400]


def sign(payload: str, secret: str, timestamp: int) -> str:
    mac = hmac.new(secret.encode("utf-8"), f"{timestamp}.{payload}".encode("utf-8"), hashlib.sha256)
    return f"t={timestamp},v1={mac.hexdigest()}"


def event_matches(endpoint: dict[str, Any], event_type: str) -> bool:
    enabled = endpoint.get("enabled_events") or []
    return "*" in enabled or event_type in enabled


class _Job:
    __slots__ = ("event_id", "event_type", "payload", "attempt")

    def __init__(self, event_id: str, event_type: str, payload: str) -> None:
        self.event_id, self.event_type, self.payload, self.attempt = event_id, event_type, payload, 0


class _EndpointWorker(threading.Thread):
    def __init__(self, dispatcher: "WebhookDispatcher", endpoint_id: str) -> None:
        super().__init__(name=f"webhook-{endpoint_id}", daemon=True)
        self.dispatcher = dispatcher
        self.endpoint_id = endpoint_id
        self.heap: list[tuple[float, int, _Job]] = []
        self.cond = threading.Condition()
        self.stopped = False
        self.busy = False

    def push(self, job: _Job, due: float) -> None:
        with self.cond:
            heapq.heappush(self.heap, (due, next(self.dispatcher.seq), job))
            self.cond.notify()

    def stop(self) -> None:
        with self.cond:
            self.stopped = True
            self.cond.notify()

    def run(self) -> None:
        d = self.dispatcher
        while True:
            with self.cond:
                while not self.stopped:
                    if self.heap and not d.paused:
                        wait = self.heap[0][0] - time.monotonic()
                        if wait <= 0:
                            break
                        self.cond.wait(min(wait, 0.5))
                    else:
                        self.cond.wait(0.5)
                if self.stopped:
                    return
                _, _, job = heapq.heappop(self.heap)
                self.busy = True
            try:
                d.attempt(self.endpoint_id, job, self)
            finally:
                with self.cond:
                    self.busy = False
                    self.cond.notify_all()


class WebhookDispatcher:
    def __init__(self, emulator: Any, retry_scale: float = 1.0, timeout: float = 5.0) -> None:
        self.emulator = emulator
        self.retry_scale = retry_scale
        self.timeout = timeout
        self.paused = False
        self.seq = itertools.count()
        self.workers: dict[str, _EndpointWorker] = {}
        self.deliveries: list[dict[str, Any]] = []
        self._lock = threading.Lock()

    # called with store.lock held (from events.emit)
    def enqueue(self, event: dict[str, Any]) -> None:
        store = self.emulator.store
        targets = [
            ep for ep in store.all("webhook_endpoint")
            if ep.get("status") == "enabled" and event_matches(ep, event["type"])
        ]
        if not targets:
            return
        event["pending_webhooks"] = len(targets)
        payload = json.dumps(event, indent=2)
        for ep in reversed(targets):  # oldest endpoint first, stable order
            self._worker(ep["id"]).push(_Job(event["id"], event["type"], payload), time.monotonic())

    def _worker(self, endpoint_id: str) -> _EndpointWorker:
        with self._lock:
            w = self.workers.get(endpoint_id)
            if w is None or not w.is_alive():
                w = _EndpointWorker(self, endpoint_id)
                self.workers[endpoint_id] = w
                w.start()
            return w

    def attempt(self, endpoint_id: str, job: _Job, worker: _EndpointWorker) -> None:
        store = self.emulator.store
        with store.lock:
            ep = store.get(endpoint_id, "webhook_endpoint")
            secret = store.private.get(endpoint_id, {}).get("secret")
            url = ep["url"] if ep else None
            enabled = bool(ep) and ep.get("status") == "enabled"
        if not ep or not enabled or not secret:
            return  # deleted or disabled endpoints get nothing more
        job.attempt += 1
        ts = int(time.time())
        record: dict[str, Any] = {
            "id": new_id("whdel", 16),
            "event": job.event_id,
            "type": job.event_type,
            "endpoint": endpoint_id,
            "url": url,
            "attempt": job.attempt,
            "status_code": None,
            "error": None,
            "started_at": time.time(),
            "finished_at": None,
            "next_retry_at": None,
            "retry_delay_seconds": None,
            "succeeded": False,
        }
        req = urllib.request.Request(
            url,
            data=job.payload.encode("utf-8"),
            method="POST",
            headers={
                "Content-Type": "application/json; charset=utf-8",
                "User-Agent": "Stripe/1.0 (+https://stripe.com/docs/webhooks)",
                "Stripe-Signature": sign(job.payload, secret, ts),
            },
        )
        try:
            with urllib.request.urlopen(req, timeout=self.timeout) as resp:  # noqa: S310 - test endpoints
                resp.read(65536)
                record["status_code"] = resp.status
        except urllib.error.HTTPError as exc:
            record["status_code"] = exc.code
            record["error"] = f"HTTP {exc.code}"
        except Exception as exc:  # timeout, refused, reset
            record["error"] = f"{type(exc).__name__}: {exc}"
        record["finished_at"] = time.time()
        ok = record["status_code"] is not None and 200 <= record["status_code"] < 300
        record["succeeded"] = ok
        if ok:
            with store.lock:
                ev = store.get(job.event_id, "event")
                if ev and ev["pending_webhooks"] > 0:
                    ev["pending_webhooks"] -= 1
        elif job.attempt <= len(RETRY_SCHEDULE):
            delay = RETRY_SCHEDULE[job.attempt - 1] * self.retry_scale
            record["next_retry_at"] = time.time() + delay
            record["retry_delay_seconds"] = delay
            worker.push(job, time.monotonic() + delay)
        with self._lock:
            self.deliveries.append(record)

    # ------------------------------------------------------------ control
    def pause(self) -> None:
        self.paused = True

    def resume(self) -> None:
        self.paused = False
        for w in list(self.workers.values()):
            with w.cond:
                w.cond.notify_all()

    def idle(self) -> bool:
        return all(not w.heap and not w.busy for w in list(self.workers.values()))

    def wait_idle(self, timeout: float = 10.0) -> bool:
        """For tests: block until every queued delivery (including due retries) is done."""
        deadline = time.monotonic() + timeout
        while time.monotonic() < deadline:
            if self.idle():
                return True
            time.sleep(0.01)
        return False

    def reset(self) -> None:
        with self._lock:
            workers = list(self.workers.values())
            self.workers = {}
            self.deliveries = []
        for w in workers:
            w.stop()
        self.paused = False

    def stop(self) -> None:
        self.reset()
