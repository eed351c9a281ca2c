"""The dunning page's model: a proxy of dj-stripe's Subscription, so the page has its own admin entry and permission."""
from djstripe.models import Subscription


class DunningSubscription(Subscription):
    class Meta:
        proxy = True
        verbose_name = "dunning case"
        verbose_name_plural = "dunning (past due, unpaid)"
        # Checked by the services (billing.backoffice.dunning), not only by hidden buttons.
        permissions = [
            ("retry_invoice_payment", "Can retry a failed invoice payment now"),
            ("send_payment_update_email", "Can email a customer a link to update their card"),
            ("pause_subscription", "Can pause a subscription's payment collection"),
        ]
