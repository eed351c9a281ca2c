"""Start an emulator in-process for tests:

    from stripe_emulator.testing import start_emulator
    with start_emulator() as emu:
        client = stripe.StripeClient("sk_test_x", base_addresses={"api": emu.url})
"""
from __future__ import annotations

import json
import threading
import urllib.request
from typing import Any

from .server import Emulator, make_server


class RunningEmulator:
    def __init__(self, emulator: Emulator, httpd: Any, thread: threading.Thread) -> None:
        self.emulator = emulator
        self.httpd = httpd
        self.thread = thread
        self.port: int = httpd.server_address[1]
        self.url = f"http://127.0.0.1:{self.port}"

    @property
    def store(self) -> Any:
        return self.emulator.store

    def reset(self) -> None:
        self.emulator.reset()

    def stop(self) -> None:
        self.httpd.shutdown()
        self.httpd.server_close()
        self.httpd.close_connections()
        self.emulator.webhooks.stop()
        self.emulator.save_state()
        self.thread.join(timeout=5)

    def wait_for_webhooks(self, timeout: float = 10.0) -> bool:
        return self.emulator.webhooks.wait_idle(timeout)

    def control(self, method: str, path: str, data: dict[str, Any] | None = None) -> Any:
        """Call the control API over HTTP (POST form, GET/DELETE)."""
        body = None
        if data is not None:
            from urllib.parse import urlencode

            body = urlencode(data).encode()
        req = urllib.request.Request(self.url + path, data=body, method=method)
        with urllib.request.urlopen(req, timeout=10) as resp:  # noqa: S310 - loopback
            return json.loads(resp.read() or b"null")

    def __enter__(self) -> "RunningEmulator":
        return self

    def __exit__(self, *exc: Any) -> None:
        self.stop()


def start_emulator(
    port: int = 0,
    webhook_retry_scale: float = 0.001,
    state_file: str | None = None,
    host: str = "127.0.0.1",
    webhook_timeout: float = 2.0,
    public_url: str = "",
) -> RunningEmulator:
    emulator = Emulator(
        public_url=public_url, webhook_retry_scale=webhook_retry_scale,
        webhook_timeout=webhook_timeout, state_file=state_file,
    )
    httpd = make_server(emulator, host, port)
    thread = threading.Thread(target=httpd.serve_forever, kwargs={"poll_interval": 0.05}, name="stripe-emulator", daemon=True)
    thread.start()
    return RunningEmulator(emulator, httpd, thread)
