"""Push the catalog to Stripe (idempotent), register the webhook endpoint, mirror it all into dj-stripe."""
from django.core.management.base import BaseCommand

from billing.services.setup import catalog_push


class Command(BaseCommand):
    help = "Push billing/catalog.toml to Stripe idempotently, register the webhook endpoint, sync dj-stripe tables."

    def add_arguments(self, parser):
        parser.add_argument("--no-webhook", action="store_true", help="Do not register the webhook endpoint.")

    def handle(self, *args, no_webhook: bool = False, **options):
        report = catalog_push(register_webhook=not no_webhook, out=self.stdout.write)
        style = self.style.SUCCESS if report.writes == 0 else self.style.WARNING
        self.stdout.write(style(f"billing_setup: {report.writes} write(s)."))
