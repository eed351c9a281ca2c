from django.db import models
from django.utils import timezone


class BillingProfile(models.Model):
    """
    The team's link to its Stripe customer, plus billing flags staff act on.

    One row per team (OneToOne). The Stripe customer is created lazily at the first checkout; `customer_generation`
    counts customers unlinked after a `customer.deleted`, so the idempotency key of the next customer differs from
    the deleted one's (Stripe would otherwise replay the deleted customer for 24 hours).
    """

    team = models.OneToOneField(
        "accounts.Team", on_delete=models.CASCADE, related_name="billing_profile", help_text="The paying team."
    )
    stripe_customer_id = models.CharField(
        max_length=255, null=True, blank=True, unique=True,
        help_text="Stripe customer id (cus_...). Empty until the first checkout, or after the customer was deleted.",
    )
    customer_generation = models.PositiveIntegerField(
        default=0, help_text="How many Stripe customers this team has had unlinked (part of the idempotency key)."
    )
    dispute_flagged_at = models.DateTimeField(
        null=True, blank=True, help_text="Set when a charge of this team is disputed; staff clear it after review."
    )
    dispute_note = models.TextField(blank=True, help_text="Last dispute seen: id, reason, amount.")
    created = models.DateTimeField(default=timezone.now)
    updated = models.DateTimeField(auto_now=True)

    class Meta:
        verbose_name = "billing profile"

    def __str__(self) -> str:
        return f"{self.team} → {self.stripe_customer_id or 'no customer'}"
