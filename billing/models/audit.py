"""
The audit trail: one append-only row per staff action (and per refused attempt), written by the services in the same
transaction as the change. Rows are hash-chained: `entry_hash = sha256(previous_hash + canonical row)`, and
`previous_hash` is unique, so the chain is a single line the database keeps straight; editing or deleting a row in
the middle breaks `audit_chain_verify()`. On PostgreSQL a trigger also refuses UPDATE and DELETE (migration 0101).
"""
from django.conf import settings
from django.db import models
from django.utils import timezone
from django.utils.translation import gettext_lazy as _

GENESIS_HASH = "0" * 64


class AuditEntry(models.Model):
    class Action(models.TextChoices):
        REFUND_REQUESTED = "refund.requested", _("Refund requested")
        REFUND_APPROVED = "refund.approved", _("Refund approved")
        REFUND_REJECTED = "refund.rejected", _("Refund rejected")
        REFUND_CANCELED = "refund.canceled", _("Refund canceled")
        REFUND_RETRIED = "refund.retried", _("Refund retried")
        REFUND_SENT = "refund.sent", _("Refund sent to Stripe")
        REFUND_SUCCEEDED = "refund.succeeded", _("Refund succeeded")
        REFUND_FAILED = "refund.failed", _("Refund failed")
        CREDITS_CLAWED_BACK = "credits.clawed_back", _("Credits clawed back")
        CREDITS_GRANTED = "credits.granted", _("Credits granted")
        CREDITS_REMOVED = "credits.removed", _("Credits removed")
        CUSTOMER_RESYNCED = "customer.resynced", _("Customer resynced from Stripe")
        SUBSCRIPTION_CANCEL_AT_PERIOD_END = "subscription.cancel_at_period_end", _("Subscription set to cancel")
        SUBSCRIPTION_CANCELED_NOW = "subscription.canceled_now", _("Subscription canceled now")
        TRIAL_EXTENDED = "subscription.trial_extended", _("Trial extended")
        WEBHOOK_REPLAYED = "webhook.replayed", _("Webhook event replayed")
        RECEIPT_RESENT = "receipt.resent", _("Receipt resent")
        EMAIL_RESENT = "email.resent", _("Outbound email re-sent")
        DRIFT_REPAIRED = "reconciliation.repaired", _("Drift repaired")
        AUDIT_EXPORTED = "audit.exported", _("Audit trail exported")
        CREDIT_NOTE_ISSUED = "credit_note.issued", _("Credit note issued")
        INVOICE_PAYMENT_RETRIED = "invoice.payment_retried", _("Invoice payment retried")
        PAYMENT_UPDATE_EMAIL_SENT = "dunning.payment_update_email", _("Payment update email sent")
        SUBSCRIPTION_PAUSED = "subscription.paused", _("Subscription collection paused")
        PERMISSION_DENIED = "permission.denied", _("Permission denied")
        LOGIN_LOCKED_OUT = "login.locked_out", _("Login locked out")

    class Outcome(models.TextChoices):
        DONE = "done", _("Done")
        DENIED = "denied", _("Denied")
        FAILED = "failed", _("Failed")

    created = models.DateTimeField(default=timezone.now, db_index=True)
    actor = models.ForeignKey(settings.AUTH_USER_MODEL, on_delete=models.PROTECT, null=True, blank=True,
                              related_name="+", help_text="Staff member; empty for the system (tasks, webhooks).")
    actor_email = models.CharField(max_length=254, blank=True, default="",
                                   help_text="Email at the time of the action (kept if the user is renamed).")
    action = models.CharField(max_length=64, choices=Action.choices, db_index=True)
    outcome = models.CharField(max_length=8, choices=Outcome.choices, default=Outcome.DONE)
    target_type = models.CharField(max_length=64, help_text="What was acted on, e.g. refund_request, team, "
                                   "stripe.subscription.")
    target_id = models.CharField(max_length=255, help_text="Its id (local pk or Stripe id).")
    team = models.ForeignKey("accounts.Team", on_delete=models.PROTECT, null=True, blank=True, related_name="+",
                             help_text="Team concerned, for the Customer 360 page.")
    before = models.JSONField(default=dict, blank=True, help_text="Money and states before the change.")
    after = models.JSONField(default=dict, blank=True, help_text="Money and states after the change.")
    reason = models.TextField(blank=True, default="")
    request_id = models.CharField(max_length=64, blank=True, default="", help_text="X-Request-ID of the request.")
    ip_address = models.GenericIPAddressField(null=True, blank=True)
    previous_hash = models.CharField(max_length=64, unique=True, help_text="entry_hash of the previous row.")
    entry_hash = models.CharField(max_length=64, unique=True, help_text="sha256 over previous_hash and this row.")

    class Meta:
        ordering = ["-id"]
        verbose_name = "audit entry"
        verbose_name_plural = "audit trail"
        indexes = [
            models.Index(fields=["team", "-id"], name="audit_team_id"),
            models.Index(fields=["actor", "-id"], name="audit_actor_id"),
            models.Index(fields=["target_type", "target_id"], name="audit_target"),
        ]
        permissions = [("export_auditentry", "Can export the audit trail as CSV")]

    def __str__(self) -> str:
        return f"#{self.pk} {self.action} {self.target_type}:{self.target_id} by {self.actor_email or 'system'}"
