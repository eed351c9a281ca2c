"""
`manage.py run_scheduler`: the periodic jobs of CELERY_BEAT_SCHEDULE, run in this process, for the embedded default
(`make run` without REDIS_URL: no broker, so no beat and no worker).

Why not beat with the in-memory broker: the memory transport lives inside one process, and beat's messages would
never reach the web processes. Here each due job runs eagerly (`Task.apply`: the task's own code, its retries inline)
one after the other on this process's own database connection. The jobs are the same ones beat sends in production
(the fast sweeps of stored webhook events, refund requests and meter reports, the missed-event sweep, ...), so the
embedded default applies every event and retries failures as production does. One instance per database: scripts/run.sh
starts exactly one. A job that raises is logged and runs again at its next due time; nothing here is kept on disk
(a restart runs every interval job once at start-up, which every job allows: they are idempotent).
"""
import logging
import signal
import threading
import time
from datetime import timedelta

from celery.schedules import schedule as interval_schedule
from django.conf import settings
from django.core.management.base import BaseCommand
from django.db import close_old_connections
from django.utils import timezone

logger = logging.getLogger("billing.scheduler")


def _schedule_of(entry: dict):
    value = entry["schedule"]
    if isinstance(value, (int, float)):
        return interval_schedule(run_every=timedelta(seconds=value))
    if isinstance(value, timedelta):
        return interval_schedule(run_every=value)
    return value  # a celery crontab/schedule object


class Command(BaseCommand):
    help = "Run the periodic jobs of CELERY_BEAT_SCHEDULE in-process (the embedded default has no beat)."

    def add_arguments(self, parser):
        parser.add_argument("--once", action="store_true", help="Run every interval job once, then exit.")
        parser.add_argument("--tick", type=float, default=1.0, help="Seconds between checks of what is due.")

    def handle(self, *args, **options):
        from billing_site.celery import app

        app.loader.import_default_modules()  # autodiscovery, as a worker does at start-up
        stop = threading.Event()
        for signum in (signal.SIGINT, signal.SIGTERM):
            signal.signal(signum, lambda *_: stop.set())
        jobs = []
        for name, entry in settings.CELERY_BEAT_SCHEDULE.items():
            sched = _schedule_of(entry)
            # Interval jobs run at start-up (work left by the previous run is picked up at once); crontabs wait.
            last = None if isinstance(sched, interval_schedule) else timezone.now()
            jobs.append({"name": name, "task": entry["task"], "schedule": sched, "last": last,
                         "args": entry.get("args", ()), "kwargs": entry.get("kwargs", {})})
        self.stdout.write(f"in-process scheduler: {len(jobs)} periodic jobs (" +
                          ", ".join(j["name"] for j in jobs) + ")")
        while not stop.is_set():
            for job in jobs:
                if stop.is_set():
                    break
                if job["last"] is not None and not job["schedule"].is_due(job["last"]).is_due:
                    continue
                job["last"] = timezone.now()
                self._run(app, job)
            if options["once"]:
                return
            stop.wait(options["tick"])

    def _run(self, app, job) -> None:
        close_old_connections()
        started = time.monotonic()
        try:
            result = app.tasks[job["task"]].apply(args=job["args"], kwargs=job["kwargs"], throw=False)
            if result.failed():
                logger.error("periodic job %s failed: %r", job["name"], result.result)
        except Exception:  # noqa: BLE001 - one failing job must not stop the others
            logger.exception("periodic job %s failed", job["name"])
        finally:
            close_old_connections()
        elapsed = time.monotonic() - started
        if elapsed > 5:
            logger.info("periodic job %s took %.1f s", job["name"], elapsed)
