from django.db import models
from django.db.models import Q
from django.utils import timezone
from django.utils.translation import gettext_lazy as _


class OutboundEmail(models.Model):
    """
    The email outbox: one row per email to send, written in the caller's transaction (`billing.emails`), so an
    email exists exactly when the work that wanted it committed. The Celery message that sends it is only the fast
    path; the row is the record, and the sweep (`billing-emails-send-due`) sends whatever a lost message or a failed
    attempt left. `status` moves pending → sending (a send holds a lease until `next_attempt_at`) → sent, or →
    failed (retried at `next_attempt_at`) → parked (retries exhausted; staff re-send it from the admin).
    """

    class Kind(models.TextChoices):
        TEAM = "team", _("Team email")
        STAFF = "staff", _("Staff email")

    class Status(models.TextChoices):
        PENDING = "pending", _("Pending")
        SENDING = "sending", _("Sending")
        SENT = "sent", _("Sent")
        FAILED = "failed", _("Failed, will retry")
        PARKED = "parked", _("Parked for re-send")

    kind = models.CharField(max_length=8, choices=Kind.choices, default=Kind.TEAM)
    team = models.ForeignKey("accounts.Team", on_delete=models.CASCADE, null=True, blank=True,
                             related_name="outbound_emails",
                             help_text="The team emailed (its owner's language); empty for staff emails.")
    template = models.CharField(max_length=255, blank=True,
                                help_text="Team emails: `billing/email/<name>` or another app's path; blank for staff.")
    context = models.JSONField(default=dict, blank=True,
                               help_text="Ids and values the template is rendered from when sending (bounded: "
                                         "BILLING_EMAIL_CONTEXT_MAX_BYTES). Staff emails: subject and body.")
    recipients = models.JSONField(default=list, blank=True, help_text="Addresses, resolved when the row was written.")
    status = models.CharField(max_length=16, choices=Status.choices, default=Status.PENDING)
    attempts = models.PositiveIntegerField(default=0, help_text="Send attempts so far.")
    last_error = models.TextField(blank=True, help_text="Traceback of the last failed attempt.")
    next_attempt_at = models.DateTimeField(
        null=True, blank=True, help_text="Failed: when it is retried. Sending: when the running attempt's lease ends.")
    dedupe_key = models.CharField(
        max_length=255, null=True, blank=True, unique=True,
        help_text="Optional: at most one email per key (e.g. `receipt:<payment>`), while the row is kept.")
    created_at = models.DateTimeField(default=timezone.now)
    sent_at = models.DateTimeField(null=True, blank=True)

    class Meta:
        ordering = ["-created_at", "-id"]
        verbose_name = "outbound email"
        indexes = [
            # The sweep: pending rows by age, failed/sending rows by due time; retention: sent rows by age.
            models.Index(fields=["status", "created_at"], name="outbound_email_status_created"),
            models.Index(fields=["status", "next_attempt_at"], name="outbound_email_status_due"),
        ]
        constraints = [
            models.CheckConstraint(condition=Q(kind="staff") | Q(team__isnull=False), name="outbound_email_team_kind"),
        ]
        permissions = [("resend_outbound_email", "Can re-send parked or failed emails")]

    def __str__(self) -> str:
        return f"email #{self.pk} {self.template or self.kind} ({self.status})"

    @property
    def subject_hint(self) -> str:
        """What staff read in the list: the template, or a staff email's subject."""
        if self.kind == self.Kind.STAFF:
            return str((self.context or {}).get("subject") or "")[:120]
        return self.template
