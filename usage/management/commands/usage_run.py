"""Run a usage job by hand (what the Celery beat schedule runs): flush, report, drift, alerts, rollover, expire."""
from django.core.management.base import BaseCommand

from usage import tasks
from usage.metering.buffer import buffer_flush


class Command(BaseCommand):
    help = "Run a usage job now: flush | report | drift | alerts | rollover | expire"

    def add_arguments(self, parser):
        parser.add_argument("job", choices=["flush", "report", "drift", "alerts", "rollover", "expire"])

    def handle(self, *args, job: str, **options):
        if job == "flush":
            result = buffer_flush()
            self.stdout.write(f"flushed {result.events_read} events ({result.events_inserted} new) in "
                              f"{result.batches} batches, {result.recovered_batches} recovered")
            return
        task = {
            "report": tasks.usage_overage_report_task,
            "drift": tasks.usage_meter_drift_check_task,
            "alerts": tasks.usage_alerts_task,
            "rollover": tasks.usage_period_rollover_task,
            "expire": tasks.usage_credits_expire_task,
        }[job]
        self.stdout.write(f"{job}: {task.run()}")
