"""What a team's owner controls about usage: the spend cap."""
from django.conf import settings
from django.db import models
from django.db.models import Q
from django.utils import timezone

from accounts.models import Team


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
