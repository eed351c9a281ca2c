from django.apps import AppConfig


class UsageConfig(AppConfig):
    default_auto_field = "django.db.models.BigAutoField"
    name = "usage"
    verbose_name = "Usage and credits"

    def ready(self) -> None:
        # The composition root: usage.tasks imports usage.services, so the hooks that let a service start a task
        # (or let accounts reach usage) are wired here rather than by imports going the other way.
        from accounts.services import SIGNUP_HOOKS

        from .services.credits import CREDITS_EXHAUSTED_HOOKS, credits_signup_grant
        from .tasks import credits_exhausted_alert_enqueue

        # ready() can run more than once (tests, reloads): register each hook once.
        if credits_signup_grant not in SIGNUP_HOOKS:
            SIGNUP_HOOKS.append(credits_signup_grant)
        if credits_exhausted_alert_enqueue not in CREDITS_EXHAUSTED_HOOKS:
            CREDITS_EXHAUSTED_HOOKS.append(credits_exhausted_alert_enqueue)
        # Billing reaches the credit ledger only through this registration (billing never imports usage).
        from billing.extensions import credit_ledger_register

        from .ledger import UsageCreditLedger

        credit_ledger_register(UsageCreditLedger())
