"""
Usage metering, quotas and the credit ledger.

Append-only history: `CreditLedgerEntry` and `UsageEvent` rows are never updated or deleted by the application.
Cached sums live beside them with database constraints: `CreditBalance.balance` (CHECK balance >= 0, moved in the
same transaction as the ledger insert) and `UsageDailyTotal.quantity` (moved in the same transaction as the
event inserts, only for rows that were really inserted).
"""
from django.conf import settings
from django.db import models
from django.db.models import Q
from django.utils import timezone
from django.utils.translation import gettext_lazy as _

from accounts.models import APIKey, Team


class CreditBalance(models.Model):
    """
    The cached sum of a team's ledger. Written only by usage.services together with a ledger insert, with a
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


class UsageEvent(models.Model):
    """One unit of metered usage. Append-only; `idempotency_key` is unique per team so a repeat counts once."""

    class Source(models.TextChoices):
        METERED_CALL = "metered_call", _("Metered API call")
        INGEST = "ingest", _("Reported by API")

    # Indexed through the unique (team, idempotency_key) and (team, occurred_at) indexes, not on its own.
    team = models.ForeignKey(Team, on_delete=models.CASCADE, related_name="usage_events", db_index=False)
    api_key = models.ForeignKey(APIKey, on_delete=models.SET_NULL, null=True, blank=True, related_name="+")
    user = models.ForeignKey(settings.AUTH_USER_MODEL, on_delete=models.SET_NULL, null=True, blank=True,
                             related_name="+")
    metric = models.CharField(max_length=64)
    quantity = models.BigIntegerField(help_text="Units of the metric (positive).")
    occurred_at = models.DateTimeField(help_text="When the usage happened (the period it counts in).")
    idempotency_key = models.CharField(max_length=255)
    source = models.CharField(max_length=20, choices=Source.choices, default=Source.METERED_CALL)
    metadata = models.JSONField(default=dict, blank=True)
    created = models.DateTimeField(default=timezone.now, help_text="When the row was stored.")

    class Meta:
        ordering = ["-occurred_at", "-id"]
        constraints = [
            models.UniqueConstraint(fields=["team", "idempotency_key"], name="usage_event_unique_key_per_team"),
            models.CheckConstraint(condition=Q(quantity__gt=0), name="usage_event_quantity_positive"),
        ]
        indexes = [models.Index(fields=["team", "occurred_at"], name="usage_event_team_occurred")]

    def __str__(self) -> str:
        return f"{self.metric} x{self.quantity} ({self.idempotency_key})"


class UsageDailyTotal(models.Model):
    """
    Per team, metric, UTC day and API key: the sum of the stored UsageEvent quantities. Incremented in the same
    transaction as the events it counts (only the events that were really inserted), so it never double counts.
    `api_key_ref` is the API key id or 0 (session users / ingest without key): a plain integer so the unique
    constraint works (NULLs are distinct in SQL).
    """

    team = models.ForeignKey(Team, on_delete=models.CASCADE, related_name="+")
    metric = models.CharField(max_length=64)
    day = models.DateField()
    api_key_ref = models.BigIntegerField(default=0)
    quantity = models.BigIntegerField(default=0)

    class Meta:
        constraints = [
            models.UniqueConstraint(fields=["team", "metric", "day", "api_key_ref"], name="usage_daily_unique"),
            models.CheckConstraint(condition=Q(quantity__gte=0), name="usage_daily_quantity_gte_0"),
        ]
        indexes = [models.Index(fields=["team", "day"], name="usage_daily_team_day")]


class TeamUsagePolicy(models.Model):
    """Settings a team's owner controls: the spend cap on metered overage."""

    team = models.OneToOneField(Team, on_delete=models.CASCADE, primary_key=True, related_name="usage_policy")
    spend_cap_minor = models.BigIntegerField(
        null=True, blank=True, help_text="Most overage to bill per period, minor units of `currency`; empty: no cap."
    )
    currency = models.CharField(max_length=3, default="usd", help_text="ISO currency (lower case) of the cap.")
    updated_by = models.ForeignKey(settings.AUTH_USER_MODEL, on_delete=models.SET_NULL, null=True, blank=True,
                                   related_name="+")
    updated = models.DateTimeField(default=timezone.now)

    class Meta:
        verbose_name_plural = "team usage policies"
        constraints = [
            models.CheckConstraint(
                condition=Q(spend_cap_minor__isnull=True) | Q(spend_cap_minor__gte=0), name="spend_cap_gte_0"
            )
        ]


class MeterReport(models.Model):
    """
    One aggregation row: overage units of one team and metric in one period that are (to be) sent to a Stripe
    meter as one meter event. The Stripe `identifier` and the idempotency key derive from this row, so however
    often sending is retried, Stripe counts it once. A row is PENDING until Stripe accepted it (SENT).
    """

    class Status(models.TextChoices):
        PENDING = "pending", _("Pending")
        SENT = "sent", _("Sent")
        # A sent correction that the drift check took back with a meter event adjustment (cancel by identifier).
        CANCELED = "canceled", _("Canceled by adjustment")

    class Kind(models.TextChoices):
        OVERAGE = "overage", _("Overage")
        CORRECTION = "correction", _("Drift correction")

    team = models.ForeignKey(Team, on_delete=models.CASCADE, related_name="meter_reports")
    metric = models.CharField(max_length=64)
    event_name = models.CharField(max_length=100, help_text="The Stripe meter's event_name.")
    period_start = models.DateTimeField()
    quantity = models.BigIntegerField(help_text="Overage units in this report (positive).")
    kind = models.CharField(max_length=20, choices=Kind.choices, default=Kind.OVERAGE)
    status = models.CharField(max_length=10, choices=Status.choices, default=Status.PENDING, db_index=True)
    stripe_customer_id = models.CharField(max_length=255)
    event_timestamp = models.DateTimeField(help_text="The meter event's timestamp (inside the period).")
    attempts = models.PositiveIntegerField(default=0)
    last_error = models.TextField(blank=True)
    created = models.DateTimeField(default=timezone.now)
    sent_at = models.DateTimeField(null=True, blank=True)

    class Meta:
        ordering = ["created", "id"]
        constraints = [models.CheckConstraint(condition=Q(quantity__gt=0), name="meter_report_quantity_positive")]
        indexes = [models.Index(fields=["team", "metric", "period_start"], name="meter_report_team_period")]

    @property
    def identifier(self) -> str:
        # Derived from our own row: the same row always produces the same Stripe identifier.
        return f"usage-meter-report-{self.pk}"

    def __str__(self) -> str:
        return f"{self.identifier} {self.metric} x{self.quantity} ({self.status})"


class MeterDriftCheck(models.Model):
    """The nightly comparison of what we reported with Stripe's meter event summaries."""

    class Outcome(models.TextChoices):
        MATCH = "match", _("Match")
        DRIFT = "drift", _("Drift reported")
        CORRECTED = "corrected", _("Drift corrected")

    team = models.ForeignKey(Team, on_delete=models.CASCADE, related_name="+")
    metric = models.CharField(max_length=64)
    period_start = models.DateTimeField()
    window_end = models.DateTimeField(help_text="Reports with an event timestamp before this were compared.")
    project_total = models.BigIntegerField()
    stripe_total = models.BigIntegerField()
    outcome = models.CharField(max_length=10, choices=Outcome.choices)
    correction = models.ForeignKey(MeterReport, on_delete=models.SET_NULL, null=True, blank=True, related_name="+")
    created = models.DateTimeField(default=timezone.now)

    class Meta:
        ordering = ["-created"]

    @property
    def drift(self) -> int:
        return self.stripe_total - self.project_total


class UsageAlert(models.Model):
    """An alert email sent to the team's owner; unique per period so each is sent once."""

    class Kind(models.TextChoices):
        QUOTA_80 = "quota_80", _("80% of included usage")
        QUOTA_100 = "quota_100", _("100% of included usage")
        CREDITS_EXHAUSTED = "credits_exhausted", _("Credits exhausted")

    team = models.ForeignKey(Team, on_delete=models.CASCADE, related_name="usage_alerts")
    kind = models.CharField(max_length=20, choices=Kind.choices)
    metric = models.CharField(max_length=64, blank=True, help_text="Empty for credit alerts.")
    period_start = models.DateTimeField()
    sent_to = models.EmailField()
    created = models.DateTimeField(default=timezone.now)

    class Meta:
        ordering = ["-created"]
        constraints = [
            models.UniqueConstraint(fields=["team", "kind", "metric", "period_start"], name="usage_alert_once")
        ]


class UsagePeriodClose(models.Model):
    """The monthly rollover's record of a finished period per team and metric (events for it are refused after)."""

    team = models.ForeignKey(Team, on_delete=models.CASCADE, related_name="+")
    metric = models.CharField(max_length=64)
    period_start = models.DateTimeField()
    period_end = models.DateTimeField()
    used = models.BigIntegerField()
    included = models.BigIntegerField()
    overage = models.BigIntegerField()
    plan_key = models.CharField(max_length=50)
    created = models.DateTimeField(default=timezone.now)

    class Meta:
        ordering = ["-period_start"]
        constraints = [
            models.UniqueConstraint(fields=["team", "metric", "period_start"], name="usage_period_close_once")
        ]
