from django.apps import AppConfig


class BillingConfig(AppConfig):
    default_auto_field = "django.db.models.BigAutoField"
    name = "billing"
    verbose_name = "Billing"

    def ready(self) -> None:
        from . import admin_webhooks  # noqa: F401  (WebhookEvent admin; BO owns admin.py)
        from .webhooks import handlers  # noqa: F401  (registers the project's webhook handlers)
