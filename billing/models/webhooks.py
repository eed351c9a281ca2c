from django.db import models
from django.utils import timezone
from django.utils.translation import gettext_lazy as _


class WebhookEvent(models.Model):
    """
    A Stripe event as received (webhook) or found (events sweep), stored before it is acknowledged.

    The unique `stripe_event_id` is what makes a duplicate delivery a no-op. `status` moves
    pending → processing → processed, or → failed (will be retried) → parked (retries exhausted; staff replay).
    """

    class Status(models.TextChoices):
        PENDING = "pending", _("Pending")
        PROCESSING = "processing", _("Processing")
        PROCESSED = "processed", _("Processed")
        FAILED = "failed", _("Failed, will retry")
        PARKED = "parked", _("Parked for replay")

    class Source(models.TextChoices):
        WEBHOOK = "webhook", _("Webhook delivery")
        SWEEP = "sweep", _("Events sweep")

    stripe_event_id = models.CharField(max_length=255, unique=True, help_text="Stripe's event id (evt_...).")
    type = models.CharField(max_length=255, db_index=True, help_text="Event type, e.g. invoice.paid.")
    status = models.CharField(max_length=16, choices=Status.choices, default=Status.PENDING, db_index=True)
    source = models.CharField(max_length=16, choices=Source.choices, default=Source.WEBHOOK)
    payload = models.JSONField(help_text="The raw event exactly as Stripe sent it (parsed JSON).")
    livemode = models.BooleanField(default=False)
    api_version = models.CharField(max_length=64, blank=True)
    stripe_created = models.DateTimeField(
        null=True, blank=True, help_text="When Stripe created the event (its `created`), not when we received it."
    )
    stripe_object_id = models.CharField(max_length=255, blank=True, db_index=True, help_text="data.object.id")
    stripe_customer_id = models.CharField(
        max_length=255, blank=True, db_index=True, help_text="The customer the event's object belongs to, if any."
    )
    webhook_endpoint_id = models.CharField(max_length=255, blank=True, help_text="Stripe endpoint (we_...).")
    attempts = models.PositiveIntegerField(default=0, help_text="Processing attempts so far.")
    last_error = models.TextField(blank=True, help_text="Traceback of the last failed attempt.")
    received_at = models.DateTimeField(default=timezone.now, db_index=True)
    processed_at = models.DateTimeField(null=True, blank=True)
    next_attempt_at = models.DateTimeField(null=True, blank=True, help_text="When a failed event is retried.")

    class Meta:
        ordering = ["-received_at", "-id"]
        indexes = [models.Index(fields=["status", "received_at"], name="billing_webhook_status_idx")]

    def __str__(self) -> str:
        return f"{self.stripe_event_id} {self.type} ({self.status})"

    @property
    def data_object(self) -> dict:
        return (self.payload.get("data") or {}).get("object") or {}


class MirrorWatermark(models.Model):
    """
    Per Stripe object, the newest state the dj-stripe mirror holds: the event it was applied from (`created` in
    Stripe's whole seconds, event id as tie-break) or, with a blank `stripe_event_id`, a retrieve/API answer read at
    `state_at`. The webhook pipeline applies an event from its own payload only when it is newer than this mark,
    and locks this row (`select_for_update`) so two events for one object are applied one after the other.
    """

    stripe_object_id = models.CharField(max_length=255, primary_key=True, help_text="The mirrored object (in_..., sub_...).")
    object_type = models.CharField(max_length=64, help_text="Stripe's object type (`invoice`, `subscription`...).")
    state_at = models.BigIntegerField(
        default=-1, help_text="Unix seconds: the event's `created`, or when the object was read from Stripe; -1 = none yet."
    )
    stripe_event_id = models.CharField(
        max_length=255, blank=True, help_text="The event the mirror was last applied from; blank for a retrieve."
    )
    deleted = models.BooleanField(default=False, help_text="The newest event said the object was deleted.")
    updated_at = models.DateTimeField(auto_now=True)

    def __str__(self) -> str:
        return f"{self.stripe_object_id} @ {self.state_at} ({self.stripe_event_id or 'retrieve'})"
