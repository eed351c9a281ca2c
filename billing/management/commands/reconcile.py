"""`python manage.py reconcile [--since DATE]`: compare local records with Stripe, report drift (repair in the admin)."""
from datetime import datetime, time

from django.core.management.base import BaseCommand, CommandError
from django.utils import timezone
from django.utils.dateparse import parse_date, parse_datetime

from billing.backoffice.reconciliation import reconciliation_run


class Command(BaseCommand):
    help = "Compare subscriptions, invoices, charges, refund requests and credit packs with Stripe and report drift."

    def add_arguments(self, parser):
        parser.add_argument("--since", help="Only Stripe objects created since this date (YYYY-MM-DD or ISO 8601).")

    def handle(self, *args, since=None, **options):
        since_dt = None
        if since:
            since_dt = parse_datetime(since)
            if since_dt is None:
                day = parse_date(since)
                if day is None:
                    raise CommandError(f"--since {since!r} is not a date (YYYY-MM-DD) or an ISO 8601 time.")
                since_dt = datetime.combine(day, time.min)
            if timezone.is_naive(since_dt):
                since_dt = timezone.make_aware(since_dt, timezone.get_default_timezone())
        run = reconciliation_run(since=since_dt, triggered_by="command", progress=self.stdout.write)
        for kind, figures in run.checked.items():
            self.stdout.write(f"{kind:>16}: {figures}")
        style = self.style.WARNING if run.drift_count else self.style.SUCCESS
        self.stdout.write(style(f"Reconciliation #{run.pk}: {run.drift_count} drifting object(s)."))
