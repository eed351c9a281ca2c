"""Calling emulator logic from outside an HTTP request (triggers, test clocks, hosted pages)."""
from __future__ import annotations

from typing import Any

from .registry import Request


def internal_request(emulator: Any, params: dict[str, Any] | None = None, path: str = "/_internal") -> Request:
    """A Request for internal calls: events it causes carry `request.id = null` like Stripe's automatic ones."""
    return Request(
        method="POST", path=path, path_params={}, params=params or {}, store=emulator.store,
        emulator=emulator, request_id="", idempotency_key=None,
    )
