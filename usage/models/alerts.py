"""Alert emails sent, one row per (team, kind, metric, period)."""
from django.db import models
from django.utils import timezone
from django.utils.translation import gettext_lazy as _

from accounts.models import Team


class UsageAlert(models.Model):
    """An alert email to the team (billing.emails' recipients), recorded once per (kind, metric, period)."""

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
