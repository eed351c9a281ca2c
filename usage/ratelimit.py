"""
Redis access for metering, and the local-memory token bucket used when REDIS_URL is unset.

The Redis side (token bucket + period counter + event buffer) is one Lua script so that admitting a call is one
round trip and atomic: see usage/metering/backend.py for how the results are used and docs/usage.md for the
design. The period counters live here (not in the metering backend) because ingest (usage.services.ingest) moves
them too, and usage.services must not import usage.metering (metering is built on services, not the other way).
"""
from __future__ import annotations

import hashlib
import logging
import math
import os
import threading
import time
from dataclasses import dataclass

import redis
from django.conf import settings

logger = logging.getLogger(__name__)

_redis_clients: dict[str, object] = {}
_redis_lock = threading.Lock()


def redis_client():
    """A redis-py client for USAGE_REDIS_URL (defaults to REDIS_URL), one connection pool per URL and process."""
    url = settings.USAGE_REDIS_URL
    client = _redis_clients.get(url)
    if client is None:
        with _redis_lock:
            client = _redis_clients.get(url)
            if client is None:
                client = redis.Redis.from_url(url, socket_timeout=2, socket_connect_timeout=2,
                                              health_check_interval=30)
                _redis_clients[url] = client
    return client


def redis_key(*parts) -> str:
    return settings.USAGE_REDIS_PREFIX + ":".join(str(p) for p in parts)


def period_counter_key(*, team_id: int, metric: str, period_key: str) -> str:
    """The Redis counter of a team's usage of `metric` in one period (`Period.key`): the metered hot path's quota."""
    return redis_key("used", team_id, metric, period_key)


def period_counters_add(*, team_id: int, period_key: str, added: dict[str, int]) -> None:
    """
    Add usage stored outside the hot path (ingested events) to the live period counters, so metering sees it at
    once. A no-op without Redis (usage is then read from the database on every call) and for a counter not in Redis
    yet (it is seeded from the database when first needed).
    """
    if not settings.USAGE_REDIS_URL:
        return
    add = script(COUNTER_ADD_LUA)
    try:
        for metric, quantity in added.items():
            add(keys=[period_counter_key(team_id=team_id, metric=metric, period_key=period_key)], args=[quantity])
    except redis.RedisError as error:
        # Runs after the events were committed: failing here would turn a stored ingest into a 500. The counter
        # then lags the database until it expires and is seeded again (metering reads the stored totals then).
        logger.warning("period counters of team %s not moved (Redis unavailable): %r", team_id, error,
                       extra={"team_id": team_id})


# Status codes shared by the Lua script and Python.
ADMITTED = 1  # counted and the event buffered
RATE_LIMITED = 0
NEEDS_PAYMENT = 2  # within rate and cap, but credits must be taken first: nothing counted yet
SPEND_CAP = 3
COUNTER_MISSING = 4  # the period counter is not in Redis: seed it from the database and call again

# KEYS: 1 token bucket hash, 2 period counter, 3 event buffer list
# ARGV: 1 rate (tokens/s), 2 burst, 3 quantity, 4 included, 5 hard limit (-1: none), 6 defer (1: never record
#       here, the caller pays credits first), 7 credits mode (1: past `included` needs payment), 8 event JSON
#       (the counter's TTL is set when it is seeded: INCRBY keeps it)
# Returns {status, remaining tokens, retry after ms, reset ms, used (after, when admitted)}
ADMIT_LUA = """
local used = redis.call('GET', KEYS[2])
if not used then return {4, 0, 0, 0, 0} end
used = tonumber(used)
local t = redis.call('TIME')
local now_ms = tonumber(t[1]) * 1000 + math.floor(tonumber(t[2]) / 1000)
local rate = tonumber(ARGV[1])
local burst = tonumber(ARGV[2])
local quantity = tonumber(ARGV[3])
local bucket = redis.call('HMGET', KEYS[1], 'tokens', 'ts')
local tokens = tonumber(bucket[1])
local ts = tonumber(bucket[2])
if tokens == nil or ts == nil then
  tokens = burst
  ts = now_ms
end
if now_ms > ts then
  tokens = math.min(burst, tokens + (now_ms - ts) * rate / 1000)
end
local bucket_ttl = math.ceil(burst * 1000 / rate) + 1000
if tokens < 1 then
  local retry_ms = math.ceil((1 - tokens) * 1000 / rate)
  local reset_ms = math.ceil((burst - tokens) * 1000 / rate)
  redis.call('HSET', KEYS[1], 'tokens', tostring(tokens), 'ts', now_ms)
  redis.call('PEXPIRE', KEYS[1], bucket_ttl)
  return {0, 0, retry_ms, reset_ms, used}
end
tokens = tokens - 1
local reset_ms = math.ceil((burst - tokens) * 1000 / rate)
redis.call('HSET', KEYS[1], 'tokens', tostring(tokens), 'ts', now_ms)
redis.call('PEXPIRE', KEYS[1], bucket_ttl)
local remaining = math.floor(tokens)
local after = used + quantity
local hard_limit = tonumber(ARGV[5])
if hard_limit >= 0 and after > hard_limit then return {3, remaining, 0, reset_ms, used} end
if tonumber(ARGV[6]) == 1 or (tonumber(ARGV[7]) == 1 and after > tonumber(ARGV[4])) then
  return {2, remaining, 0, reset_ms, used}
end
-- The counter keeps the TTL it was seeded with (INCRBY does not touch it): no EXPIRE on the hot path.
redis.call('INCRBY', KEYS[2], quantity)
redis.call('RPUSH', KEYS[3], ARGV[8])
return {1, remaining, 0, reset_ms, after}
"""

# After credits were taken for a NEEDS_PAYMENT call: count it and buffer its event, atomically.
# KEYS: 1 period counter, 2 event buffer. ARGV: 1 quantity, 2 event JSON, 3 counter TTL. Returns used after.
RECORD_LUA = """
local after = redis.call('INCRBY', KEYS[1], tonumber(ARGV[1]))
redis.call('EXPIRE', KEYS[1], tonumber(ARGV[3]))
redis.call('RPUSH', KEYS[2], ARGV[2])
return after
"""

# Ingested events move the live counter only when it exists (else it is seeded from the database later anyway).
# KEYS: 1 period counter. ARGV: 1 quantity.
COUNTER_ADD_LUA = """
if redis.call('EXISTS', KEYS[1]) == 1 then return redis.call('INCRBY', KEYS[1], tonumber(ARGV[1])) end
return -1
"""

# Move up to N buffered events into a batch list of their own and note the batch as in flight, atomically.
# KEYS: 1 buffer, 2 batch list, 3 in-flight sorted set. ARGV: 1 max items, 2 batch id. Returns items moved.
CLAIM_LUA = """
local items = redis.call('LRANGE', KEYS[1], 0, tonumber(ARGV[1]) - 1)
if #items == 0 then return 0 end
redis.call('LTRIM', KEYS[1], #items, -1)
for i = 1, #items, 500 do
  redis.call('RPUSH', KEYS[2], unpack(items, i, math.min(i + 499, #items)))
end
local t = redis.call('TIME')
redis.call('ZADD', KEYS[3], tonumber(t[1]), ARGV[2])
return #items
"""

_scripts: dict[tuple[int, str], object] = {}
_script_shas: dict[str, str] = {}
_thread_state = threading.local()


def _thread_connection(url: str):
    """
    This thread's own Redis connection for `run_script` (one per URL, thread and process). The hot path skips the
    pool (a lock and bookkeeping on every call) and redis-py's command machinery: about half of the client-side CPU
    of a metered call. A forked child never reuses its parent's socket (the pid is checked).
    """
    pid = os.getpid()
    if getattr(_thread_state, "pid", None) != pid:
        _thread_state.pid = pid
        _thread_state.connections = {}
    connection = _thread_state.connections.get(url)
    if connection is None:
        pool = redis_client().connection_pool
        connection = pool.connection_class(**pool.connection_kwargs)
        _thread_state.connections[url] = connection
    return connection


def run_script(source: str, *, keys: list, args: list):
    """
    Run a Lua script in ONE round trip on this thread's connection: EVALSHA, and EVAL only when the server does
    not know the script yet (a new or restarted Redis). Raises redis.RedisError like the client does (metering turns
    it into 503). A connection that failed is dropped; a call that failed because the server had closed an idle
    connection (a Redis restart) is retried once on a new one: the command never reached a live server then.
    """
    sha = _script_shas.get(source)
    if sha is None:
        sha = _script_shas[source] = hashlib.sha1(source.encode()).hexdigest()
    url = settings.USAGE_REDIS_URL
    for attempt in (1, 2):
        connection = _thread_connection(url)
        fresh = connection._sock is None
        try:
            try:
                connection.send_command("EVALSHA", sha, len(keys), *keys, *args, check_health=False)
                return connection.read_response()
            except redis.exceptions.NoScriptError:
                connection.send_command("EVAL", source, len(keys), *keys, *args, check_health=False)
                return connection.read_response()
        except redis.exceptions.ResponseError:
            raise  # an error answer (e.g. from the script): the connection itself is fine
        except BaseException as error:
            connection.disconnect()  # never reuse a socket left mid-reply
            if attempt == 1 and not fresh and isinstance(error, redis.exceptions.ConnectionError) \
                    and not isinstance(error, redis.exceptions.TimeoutError):
                continue
            raise


def script(source: str):
    client = redis_client()
    key = (id(client), source)
    registered = _scripts.get(key)
    if registered is None:
        # redis-py's Script sends EVALSHA and falls back to EVAL (loading it) on NOSCRIPT: still one round trip.
        registered = client.register_script(source)
        _scripts[key] = registered
    return registered


@dataclass(frozen=True)
class BucketResult:
    allowed: bool
    remaining: int
    retry_after_ms: int
    reset_ms: int


class LocalTokenBucket:
    """
    In-process token bucket for the embedded default (no Redis). Limits per process, not per deployment: with
    several gunicorn workers each enforces the rate on its own. Good for development; production sets REDIS_URL.
    """

    def __init__(self):
        self._lock = threading.Lock()
        self._buckets: dict[str, tuple[float, float]] = {}

    def take(self, *, key: str, rate: float, burst: float) -> BucketResult:
        now = time.monotonic()
        with self._lock:
            tokens, stamp = self._buckets.get(key, (burst, now))
            tokens = min(burst, tokens + max(0.0, now - stamp) * rate)
            if tokens < 1:
                self._buckets[key] = (tokens, now)
                return BucketResult(False, 0, math.ceil((1 - tokens) * 1000 / rate),
                                    math.ceil((burst - tokens) * 1000 / rate))
            tokens -= 1
            self._buckets[key] = (tokens, now)
            if len(self._buckets) > 100_000:
                self._buckets.clear()  # bound memory; a cleared bucket only starts full again
            return BucketResult(True, math.floor(tokens), 0, math.ceil((burst - tokens) * 1000 / rate))

    def reset(self) -> None:
        with self._lock:
            self._buckets.clear()


local_bucket = LocalTokenBucket()
