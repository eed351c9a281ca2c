from django.apps import AppConfig


class UsageConfig(AppConfig):
    default_auto_field = "django.db.models.BigAutoField"
    name = "usage"
    verbose_name = "Usage and credits"

    def ready(self) -> None:
        from accounts.services import SIGNUP_HOOKS

        from .services import credits_signup_grant

        # ready() can run more than once (tests, reloads): register the hook once.
        if credits_signup_grant not in SIGNUP_HOOKS:
            SIGNUP_HOOKS.append(credits_signup_grant)

        from billing.extensions import credit_ledger_register
        from .ledger import UsageCreditLedger
        credit_ledger_register(UsageCreditLedger())
