"""
Where metering keeps its state: `RedisBackend` (REDIS_URL set) or `LocalBackend` (the embedded default).

With Redis, admitting a call is ONE round trip (ADMIT_LUA in usage/ratelimit.py) that atomically refills and takes
from the team's token bucket, checks the period counter against the plan's included amount and the spend cap,
increments the counter and appends the event (JSON) to a Redis list that `usage.metering.buffer` moves to the
database. Without Redis, the token bucket is in process memory, the period usage is read from the daily totals and
each call's event is inserted synchronously.
"""
from __future__ import annotations

import json
import math
from dataclasses import dataclass, field

from django.conf import settings
from django.utils import timezone
from django.utils.dateparse import parse_datetime

from .. import ratelimit
from ..models import UsageEvent
from ..periods import Period
from ..selectors import period_used
from ..services.event_store import EventRow, usage_events_store
from ..services.policy import MeteringPolicy


@dataclass
class Admission:
    status: int
    limit: int
    remaining: int
    retry_after_ms: int = 0
    reset_ms: int = 0
    used_before: int = 0
    used_after: int = 0

    def rate_headers(self) -> dict[str, str]:
        return {
            "X-RateLimit-Limit": str(self.limit),
            "X-RateLimit-Remaining": str(max(0, self.remaining)),
            # Seconds until the bucket is full again.
            "X-RateLimit-Reset": str(max(0, math.ceil(self.reset_ms / 1000))),
        }


@dataclass
class CallEvent:
    team_id: int
    metric: str
    quantity: int
    idempotency_key: str
    occurred_at: str  # ISO 8601, UTC
    api_key_id: int | None = None
    user_id: int | None = None
    metadata: dict = field(default_factory=dict)

    def to_json(self) -> str:
        return json.dumps({"t": self.team_id, "m": self.metric, "q": self.quantity, "k": self.idempotency_key,
                           "o": self.occurred_at, "a": self.api_key_id, "u": self.user_id, "d": self.metadata},
                          separators=(",", ":"))

    @staticmethod
    def row_from_json(raw: bytes | str) -> EventRow:
        data = json.loads(raw)
        return EventRow(team_id=data["t"], metric=data["m"], quantity=data["q"], idempotency_key=data["k"],
                        occurred_at=parse_datetime(data["o"]), source=UsageEvent.Source.METERED_CALL,
                        api_key_id=data.get("a"), user_id=data.get("u"), metadata=data.get("d") or {})

    def as_row(self) -> EventRow:
        return EventRow(team_id=self.team_id, metric=self.metric, quantity=self.quantity,
                        idempotency_key=self.idempotency_key, occurred_at=parse_datetime(self.occurred_at),
                        source=UsageEvent.Source.METERED_CALL, api_key_id=self.api_key_id, user_id=self.user_id,
                        metadata=self.metadata)


def _counter_ttl(period: Period) -> int:
    # Keep the counter a while past the period so late reads and the rollover still find it.
    return int((period.end - timezone.now()).total_seconds()) + 35 * 24 * 3600


class RedisBackend:
    """Rate limit, quota counter and event buffer in Redis; one round trip per admitted call."""

    def buffer_key(self) -> str:
        return ratelimit.redis_key("buffer")

    def counter_key(self, team_id: int, metric: str, period: Period) -> str:
        return ratelimit.period_counter_key(team_id=team_id, metric=metric, period_key=period.key)

    def admit(self, *, policy: MeteringPolicy, event: CallEvent, period: Period, defer: bool) -> Admission:
        rate = max(1, policy.rate_limit_per_second)
        burst = rate  # one second's worth of calls may arrive at once
        included = policy.included.get(event.metric, 0)
        hard_limit = -1
        if policy.overage == "metered" and event.metric in policy.cap_units:
            hard_limit = included + policy.cap_units[event.metric]
        keys = [ratelimit.redis_key("bucket", event.team_id), self.counter_key(event.team_id, event.metric, period),
                self.buffer_key()]
        args = [rate, burst, event.quantity, included, hard_limit, int(defer), int(policy.overage == "credits"),
                event.to_json()]
        for _ in range(2):
            # The whole admission is this one round trip (tested: usage/tests/test_metering_round_trips.py).
            status, remaining, retry_ms, reset_ms, used = ratelimit.run_script(ratelimit.ADMIT_LUA, keys=keys,
                                                                               args=args)
            if status != ratelimit.COUNTER_MISSING:
                # `used` is the counter after this call when admitted, and before it otherwise.
                before = used - event.quantity if status == ratelimit.ADMITTED else used
                return Admission(status=status, limit=rate, remaining=remaining, retry_after_ms=retry_ms,
                                 reset_ms=reset_ms, used_before=before, used_after=used)
            self._seed_counter(key=keys[1], team_id=event.team_id, metric=event.metric, period=period)
        raise RuntimeError("usage counter could not be seeded in Redis")

    def _seed_counter(self, *, key: str, team_id: int, metric: str, period: Period) -> None:
        """The period counter is missing (new period, or Redis lost it): start it from the stored totals."""
        used = period_used(team_id=team_id, metric=metric, period_start=period.start, period_end=period.end)
        # NX: if another process seeded it meanwhile, its value (maybe already incremented) wins.
        ratelimit.redis_client().set(key, used, nx=True, ex=_counter_ttl(period))

    def record(self, *, event: CallEvent, period: Period) -> int:
        return int(ratelimit.run_script(
            ratelimit.RECORD_LUA, keys=[self.counter_key(event.team_id, event.metric, period), self.buffer_key()],
            args=[event.quantity, event.to_json(), _counter_ttl(period)]))


class LocalBackend:
    """No Redis: in-process token bucket, period usage from the database, events inserted synchronously."""

    def admit(self, *, policy: MeteringPolicy, event: CallEvent, period: Period, defer: bool) -> Admission:
        rate = max(1, policy.rate_limit_per_second)
        bucket = ratelimit.local_bucket.take(key=f"team:{event.team_id}", rate=rate, burst=rate)
        used = period_used(team_id=event.team_id, metric=event.metric, period_start=period.start,
                           period_end=period.end)
        admission = Admission(status=ratelimit.ADMITTED, limit=rate, remaining=bucket.remaining,
                              retry_after_ms=bucket.retry_after_ms, reset_ms=bucket.reset_ms, used_before=used,
                              used_after=used)
        if not bucket.allowed:
            admission.status = ratelimit.RATE_LIMITED
            return admission
        included = policy.included.get(event.metric, 0)
        after = used + event.quantity
        if policy.overage == "metered" and event.metric in policy.cap_units:
            if after > included + policy.cap_units[event.metric]:
                admission.status = ratelimit.SPEND_CAP
                return admission
        if defer or (policy.overage == "credits" and after > included):
            admission.status = ratelimit.NEEDS_PAYMENT
            return admission
        admission.used_after = self.record(event=event, period=period)
        return admission

    def record(self, *, event: CallEvent, period: Period) -> int:
        usage_events_store(rows=[event.as_row()])
        return 0


def get_backend():
    return RedisBackend() if settings.USAGE_REDIS_URL else LocalBackend()
