"""Celery application. Settings live in Django settings under the CELERY_ namespace."""
import os

from celery import Celery

os.environ.setdefault("DJANGO_SETTINGS_MODULE", "billing_site.settings")

app = Celery("billing_site")
app.config_from_object("django.conf:settings", namespace="CELERY")
# `<app>.tasks` of every installed app, and the back office's tasks, which live in their own package
# (billing/backoffice/tasks.py) beside the services they call. Both lazy: imported when the worker finalizes.
app.autodiscover_tasks()
app.autodiscover_tasks(["billing.backoffice"])


# --- Sending tasks while the broker may be down -------------------------------------------------------------------
# After a failed send, further sends are skipped for this long: during a broker outage every request would otherwise
# wait on a connection attempt, and the callers' rows are swept once the broker is back anyway.
BROKER_DOWN_BACKOFF_SECONDS = 5.0
_broker_down_until = 0.0


def task_send(task, args: tuple = (), kwargs: dict | None = None, *, what: str, **options) -> bool:
    """
    `task.apply_async(...)` that never raises: False (logged with `what`) when the broker cannot take the message.
    Only for callers whose work is also recorded in a row that a periodic sweep re-sends (webhook events, refund
    requests): the message is a fast path, the row is the record.
    """
    import logging
    import time

    global _broker_down_until
    logger = logging.getLogger("billing_site.celery")
    if not (app.conf.task_always_eager or app.conf.get("CELERY_TASK_ALWAYS_EAGER")) and (
            time.monotonic() < _broker_down_until):
        logger.warning("broker marked down: %s not sent now; the sweep will send it", what)
        return False
    try:
        task.signature(args, kwargs, **options).apply_async()
    except Exception as error:  # noqa: BLE001 - kombu/redis/amqp errors alike: the row is swept later
        _broker_down_until = time.monotonic() + BROKER_DOWN_BACKOFF_SECONDS
        logger.error("broker unavailable: %s not sent (%r); the sweep will send it", what, error)
        return False
    return True
