"""The Customer 360 page's model: a proxy of the team, so the back office can have its own admin and permissions."""
from accounts.models import Team


class CustomerAccount(Team):
    class Meta:
        proxy = True
        verbose_name = "customer (360)"
        verbose_name_plural = "customers (360)"
        # Support actions are real permissions, checked by the services (not only hidden buttons).
        permissions = [
            ("grant_credits", "Can grant credits (Support: up to BACKOFFICE_SUPPORT_CREDIT_LIMIT)"),
            ("grant_credits_unlimited", "Can grant credits above the Support limit"),
            ("remove_credits", "Can remove credits"),
            ("resync_customer", "Can resync a customer's Stripe objects"),
            ("cancel_subscription_at_period_end", "Can cancel a subscription at period end"),
            ("cancel_subscription_now", "Can cancel a subscription immediately"),
            ("extend_trial", "Can extend a trial"),
            ("replay_webhooks", "Can replay webhook events"),
            ("resend_receipt", "Can resend a receipt"),
            ("run_reconciliation", "Can run reconciliation and repair drift"),
            # dj-stripe's ~60 mirror lists are Finance's tools; Support works from the back-office pages.
            ("browse_stripe_mirror", "Can see the Stripe mirror (read-only) section"),
        ]
