"""Usage events (append-only), their daily sums and the monthly close of a period."""
from django.conf import settings
from django.db import models
from django.db.models import Q
from django.utils import timezone
from django.utils.translation import gettext_lazy as _

from accounts.models import APIKey, Team


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
