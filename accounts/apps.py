from django.apps import AppConfig


class AccountsConfig(AppConfig):
    default_auto_field = "django.db.models.BigAutoField"
    name = "accounts"
    verbose_name = "Accounts and teams"

    def ready(self) -> None:
        # Registers the OpenAPI description of API-key authentication with drf-spectacular.
        from .api import schema  # noqa: F401
        # Registers the system check that a seat-limit provider (billing) is present.
        from . import selectors  # noqa: F401
        # Audits django-axes lockouts.
        from . import signals  # noqa: F401
