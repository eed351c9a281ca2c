"""Fixtures for the emulator's own tests: a real emulator over HTTP, driven with the official SDK only.

Kept free of Django: the project's pytest settings may load pytest-django, but nothing here asks for a database.
"""
from __future__ import annotations

import json
import threading
import urllib.request
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from typing import Any, Iterator

import pytest
import stripe

from stripe_emulator.testing import RunningEmulator, start_emulator

API_KEY = "sk_test_emulator_tests"


def make_client(emu: RunningEmulator, api_key: str = API_KEY) -> stripe.StripeClient:
    # No SDK retries: tests count requests and see injected faults exactly once.
    return stripe.StripeClient(api_key, base_addresses={"api": emu.url, "files": emu.url, "connect": emu.url},
                               max_network_retries=0)


@pytest.fixture(scope="session")
def emulator() -> Iterator[RunningEmulator]:
    emu = start_emulator(webhook_retry_scale=0.0001)
    yield emu
    emu.stop()


@pytest.fixture(scope="session")
def client(emulator: RunningEmulator) -> stripe.StripeClient:
    return make_client(emulator)


@pytest.fixture()
def fresh_emulator() -> Iterator[RunningEmulator]:
    """A private emulator for tests that need an empty world (webhooks, pagination counts, state files)."""
    emu = start_emulator(webhook_retry_scale=0.0001, webhook_timeout=1.0)
    yield emu
    emu.stop()


@pytest.fixture()
def fresh_client(fresh_emulator: RunningEmulator) -> stripe.StripeClient:
    return make_client(fresh_emulator)


def http(method: str, url: str, data: bytes | None = None, headers: dict[str, str] | None = None) -> tuple[int, dict[str, str], bytes]:
    """Plain HTTP (for hosted pages and control routes, and for raw protocol checks)."""
    req = urllib.request.Request(url, data=data, method=method, headers=headers or {})

    class NoRedirect(urllib.request.HTTPRedirectHandler):
        def redirect_request(self, *args: Any, **kwargs: Any) -> None:
            return None

    opener = urllib.request.build_opener(NoRedirect)
    try:
        with opener.open(req, timeout=10) as resp:
            return resp.status, {k.lower(): v for k, v in resp.headers.items()}, resp.read()
    except urllib.error.HTTPError as exc:
        return exc.code, {k.lower(): v for k, v in exc.headers.items()}, exc.read()


class Receiver:
    """A tiny local webhook receiver recording what it gets; its answers can be scripted."""

    def __init__(self) -> None:
        self.received: list[dict[str, Any]] = []
        self.statuses: list[int] = []  # answers to give, in order; then 200
        # While `gate` is cleared the receiver blocks every request (a hanging endpoint).
        self.gate = threading.Event()
        self.gate.set()
        self.lock = threading.Lock()
        outer = self

        class Handler(BaseHTTPRequestHandler):
            def log_message(self, *args: Any) -> None:
                pass

            def do_POST(self) -> None:
                body = self.rfile.read(int(self.headers.get("Content-Length") or 0))
                with outer.lock:
                    outer.received.append({"body": body, "signature": self.headers.get("Stripe-Signature"),
                                           "headers": dict(self.headers)})
                    status = outer.statuses.pop(0) if outer.statuses else 200
                outer.gate.wait(30)
                self.send_response(status)
                self.send_header("Content-Length", "2")
                self.end_headers()
                self.wfile.write(b"ok")

        self.httpd = ThreadingHTTPServer(("127.0.0.1", 0), Handler)
        self.httpd.daemon_threads = True
        self.url = f"http://127.0.0.1:{self.httpd.server_address[1]}/webhook"
        self.thread = threading.Thread(target=self.httpd.serve_forever, kwargs={"poll_interval": 0.05}, daemon=True)
        self.thread.start()

    def events(self) -> list[dict[str, Any]]:
        with self.lock:
            return [json.loads(r["body"]) for r in self.received]

    def close(self) -> None:
        self.gate.set()
        self.httpd.shutdown()
        self.httpd.server_close()


@pytest.fixture()
def receiver() -> Iterator[Receiver]:
    r = Receiver()
    yield r
    r.close()
