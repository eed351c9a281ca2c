"""Replay stored Stripe events: every failed/parked one (`--failed`) or specific ones (`--id evt_... [--id ...]`)."""
from django.core.management.base import BaseCommand, CommandError

from billing.models import WebhookEvent
from billing.services.webhooks import webhook_event_replay


class Command(BaseCommand):
    help = "Replay stored Stripe webhook events through the pipeline (oldest first)."

    def add_arguments(self, parser):
        parser.add_argument("--failed", action="store_true", help="Replay every failed or parked event.")
        parser.add_argument("--id", action="append", default=[], dest="ids",
                            help="Stripe event id (evt_...) or stored row id; repeatable.")

    def handle(self, *args, failed: bool = False, ids: list[str] = (), **options):
        if not failed and not ids:
            raise CommandError("Give --failed or at least one --id.")
        targets: list[str] = list(ids)
        if failed:
            targets += [str(pk) for pk in WebhookEvent.objects.filter(
                status__in=[WebhookEvent.Status.FAILED, WebhookEvent.Status.PARKED]
            ).order_by("stripe_created", "id").values_list("pk", flat=True)]
        counts: dict[str, int] = {}
        for target in targets:
            status = webhook_event_replay(event_id=target)
            counts[status] = counts.get(status, 0) + 1
            self.stdout.write(f"{target}: {status}")
        self.stdout.write(self.style.SUCCESS(f"Replayed {len(targets)} event(s): {counts}"))
