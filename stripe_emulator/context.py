"""Which emulator and which API request the current thread is working for.

The server sets it around each request; background jobs (test clock advances, hosted pages) use
`using(emulator)`. `events.emit` reads it so resource code can call `emit(type, obj)` directly.
"""
from __future__ import annotations

import contextlib
import threading
from typing import Any, Iterator

_local = threading.local()


def current_emulator() -> Any:
    emu = getattr(_local, "emulator", None)
    if emu is None:
        raise RuntimeError("no emulator bound to this thread (use context.using(emulator))")
    return emu


def current_request() -> Any:
    return getattr(_local, "request", None)


@contextlib.contextmanager
def using(emulator: Any, request: Any = None) -> Iterator[None]:
    prev = (getattr(_local, "emulator", None), getattr(_local, "request", None))
    _local.emulator, _local.request = emulator, request
    try:
        yield
    finally:
        _local.emulator, _local.request = prev
