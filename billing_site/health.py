"""Liveness and readiness probes."""
import logging

from django.conf import settings
from django.db import connection
from django.http import JsonResponse
from django.views.decorators.cache import never_cache

logger = logging.getLogger(__name__)


@never_cache
def healthz(request):
    """The process is alive and serving. Touches nothing else on purpose."""
    return JsonResponse({"status": "ok"})


def _check_database() -> None:
    with connection.cursor() as cursor:
        cursor.execute("SELECT 1")
        cursor.fetchone()


def _check_redis() -> None:
    import redis

    client = redis.Redis.from_url(settings.REDIS_URL, socket_connect_timeout=1, socket_timeout=1)
    try:
        client.ping()
    finally:
        client.close()


@never_cache
def readyz(request):
    """Ready to take traffic: the database and (when configured) Redis answer. 503 names what failed."""
    checks = {"database": _check_database}
    if settings.REDIS_URL:
        checks["redis"] = _check_redis
    results, failed = {}, []
    for name, check in checks.items():
        try:
            check()
        except Exception as exc:  # any failure means not ready; the reason goes to the log, not the world
            logger.warning("readiness check failed", extra={"check": name, "error": repr(exc)})
            results[name] = "unavailable"
            failed.append(name)
        else:
            results[name] = "ok"
    status = 503 if failed else 200
    return JsonResponse({"status": "unavailable" if failed else "ok", "checks": results, "failed": failed},
                        status=status)
