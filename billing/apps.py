from django.apps import AppConfig


class BillingConfig(AppConfig):
    default_auto_field = "django.db.models.BigAutoField"
    name = "billing"
    verbose_name = "Billing"

    def ready(self) -> None:
        from djstripe.models import Session

        from .hooks import hooks_register

        hooks_register()
        from .webhooks import handlers  # noqa: F401  (registers the project's webhook handlers)
        from .webhooks import backoffice_handlers  # noqa: F401  (refund and dispute handlers of the back office)

        # dj-stripe re-retrieves Checkout Sessions with `expand[]=total_details.breakdown`, which the offline
        # emulator rejects. The project never reads the discount breakdown, so the mirror does without it.
        # Same for `line_items.data.discounts`.
        Session.expand_fields = [
            f for f in Session.expand_fields if f not in ("total_details.breakdown", "line_items.data.discounts")
        ]
        _json_fields_accept_decimals()
        # dj-stripe (its admin actions, its stock view, BO's code) calls the module-level SDK: point it where the
        # gateway points (api base, pinned version, key, retries) from the start, not only after a gateway call.
        from .stripe_gateway import configure_module_sdk

        configure_module_sdk()
        from django.conf import settings

        if settings.BILLING_DJSTRIPE_ACCOUNT_MEMO:
            from .services.mirror import djstripe_account_memo_install

            djstripe_account_memo_install()


def _json_fields_accept_decimals() -> None:
    """
    stripe 15 turns decimal strings (`unit_amount_decimal` of metered prices) into Decimal, and dj-stripe stores the
    raw object in JSON columns with the plain encoder, which refuses Decimal. Django's encoder writes it as a string,
    exactly as Stripe sent it.
    """
    from django.apps import apps
    from django.core.serializers.json import DjangoJSONEncoder
    from django.db.models import JSONField

    for model in apps.get_app_config("djstripe").get_models():
        for field in model._meta.concrete_fields:
            if isinstance(field, JSONField) and field.encoder is None:
                field.encoder = DjangoJSONEncoder
                # A runtime-only change: keep the field's migration state as dj-stripe ships it, so makemigrations
                # never proposes a migration inside the installed package.
                field.deconstruct = _deconstruct_without_encoder(field.deconstruct)


def _deconstruct_without_encoder(deconstruct):
    def wrapper():
        name, path, args, kwargs = deconstruct()
        kwargs.pop("encoder", None)
        return name, path, args, kwargs

    return wrapper
