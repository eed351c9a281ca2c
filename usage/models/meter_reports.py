"""Metered overage sent to Stripe meters, and the nightly comparison with what Stripe counted."""
from django.db import models
from django.db.models import Q
from django.utils import timezone
from django.utils.translation import gettext_lazy as _

from accounts.models import Team


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
