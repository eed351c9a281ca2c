"""
Metering of the project's own API views: `@metered("api_call", credits=0)`.

Per call, with Redis (REDIS_URL set), the hot path is ONE Redis round trip (ADMIT_LUA in usage/ratelimit.py) that
atomically: refills and takes from the team's token bucket, checks the period counter against the plan's included
amount and the spend cap, increments the counter and appends the event (JSON) to a Redis list. A Celery task
(`usage_buffer_flush`, every few seconds) moves the buffer to PostgreSQL in batches; see `buffer_flush` below for
why no event is lost or counted twice when a worker dies mid-flush. The database is touched on the hot path only
when credits must be taken (premium endpoints, free plan past its included amount), because credits must never be
spent twice. Plan limits and spend caps are cached per process for USAGE_POLICY_CACHE_SECONDS.

Without Redis (the embedded default), the token bucket is in process memory and each call's event is inserted
synchronously; the period usage is read from the daily totals.
"""
from __future__ import annotations

import functools
import json
import logging
import math
import threading
import time
import uuid
from dataclasses import dataclass, field

from django.conf import settings
from django.db import transaction
from django.utils import timezone
from django.utils.dateparse import parse_datetime
from redis.exceptions import RedisError
from rest_framework.request import Request
from rest_framework.response import Response

from accounts.api.mixins import request_team
from accounts.models import APIKey, Team
from billing_site.api_errors import error_response

from . import ratelimit
from .models import CreditLedgerEntry, UsageEvent
from .periods import Period, period_for
from .services import (EventRow, InsufficientCreditsError, MeteringPolicy, SpendCapReachedError, credits_remove,
                       team_metering_policy_load, usage_events_store)

logger = logging.getLogger(__name__)


# --- Policy cache --------------------------------------------------------------------------------------------------

_policy_cache: dict[int, tuple[float, MeteringPolicy]] = {}
_policy_lock = threading.Lock()


def team_metering_policy(*, team: Team) -> MeteringPolicy:
    """The team's limits, cached per process (plan changes and spend caps take effect within the TTL)."""
    ttl = settings.USAGE_POLICY_CACHE_SECONDS
    now = time.monotonic()
    cached = _policy_cache.get(team.pk)
    if cached is not None and cached[0] > now:
        return cached[1]
    policy = team_metering_policy_load(team=team)
    if ttl > 0:
        with _policy_lock:
            if len(_policy_cache) > 50_000:
                _policy_cache.clear()
            _policy_cache[team.pk] = (now + ttl, policy)
    return policy


def policy_cache_clear(*, team_id: int | None = None) -> None:
    with _policy_lock:
        if team_id is None:
            _policy_cache.clear()
        else:
            _policy_cache.pop(team_id, None)


# --- Decisions -----------------------------------------------------------------------------------------------------


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
        return ratelimit.redis_key("used", team_id, metric, period.key)

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
                event.to_json(), _counter_ttl(period)]
        admit = ratelimit.script(ratelimit.ADMIT_LUA)
        for _ in range(2):
            status, remaining, retry_ms, reset_ms, used = admit(keys=keys, args=args)
            if status != ratelimit.COUNTER_MISSING:
                after = used if status == ratelimit.ADMITTED else used
                before = used - event.quantity if status == ratelimit.ADMITTED else used
                return Admission(status=status, limit=rate, remaining=remaining, retry_after_ms=retry_ms,
                                 reset_ms=reset_ms, used_before=before, used_after=after)
            self._seed_counter(key=keys[1], team_id=event.team_id, metric=event.metric, period=period)
        raise RuntimeError("usage counter could not be seeded in Redis")

    def _seed_counter(self, *, key: str, team_id: int, metric: str, period: Period) -> None:
        """The period counter is missing (new period, or Redis lost it): start it from the stored totals."""
        from .selectors import period_used

        used = period_used(team_id=team_id, metric=metric, period_start=period.start, period_end=period.end)
        # NX: if another process seeded it meanwhile, its value (maybe already incremented) wins.
        ratelimit.redis_client().set(key, used, nx=True, ex=_counter_ttl(period))

    def record(self, *, event: CallEvent, period: Period) -> int:
        record = ratelimit.script(ratelimit.RECORD_LUA)
        return int(record(keys=[self.counter_key(event.team_id, event.metric, period), self.buffer_key()],
                          args=[event.quantity, event.to_json(), _counter_ttl(period)]))

    def counters_add(self, *, team_id: int, period: Period, added: dict[str, int]) -> None:
        add = ratelimit.script(ratelimit.COUNTER_ADD_LUA)
        for metric, quantity in added.items():
            add(keys=[self.counter_key(team_id, metric, period)], args=[quantity])


class LocalBackend:
    """No Redis: in-process token bucket, period usage from the database, events inserted synchronously."""

    def admit(self, *, policy: MeteringPolicy, event: CallEvent, period: Period, defer: bool) -> Admission:
        from .selectors import period_used

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

    def counters_add(self, *, team_id: int, period: Period, added: dict[str, int]) -> None:
        return None  # usage is read from the database on every call


def get_backend():
    return RedisBackend() if settings.USAGE_REDIS_URL else LocalBackend()


# --- The decorator -------------------------------------------------------------------------------------------------


@dataclass
class MeteringOutcome:
    admission: Admission
    denied: Response | None = None
    event: CallEvent | None = None


def _deny(code: str, message: str, status: int, admission: Admission, details: dict | None = None,
          retry_after: int | None = None) -> Response:
    headers = admission.rate_headers()
    if retry_after is not None:
        headers["Retry-After"] = str(retry_after)
    return error_response(code, message, status, details, headers=headers)


def meter_request(*, request: Request, metric: str, quantity: int = 1, credits: int = 0) -> MeteringOutcome:
    """
    Admit one API call for the request's team: rate limit, quota, spend cap, credits. Returns the outcome; when
    `denied` is set, answer with it (429 or 402) and do not run the view.
    """
    team = request_team(request)
    policy = team_metering_policy(team=team)
    period = period_for()
    api_key: APIKey | None = getattr(request, "api_key", None)
    user = getattr(request, "user", None)
    # The key is ours (never the client's X-Request-ID): a client must not be able to make calls count once.
    event = CallEvent(team_id=team.pk, metric=metric, quantity=quantity, idempotency_key=f"call:{uuid.uuid4().hex}",
                      occurred_at=timezone.now().isoformat(), api_key_id=api_key.pk if api_key else None,
                      user_id=user.pk if user is not None and user.is_authenticated else None,
                      metadata={"path": request.path[:200]})
    backend = get_backend()
    try:
        admission = backend.admit(policy=policy, event=event, period=period, defer=credits > 0)
    except RedisError:
        # Fail closed: an unmetered call would be unbilled and unlimited. Programs retry on 503 + Retry-After.
        logger.exception("metering unavailable (Redis) for team %s", team.pk, extra={"team_id": team.pk})
        return MeteringOutcome(Admission(status=ratelimit.RATE_LIMITED, limit=policy.rate_limit_per_second,
                                         remaining=0), error_response(
            "metering_unavailable", "Usage metering is briefly unavailable. Please retry in a few seconds.", 503,
            headers={"Retry-After": "5"}))
    if admission.status == ratelimit.RATE_LIMITED:
        retry_after = max(1, math.ceil(admission.retry_after_ms / 1000))
        return MeteringOutcome(admission, _deny(
            "rate_limited",
            f"Too many requests: your plan allows {admission.limit} per second. Retry in {retry_after} s, or upgrade "
            f"for a higher limit.",
            429, admission, {"limit_per_second": admission.limit, "retry_after_seconds": retry_after},
            retry_after=retry_after))
    if admission.status == ratelimit.SPEND_CAP:
        error = SpendCapReachedError(metric=metric, cap_units=policy.cap_units.get(metric, 0))
        return MeteringOutcome(admission, _deny(error.code, error.user_message, 402, admission, error.extra))
    if admission.status == ratelimit.NEEDS_PAYMENT:
        included = policy.included.get(metric, 0)
        over_units = 0
        if policy.overage == "credits":
            over_units = min(quantity, max(0, admission.used_before + quantity - included))
        cost = credits + over_units * settings.USAGE_CREDITS_PER_OVERAGE_UNIT
        if cost > 0:
            try:
                credits_remove(team=team, amount=cost, reason=CreditLedgerEntry.Reason.USAGE,
                               reference=event.idempotency_key, note=f"{metric} x{quantity} at {request.path[:200]}")
            except InsufficientCreditsError as error:
                if over_units and not credits:
                    error.user_message = (
                        f"Your plan's {included} included {metric} for this month are used up and the team has no "
                        f"credits left. Buy credits at {error.extra['buy_credits_url']} or upgrade your plan at "
                        f"{error.extra['upgrade_url']}."
                    )
                    error.code = "quota_exceeded"
                return MeteringOutcome(admission, _deny(error.code, error.user_message, 402, admission, error.extra))
        admission.used_after = backend.record(event=event, period=period)
        admission.status = ratelimit.ADMITTED
    return MeteringOutcome(admission, None, event)


def _find_request(args) -> Request:
    for arg in args[:2]:
        if isinstance(arg, Request):
            return arg
    raise TypeError("@metered decorates DRF handlers: put it under @api_view or on an APIView method.")


def metered(metric: str = "api_call", credits: int = 0, quantity: int = 1):
    """
    Meter a DRF handler: `@metered("api_call")` on an APIView method (or under `@api_view`). Every call is rate
    limited per team (429 + Retry-After), counted against the plan's included amount, paid from credits past it on a
    `credits` plan (402 when none are left), held to the team's spend cap on a metered plan (402), and costs `credits`
    credits on every plan when set. Answers carry X-RateLimit-Limit/Remaining/Reset.
    """
    if credits < 0 or quantity <= 0:
        raise ValueError("credits must be >= 0 and quantity > 0")

    def decorator(handler):
        @functools.wraps(handler)
        def wrapper(*args, **kwargs):
            request = _find_request(args)
            outcome = meter_request(request=request, metric=metric, quantity=quantity, credits=credits)
            if outcome.denied is not None:
                return outcome.denied
            response = handler(*args, **kwargs)
            for name, value in outcome.admission.rate_headers().items():
                response[name] = value
            return response

        wrapper.metered_metric = metric
        wrapper.metered_credits = credits
        return wrapper

    return decorator


# --- Buffer flush (Redis -> database) ----------------------------------------------------------------------------


@dataclass
class FlushResult:
    batches: int = 0
    events_read: int = 0
    events_inserted: int = 0
    recovered_batches: int = 0


def _store_buffered(raw_items: list[bytes]) -> int:
    from accounts.models import APIKey as APIKeyModel, Team as TeamModel

    rows = []
    for raw in raw_items:
        try:
            rows.append(CallEvent.row_from_json(raw))
        except (ValueError, KeyError, TypeError):
            logger.error("unreadable buffered usage event dropped: %r", raw[:200])
    # Teams or keys deleted since the call: drop the team's events (cascade semantics), keep others without a key.
    team_ids = set(TeamModel.objects.filter(pk__in={r.team_id for r in rows}).values_list("pk", flat=True))
    key_ids = set(APIKeyModel.objects.filter(pk__in={r.api_key_id for r in rows if r.api_key_id})
                  .values_list("pk", flat=True))
    from accounts.models import User

    user_ids = set(User.objects.filter(pk__in={r.user_id for r in rows if r.user_id}).values_list("pk", flat=True))
    cleaned = [
        EventRow(team_id=r.team_id, metric=r.metric, quantity=r.quantity, occurred_at=r.occurred_at,
                 idempotency_key=r.idempotency_key, source=r.source,
                 api_key_id=r.api_key_id if r.api_key_id in key_ids else None,
                 user_id=r.user_id if r.user_id in user_ids else None, metadata=r.metadata)
        for r in rows
        if r.team_id in team_ids
    ]
    return len(usage_events_store(rows=cleaned))


def buffer_flush(*, max_batches: int | None = None, batch_size: int | None = None) -> FlushResult:
    """
    Move buffered call events from Redis into UsageEvent/UsageDailyTotal. Crash-safe:
    1. CLAIM_LUA atomically moves up to `batch_size` events from the buffer into a list of their own
       (`batch:<uuid>`) and records the batch in an in-flight sorted set with the claim time;
    2. the batch is inserted in one transaction (ON CONFLICT DO NOTHING on (team, idempotency_key));
    3. only after the commit is the batch list deleted and removed from the in-flight set.
    A worker dying between 1 and 3 leaves the batch in flight; a later flush re-claims batches older than
    USAGE_BUFFER_STALE_SECONDS and inserts them again, and the unique key makes that a no-op for events already
    stored. So an event is never lost once the Redis call admitted it (short of losing Redis itself) and never
    counted twice.
    """
    if not settings.USAGE_REDIS_URL:
        return FlushResult()
    client = ratelimit.redis_client()
    max_batches = max_batches or settings.USAGE_FLUSH_MAX_BATCHES
    batch_size = batch_size or settings.USAGE_FLUSH_BATCH_SIZE
    inflight = ratelimit.redis_key("inflight")
    result = FlushResult()

    def process(batch_id: str) -> None:
        batch_key = ratelimit.redis_key("batch", batch_id)
        items = client.lrange(batch_key, 0, -1)
        if items:
            with transaction.atomic():
                result.events_inserted += _store_buffered(items)
            result.events_read += len(items)
        pipe = client.pipeline(transaction=True)
        pipe.delete(batch_key)
        pipe.zrem(inflight, batch_id)
        pipe.execute()
        result.batches += 1

    stale_before = time.time() - settings.USAGE_BUFFER_STALE_SECONDS
    for raw_id in client.zrangebyscore(inflight, "-inf", stale_before):
        batch_id = raw_id.decode() if isinstance(raw_id, bytes) else raw_id
        # Re-stamp before processing so a concurrent flusher does not pick the same stale batch right away.
        client.zadd(inflight, {batch_id: time.time()})
        logger.warning("re-flushing usage batch %s left in flight by a stopped worker", batch_id)
        process(batch_id)
        result.recovered_batches += 1

    claim = ratelimit.script(ratelimit.CLAIM_LUA)
    for _ in range(max_batches):
        batch_id = uuid.uuid4().hex
        moved = claim(keys=[ratelimit.redis_key("buffer"), ratelimit.redis_key("batch", batch_id), inflight],
                      args=[batch_size, batch_id])
        if not moved:
            break
        process(batch_id)
    if result.events_read:
        logger.info("flushed %s buffered usage events (%s new) in %s batches", result.events_read,
                    result.events_inserted, result.batches)
    return result


def buffer_length() -> int:
    if not settings.USAGE_REDIS_URL:
        return 0
    return int(ratelimit.redis_client().llen(ratelimit.redis_key("buffer")))
