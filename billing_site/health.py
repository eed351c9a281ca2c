"""
Liveness and readiness probes, and the Prometheus endpoint.

Readiness covers what every request needs (the database; Redis when configured, as cache, broker and rate-limit
store). Stripe is deliberately not a readiness check: a Stripe outage must not take every web process out of the
load balancer; billing calls fail on their own with a BillingError the user can read.
"""
import hmac
import logging

from django.conf import settings
from django.db import connection
from django.http import HttpResponse, JsonResponse
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
            logger.warning("readiness check failed: %s", name, extra={"check": name, "error": repr(exc)})
            results[name] = "unavailable"
            failed.append(name)
        else:
            results[name] = "ok"
    status = 503 if failed else 200
    return JsonResponse({"status": "unavailable" if failed else "ok", "checks": results, "failed": failed},
                        status=status)


@never_cache
def metrics(request):
    """
    Prometheus metrics. Scrapers send `Authorization: Bearer <METRICS_BEARER_TOKEN>`. Production requires the token
    (start-up refuses without it); only development (DJANGO_DEBUG=true) may leave it unset and the endpoint open.
    """
    from django_prometheus.exports import ExportToDjangoView

    token = settings.METRICS_BEARER_TOKEN
    if not token and settings.IS_PRODUCTION:
        # Production refuses to start without a token (settings); this guards a settings module that skipped that.
        return HttpResponse("Forbidden: METRICS_BEARER_TOKEN is not configured\n", status=403,
                            content_type="text/plain")
    if token:
        sent = request.headers.get("Authorization", "").removeprefix("Bearer ").strip()
        if not hmac.compare_digest(sent.encode(), token.encode()):
            return HttpResponse("Unauthorized\n", status=401, content_type="text/plain",
                                headers={"WWW-Authenticate": "Bearer"})
    return ExportToDjangoView(request)
