from django.apps import AppConfig


class BillingConfig(AppConfig):
    default_auto_field = "django.db.models.BigAutoField"
    name = "billing"
    verbose_name = "Billing"

    def ready(self) -> None:
        from django.conf import settings
        from djstripe.models import Session

        from .hooks import hooks_register
        from .services.mirror import djstripe_account_memo_install, djstripe_batch_lookup_install
        from .stripe_gateway import configure_module_sdk
        from .webhooks.registry import webhook_handlers_load

        # Billing's hooks into accounts (the seat limit) and the one table of webhook handlers, by event type.
        hooks_register()
        webhook_handlers_load()

        # dj-stripe re-retrieves Checkout Sessions with `expand[]=total_details.breakdown`, which the offline
        # emulator rejects. The project never reads the discount breakdown, so the mirror does without it.
        # Same for `line_items.data.discounts`.
        Session.expand_fields = [
            f for f in Session.expand_fields if f not in ("total_details.breakdown", "line_items.data.discounts")
        ]
        # dj-stripe (its admin actions, its stock view, BO's code) calls the module-level SDK: point it where the
        # gateway points (api base, pinned version, key, retries) from the start, not only after a gateway call.
        configure_module_sdk()
        djstripe_batch_lookup_install()  # foreign keys of a webhook drain's batch (a no-op outside one)
        if settings.BILLING_DJSTRIPE_ACCOUNT_MEMO:
            djstripe_account_memo_install()
