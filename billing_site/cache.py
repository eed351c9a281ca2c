"""
The default cache on Redis, degrading to "always a miss" while Redis is unreachable.

Everything the project caches (a team's plan key, ...) is a copy of a database row, so a cache that cannot answer is
the same as an empty one: reads fall through to the database, writes and deletes are dropped. Pages and the metered
API therefore keep working through a Redis outage instead of answering 500 (issue 11). Metering's own Redis state
(rate limits, counters) is not a cache and fails closed with 503: usage/metering/decorator.py.

A dropped `delete` can leave a stale value behind once Redis is back: every cached value here has a short TTL
(TEAM_PLAN_CACHE_SECONDS) for that reason. Errors are logged at most once per CACHE_ERROR_LOG_SECONDS per process, so
an outage does not write one line per request.
"""
import logging
import threading
import time

from django.core.cache.backends.redis import RedisCache, RedisCacheClient
from redis.exceptions import RedisError

logger = logging.getLogger("billing_site.cache")

CACHE_ERROR_LOG_SECONDS = 30.0

_state_lock = threading.Lock()
_last_error_logged = 0.0
_last_error_at = 0.0


def cache_last_error_age() -> float | None:
    """Seconds since this process last failed to reach the cache (None: never). Read by /metrics."""
    return None if not _last_error_at else time.monotonic() - _last_error_at


def _note_error(operation: str, error: Exception) -> None:
    global _last_error_logged, _last_error_at
    now = time.monotonic()
    with _state_lock:
        _last_error_at = now
        if now - _last_error_logged < CACHE_ERROR_LOG_SECONDS:
            return
        _last_error_logged = now
    logger.warning("cache unavailable (%s): treated as a miss; %r", operation, error,
                   extra={"cache_operation": operation})


def _degrading(name: str, fallback):
    parent = getattr(RedisCache, name)

    def method(self, *args, **kwargs):
        try:
            return parent(self, *args, **kwargs)
        except RedisError as error:
            _note_error(name, error)
            return fallback(*args, **kwargs)

    method.__name__ = name
    method.__doc__ = f"RedisCache.{name}, answering as an empty cache while Redis is unreachable."
    return method


def _default_from(position: int):
    def fallback(*args, **kwargs):
        if "default" in kwargs:
            return kwargs["default"]
        return args[position] if len(args) > position else None
    return fallback


class ReusingRedisCacheClient(RedisCacheClient):
    """
    Django's Redis cache client, keeping one `redis.Redis` per connection pool instead of building a new one for
    every cache call (redis-py fills a table of ~160 response callbacks per instance: a third of a cache call's CPU,
    paid on every webhook delivery's doorbell and every page's plan lookup). `redis.Redis` is thread-safe over its
    pool, and the pool itself resets after a fork.
    """

    def __init__(self, *args, **kwargs):
        super().__init__(*args, **kwargs)
        self._reused_clients: dict[int, object] = {}

    def get_client(self, key=None, *, write=False):
        pool = self._get_connection_pool(write)
        client = self._reused_clients.get(id(pool))
        if client is None:
            client = self._reused_clients.setdefault(id(pool), self._client(connection_pool=pool))
        return client


class DegradingRedisCache(RedisCache):
    """Django's RedisCache whose failures are logged and answered as misses (see the module docstring)."""

    def __init__(self, server, params):
        super().__init__(server, params)
        self._class = ReusingRedisCacheClient

    get = _degrading("get", _default_from(1))
    get_many = _degrading("get_many", lambda *a, **k: {})
    has_key = _degrading("has_key", lambda *a, **k: False)
    # add/set/touch: nothing stored. add answers True so callers using add() as "first writer wins" proceed to the
    # database, which is the authority anyway.
    add = _degrading("add", lambda *a, **k: True)
    set = _degrading("set", lambda *a, **k: None)
    set_many = _degrading("set_many", lambda *a, **k: [])
    touch = _degrading("touch", lambda *a, **k: False)
    delete = _degrading("delete", lambda *a, **k: False)
    delete_many = _degrading("delete_many", lambda *a, **k: None)
    clear = _degrading("clear", lambda *a, **k: False)
