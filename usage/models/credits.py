"""The credit ledger (append-only) and its cached sum per team."""
from django.conf import settings
from django.db import models
from django.db.models import Q
from django.utils import timezone
from django.utils.translation import gettext_lazy as _

from accounts.models import Team


class CreditBalance(models.Model):
    """
    The cached sum of a team's ledger. Written only by usage.services.credits together with a ledger insert, with a
    conditional UPDATE (`... WHERE balance >= amount`); the CHECK constraint is the last line of defence.
    """

    team = models.OneToOneField(Team, on_delete=models.CASCADE, primary_key=True, related_name="credit_balance")
    balance = models.BigIntegerField(default=0, help_text="Credits available (whole credits). Never negative.")
    updated = models.DateTimeField(default=timezone.now)

    class Meta:
        constraints = [models.CheckConstraint(condition=Q(balance__gte=0), name="credit_balance_never_negative")]

    def __str__(self) -> str:
        return f"{self.team_id}: {self.balance} credits"


class CreditLedgerEntry(models.Model):
    """One movement of credits. Append-only: corrections are new entries, never edits."""

    class Reason(models.TextChoices):
        SIGNUP_GRANT = "signup_grant", _("Signup grant")
        PURCHASE = "purchase", _("Purchase")
        USAGE = "usage", _("Usage")
        REFUND_CLAWBACK = "refund_clawback", _("Refund clawback")
        STAFF_GRANT = "staff_grant", _("Staff grant")
        STAFF_REMOVAL = "staff_removal", _("Staff removal")
        EXPIRY = "expiry", _("Expiry")

    # No single-column index on team: the unique (team, reason, reference) and (team, -created) indexes lead with it,
    # and every index is written inside the debit's locked section.
    team = models.ForeignKey(Team, on_delete=models.CASCADE, related_name="credit_entries", db_index=False)
    delta = models.BigIntegerField(help_text="Credits added (positive) or removed (negative).")
    balance_after = models.BigIntegerField(help_text="The team's balance right after this entry.")
    reason = models.CharField(max_length=20, choices=Reason.choices)
    reference = models.CharField(
        max_length=255,
        help_text="What caused it: payment (checkout session / payment intent id), usage event key, staff action.",
    )
    created_by = models.ForeignKey(
        settings.AUTH_USER_MODEL, on_delete=models.SET_NULL, null=True, blank=True, related_name="+"
    )
    note = models.CharField(max_length=500, blank=True)
    metadata = models.JSONField(default=dict, blank=True, help_text="E.g. the shortfall of a partial removal.")
    created = models.DateTimeField(default=timezone.now)

    class Meta:
        verbose_name_plural = "credit ledger entries"
        ordering = ["-created", "-id"]
        constraints = [
            # Idempotency: the same (team, reason, reference) moves credits once.
            models.UniqueConstraint(fields=["team", "reason", "reference"], name="credit_entry_unique_reference"),
            models.CheckConstraint(condition=Q(balance_after__gte=0), name="credit_entry_balance_after_gte_0"),
        ]
        indexes = [models.Index(fields=["team", "-created"], name="credit_entry_team_created")]

    def __str__(self) -> str:
        return f"{self.delta:+d} {self.reason} ({self.reference})"
