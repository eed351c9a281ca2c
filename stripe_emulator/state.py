"""The emulator's whole state: one in-memory store guarded by a single re-entrant lock.

Every API request runs its handler while holding `store.lock`, so handlers may read and write
freely; background work (webhook delivery, test clock advances) takes the same lock when it touches
state. Objects are plain JSON-able dicts in Stripe's shape; anything Stripe does not show (e.g. a
test card's behaviour, a webhook secret) lives in `store.private[id]`.
"""
from __future__ import annotations

import json
import os
import random
import string
import threading
import time
from typing import Any, Iterable

_ALNUM = string.ascii_letters + string.digits
_rng = random.Random(os.urandom(16))


def new_id(prefix: str, length: int = 24) -> str:
    return f"{prefix}_{''.join(_rng.choices(_ALNUM, k=length))}"


def random_token(length: int = 24) -> str:
    return "".join(_rng.choices(_ALNUM, k=length))


class Clock:
    """Current time in Unix seconds. Customers on a test clock see that clock's `frozen_time`.

    `offset` (seconds, set through `POST /_emulator/clock`) shifts the emulator's whole notion of "now" so tests
    can age events, idempotency keys or expiry dates without waiting. Webhook signatures keep real time, since
    receivers check them against their own clock.
    """

    def __init__(self, store: "Store") -> None:
        self._store = store
        self.offset = 0

    def now(self) -> int:
        return int(time.time()) + self.offset

    def now_for_test_clock(self, test_clock_id: str | None) -> int:
        if test_clock_id:
            clock = self._store.objects.get(test_clock_id)
            if clock is not None:
                return int(clock["frozen_time"])
        return self.now()

    def now_for_customer(self, customer_id: str | None) -> int:
        if customer_id:
            cus = self._store.objects.get(customer_id)
            if cus is not None and cus.get("test_clock"):
                return self.now_for_test_clock(cus["test_clock"])
        return self.now()


class Store:
    def __init__(self) -> None:
        self.lock = threading.RLock()
        self.clock = Clock(self)
        self.reset()

    def reset(self) -> None:
        with self.lock:
            self.objects: dict[str, dict[str, Any]] = {}
            # object type -> ids in insertion order (lists are served newest first)
            self.order: dict[str, list[str]] = {}
            self.private: dict[str, dict[str, Any]] = {}
            # id -> object type of deleted objects (retrieve answers `deleted: true` for some types)
            self.deleted: dict[str, str] = {}
            # idempotency key -> stored result
            self.idempotency: dict[str, dict[str, Any]] = {}
            # named counters (invoice numbers, etc.)
            self.counters: dict[str, int] = {}
            self.clock.offset = 0

    # ------------------------------------------------------------ objects
    def add(self, obj: dict[str, Any], private: dict[str, Any] | None = None) -> dict[str, Any]:
        with self.lock:
            oid = obj["id"]
            self.objects[oid] = obj
            self.order.setdefault(obj["object"], []).append(oid)
            if private:
                self.private[oid] = private
            return obj

    def get(self, oid: str | None, object_type: str | None = None) -> dict[str, Any] | None:
        if not isinstance(oid, str):
            return None
        obj = self.objects.get(oid)
        if obj is None or (object_type is not None and obj["object"] != object_type):
            return None
        return obj

    def priv(self, oid: str) -> dict[str, Any]:
        return self.private.setdefault(oid, {})

    def remove(self, oid: str) -> dict[str, Any] | None:
        with self.lock:
            obj = self.objects.pop(oid, None)
            if obj is not None:
                ids = self.order.get(obj["object"], [])
                try:
                    ids.remove(oid)
                except ValueError:
                    pass
                self.deleted[oid] = obj["object"]
            return obj

    def all(self, object_type: str) -> list[dict[str, Any]]:
        """Objects of a type, newest first (Stripe's list order)."""
        objs = self.objects
        return [objs[i] for i in reversed(self.order.get(object_type, ())) if i in objs]

    def next_counter(self, name: str, start: int = 1) -> int:
        with self.lock:
            value = self.counters.get(name, start - 1) + 1
            self.counters[name] = value
            return value

    # ------------------------------------------------------------ persistence
    def dump(self) -> dict[str, Any]:
        with self.lock:
            now = self.clock.now()
            return {
                "version": 1,
                "objects": self.objects,
                "order": self.order,
                "private": self.private,
                "deleted": self.deleted,
                "counters": self.counters,
                "clock_offset": self.clock.offset,
                "idempotency": {k: v for k, v in self.idempotency.items() if v["expires"] > now},
            }

    def save(self, path: str) -> None:
        with self.lock:
            data = json.dumps(self.dump(), separators=(",", ":"))
        tmp = f"{path}.tmp"
        with open(tmp, "w", encoding="utf-8") as fh:
            fh.write(data)
        os.replace(tmp, path)

    def load(self, path: str) -> bool:
        if not os.path.exists(path):
            return False
        with open(path, encoding="utf-8") as fh:
            data = json.load(fh)
        with self.lock:
            self.reset()
            self.objects = data.get("objects", {})
            self.order = data.get("order", {})
            self.private = data.get("private", {})
            self.deleted = data.get("deleted", {})
            self.counters = data.get("counters", {})
            self.idempotency = data.get("idempotency", {})
            self.clock.offset = int(data.get("clock_offset", 0))
        return True


def iter_ids(objs: Iterable[dict[str, Any]]) -> list[str]:
    return [o["id"] for o in objs]
