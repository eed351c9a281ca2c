"""Reconciliation runs and the drift they find between local records and Stripe (shown in the admin, repairable)."""
from django.conf import settings
from django.db import models
from django.utils import timezone
from django.utils.translation import gettext_lazy as _


class ReconciliationRun(models.Model):
    class Status(models.TextChoices):
        RUNNING = "running", _("Running")
        FINISHED = "finished", _("Finished")
        FAILED = "failed", _("Failed")

    started_at = models.DateTimeField(default=timezone.now)
    finished_at = models.DateTimeField(null=True, blank=True)
    since = models.DateTimeField(null=True, blank=True, help_text="Only Stripe objects created since then.")
    status = models.CharField(max_length=10, choices=Status.choices, default=Status.RUNNING)
    checked = models.JSONField(default=dict, blank=True, help_text="Objects compared, per kind.")
    drift_count = models.PositiveIntegerField(default=0)
    error = models.TextField(blank=True, default="")
    triggered_by = models.CharField(max_length=32, default="command", help_text="command, schedule or admin.")

    class Meta:
        ordering = ["-started_at"]

    def __str__(self) -> str:
        return f"Reconciliation #{self.pk} ({self.status}, {self.drift_count} drift)"


class ReconciliationDrift(models.Model):
    class Kind(models.TextChoices):
        SUBSCRIPTION_STATUS = "subscription_status", _("Subscription status")
        SUBSCRIPTION_PLAN = "subscription_plan", _("Subscription plan")
        INVOICE_STATUS = "invoice_status", _("Invoice status")
        INVOICE_TOTAL = "invoice_total", _("Invoice total")
        CHARGE_REFUNDED = "charge_refunded", _("Charge refunded amount")
        MISSING_LOCALLY = "missing_locally", _("Missing in the local mirror")
        REFUND_STUCK = "refund_stuck", _("Refund request processing for too long")
        CREDITS_MISMATCH = "credits_mismatch", _("Credits granted vs credit-pack payments")

    class Status(models.TextChoices):
        OPEN = "open", _("Open")
        REPAIRED = "repaired", _("Repaired")
        GONE = "gone", _("No longer drifting")

    run = models.ForeignKey(ReconciliationRun, on_delete=models.CASCADE, related_name="drifts")
    kind = models.CharField(max_length=32, choices=Kind.choices, db_index=True)
    object_type = models.CharField(max_length=32, help_text="Stripe object type, or refund_request / team.")
    object_id = models.CharField(max_length=255, db_index=True)
    team = models.ForeignKey("accounts.Team", on_delete=models.SET_NULL, null=True, blank=True, related_name="+")
    local_value = models.CharField(max_length=255, blank=True, default="")
    stripe_value = models.CharField(max_length=255, blank=True, default="")
    detail = models.TextField(blank=True, default="")
    status = models.CharField(max_length=10, choices=Status.choices, default=Status.OPEN, db_index=True)
    detected_at = models.DateTimeField(default=timezone.now)
    resolved_at = models.DateTimeField(null=True, blank=True)
    resolved_by = models.ForeignKey(settings.AUTH_USER_MODEL, on_delete=models.SET_NULL, null=True, blank=True,
                                    related_name="+")

    class Meta:
        ordering = ["-detected_at", "-id"]
        verbose_name = "reconciliation drift"

    def __str__(self) -> str:
        return f"{self.get_kind_display()}: {self.object_id} (local {self.local_value!r}, Stripe {self.stripe_value!r})"
