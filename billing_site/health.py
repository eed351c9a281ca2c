"""
Liveness and readiness probes, and the Prometheus endpoint.

Readiness is split by what losing a dependency means (issue 11):
- required: the database. Without it no page, API call or webhook can be served: 503, the load balancer takes the
  process out.
- degraded: Redis (cache, broker, metering state) and, when it is not Redis, the Celery broker. Without them pages
  still work (the cache degrades to the database), the webhook endpoint still stores events (the sweep applies them
  later) and metered calls answer 503 + Retry-After on their own. Taking every web process out of the load balancer
  would turn that partial outage into a full one, so readiness answers 200 with `"status": "degraded"`.
Stripe is deliberately not checked: a Stripe outage must not take every web process out of the load balancer;
billing calls fail on their own with a BillingError the user can read.

Each check's last result is exported in /metrics as `billing_dependency_up{dependency="..."}` (1 up, 0 down), with
the work the sweeps still have to do (`billing_backlog{kind="..."}`).
"""
import hmac
import logging

from django.conf import settings
from django.db import connection
from django.http import HttpResponse, JsonResponse
from django.views.decorators.cache import never_cache
from prometheus_client import Gauge

logger = logging.getLogger(__name__)

DEPENDENCY_UP = Gauge("billing_dependency_up", "1 when the dependency answered the last readiness check, else 0.",
                      ["dependency", "required"])
BACKLOG = Gauge("billing_backlog", "Rows the sweeps still have to apply or send, by kind.", ["kind"])


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


def _check_broker() -> None:
    from billing_site.celery import app

    with app.connection_for_write() as conn:
        conn.ensure_connection(max_retries=1, timeout=1)


def _checks() -> list[tuple[str, object, bool]]:
    """(name, check, required) for every dependency this deployment has."""
    checks = [("database", _check_database, True)]
    if settings.REDIS_URL:
        checks.append(("redis", _check_redis, False))
    broker = settings.CELERY_BROKER_URL or ""
    if broker and not broker.startswith("memory://") and broker != settings.REDIS_URL:
        checks.append(("broker", _check_broker, False))
    return checks


def dependencies_check() -> tuple[dict[str, str], list[str], list[str]]:
    """Run every check: (results by name, required ones that failed, optional ones that failed). Updates /metrics."""
    results, failed, degraded = {}, [], []
    for name, check, required in _checks():
        try:
            check()
        except Exception as exc:  # any failure counts as down; the reason goes to the log, not the world
            logger.warning("readiness check failed: %s", name, extra={"check": name, "error": repr(exc)})
            results[name] = "unavailable"
            (failed if required else degraded).append(name)
            DEPENDENCY_UP.labels(dependency=name, required=str(required).lower()).set(0)
        else:
            results[name] = "ok"
            DEPENDENCY_UP.labels(dependency=name, required=str(required).lower()).set(1)
    return results, failed, degraded


@never_cache
def readyz(request):
    """
    Ready to take traffic: 200 `ok`, or 200 `degraded` naming what optional dependency is down; 503 `unavailable`
    only when a required one (the database) is.
    """
    results, failed, degraded = dependencies_check()
    status = "unavailable" if failed else "degraded" if degraded else "ok"
    return JsonResponse({"status": status, "checks": results, "failed": failed, "degraded": degraded},
                        status=503 if failed else 200)


def _backlog_update() -> None:
    from django.db.models import Count
    from django.utils import timezone

    from billing.models import OutboundEmail, RefundRequest, WebhookEvent
    from usage.models import MeterReport

    BACKLOG.labels(kind="webhook_events_pending").set(
        WebhookEvent.objects.filter(status=WebhookEvent.Status.PENDING).count())
    BACKLOG.labels(kind="webhook_events_failed").set(
        WebhookEvent.objects.filter(status=WebhookEvent.Status.FAILED).count())
    BACKLOG.labels(kind="webhook_events_parked").set(
        WebhookEvent.objects.filter(status=WebhookEvent.Status.PARKED).count())
    BACKLOG.labels(kind="refund_requests_retrying").set(
        RefundRequest.objects.filter(status=RefundRequest.Status.PROCESSING, stripe_refund_id__isnull=True,
                                     stripe_tries__gt=0).count())
    BACKLOG.labels(kind="refund_requests_overdue").set(
        RefundRequest.objects.filter(status__in=[RefundRequest.Status.APPROVED, RefundRequest.Status.PROCESSING],
                                     stripe_refund_id__isnull=True, next_attempt_at__lt=timezone.now()).count())
    BACKLOG.labels(kind="meter_reports_pending").set(
        MeterReport.objects.filter(status=MeterReport.Status.PENDING).count())
    # The email outbox: waiting to be sent (pending or in a send), retrying, and parked for staff.
    # (status IN ..., not "not sent": the index on status skips the many sent rows)
    waiting = [s for s in OutboundEmail.Status.values if s != OutboundEmail.Status.SENT]
    emails = dict(OutboundEmail.objects.filter(status__in=waiting).values_list("status").annotate(n=Count("id"))
                  .order_by())
    BACKLOG.labels(kind="emails_pending").set(
        emails.get(OutboundEmail.Status.PENDING, 0) + emails.get(OutboundEmail.Status.SENDING, 0))
    BACKLOG.labels(kind="emails_failed").set(emails.get(OutboundEmail.Status.FAILED, 0))
    BACKLOG.labels(kind="emails_parked").set(emails.get(OutboundEmail.Status.PARKED, 0))


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
    # Fresh dependency states and backlog at each scrape (a few cheap queries; the scraper's interval bounds them).
    _results, failed, _degraded = dependencies_check()
    if not failed:
        try:
            _backlog_update()
        except Exception as exc:  # noqa: BLE001 - the metrics page must answer even when a count cannot be read
            logger.warning("backlog metrics not updated: %r", exc)
    return ExportToDjangoView(request)
