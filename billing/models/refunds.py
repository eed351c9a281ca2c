"""
Refund requests: staff ask for a refund of a mirrored Stripe charge, a person with `billing.approve_refund` approves
it (a second person above REFUND_APPROVAL_THRESHOLD), a Celery task executes it once at Stripe, webhooks finish it.

Money is integer minor units of `currency` (lower-case ISO). Rows are never deleted: a request ends `succeeded`,
`failed` (retryable), `rejected` or `canceled`.
"""
from django.conf import settings
from django.db import models
from django.db.models import Q
from django.utils import timezone
from django.utils.translation import gettext_lazy as _


class RefundRequest(models.Model):
    class Status(models.TextChoices):
        REQUESTED = "requested", _("Requested")
        APPROVED = "approved", _("Approved")
        PROCESSING = "processing", _("Processing")
        SUCCEEDED = "succeeded", _("Succeeded")
        FAILED = "failed", _("Failed")
        REJECTED = "rejected", _("Rejected")
        CANCELED = "canceled", _("Canceled")

    class Reason(models.TextChoices):
        # Stripe's own refund reasons, passed through to the Refund object.
        REQUESTED_BY_CUSTOMER = "requested_by_customer", _("Requested by customer")
        DUPLICATE = "duplicate", _("Duplicate")
        FRAUDULENT = "fraudulent", _("Fraudulent")

    # Requests that hold part of the charge's refundable amount (they may still become a Stripe refund).
    RESERVING_STATUSES = (Status.REQUESTED, Status.APPROVED, Status.PROCESSING)
    OPEN_STATUSES = (Status.REQUESTED, Status.APPROVED, Status.PROCESSING, Status.FAILED)

    team = models.ForeignKey(
        "accounts.Team", on_delete=models.PROTECT, null=True, blank=True, related_name="refund_requests",
        help_text="The team whose Stripe customer paid the charge (null if the charge has no known customer).",
    )
    stripe_charge_id = models.CharField(max_length=255, db_index=True, help_text="Stripe charge (ch_...) refunded.")
    stripe_payment_intent_id = models.CharField(max_length=255, blank=True, default="",
                                                help_text="PaymentIntent of the charge, if any (pi_...).")
    stripe_customer_id = models.CharField(max_length=255, blank=True, default="", help_text="cus_... of the charge.")
    amount_minor = models.BigIntegerField(help_text="Amount to refund, in minor units of `currency`.")
    currency = models.CharField(max_length=3, help_text="Lower-case ISO currency: always the charge's currency.")
    charge_amount_minor = models.BigIntegerField(help_text="The charge's amount when the request was made (minor).")
    reason = models.CharField(max_length=32, choices=Reason.choices, help_text="Reason sent to Stripe.")
    note = models.TextField(blank=True, default="", help_text="Internal note for staff; never sent to the customer.")
    status = models.CharField(max_length=16, choices=Status.choices, default=Status.REQUESTED, db_index=True)

    requested_by = models.ForeignKey(settings.AUTH_USER_MODEL, on_delete=models.PROTECT, related_name="+",
                                     help_text="Staff member who asked for the refund.")
    approved_by = models.ForeignKey(settings.AUTH_USER_MODEL, on_delete=models.PROTECT, null=True, blank=True,
                                    related_name="+", help_text="Staff member who approved it (never the requester "
                                    "above the threshold).")
    decided_by = models.ForeignKey(settings.AUTH_USER_MODEL, on_delete=models.PROTECT, null=True, blank=True,
                                   related_name="+", help_text="Who rejected or canceled it.")
    decision_note = models.TextField(blank=True, default="")

    # Execution markers (Zulip-style): STARTED is committed before the Stripe call, DONE after its answer is stored.
    # A request left STARTED without DONE is resolved by looking the refund up at Stripe, never by a blind new call.
    attempts = models.PositiveIntegerField(default=0, help_text="Stripe calls started (each attempt has its own "
                                           "idempotency key; see refund_request_idempotency_key).")
    execution_started_at = models.DateTimeField(null=True, blank=True)
    execution_finished_at = models.DateTimeField(null=True, blank=True)
    # Retry state (issue 11), shown to staff on the request and the Customer 360 page.
    stripe_tries = models.PositiveIntegerField(
        default=0, help_text="Calls of the current attempt that could not reach Stripe (same idempotency key); "
        "reset when a new attempt starts.")
    next_attempt_at = models.DateTimeField(
        null=True, blank=True, db_index=True,
        help_text="When the periodic sweep sends this request to Stripe (again) if it has no Stripe refund by then: "
        "the next retry after Stripe was unreachable, or the end of a running attempt's lease "
        "(BACKOFFICE_REFUND_LEASE_SECONDS).")
    stripe_refund_id = models.CharField(max_length=255, null=True, blank=True, unique=True,
                                        help_text="The Stripe refund (re_...) once Stripe answered.")
    stripe_refund_status = models.CharField(max_length=32, blank=True, default="")
    last_error = models.TextField(blank=True, default="", help_text="Last Stripe error, shown to staff.")
    last_error_code = models.CharField(max_length=64, blank=True, default="")

    credits_clawed_back = models.BigIntegerField(default=0, help_text="Credits removed because of this refund.")

    # A subscription invoice's payment is refunded through a Stripe credit note (issue 14): the note credits the
    # invoice and either refunds the card or credits the customer balance. Same four eyes, same execution markers.
    stripe_invoice_id = models.CharField(max_length=255, blank=True, default="", db_index=True,
                                         help_text="When set, the refund is issued as a credit note on this invoice.")
    credit_to_balance = models.BooleanField(default=False, help_text="Credit note only: credit the customer's "
                                            "Stripe balance (pays the next invoices) instead of refunding the card.")
    stripe_credit_note_id = models.CharField(max_length=255, null=True, blank=True, unique=True,
                                             help_text="The credit note (cn_...) once Stripe answered.")

    created = models.DateTimeField(default=timezone.now, db_index=True)
    updated = models.DateTimeField(auto_now=True)
    approved_at = models.DateTimeField(null=True, blank=True)
    completed_at = models.DateTimeField(null=True, blank=True)

    class Meta:
        ordering = ["-created", "-id"]
        indexes = [
            models.Index(fields=["team", "-created"], name="refundreq_team_created"),
            models.Index(fields=["stripe_charge_id", "status"], name="refundreq_charge_status"),
        ]
        constraints = [
            models.CheckConstraint(condition=Q(amount_minor__gt=0), name="refund_request_amount_positive"),
            models.CheckConstraint(condition=Q(amount_minor__lte=models.F("charge_amount_minor")),
                                   name="refund_request_amount_within_charge"),
            models.CheckConstraint(condition=Q(currency=models.functions.Lower("currency")),
                                   name="refund_request_currency_lower_case"),
        ]
        permissions = [
            ("request_refund", "Can request a refund"),
            ("approve_refund", "Can approve (or reject) a refund"),
        ]

    @property
    def is_credit_note(self) -> bool:
        return bool(self.stripe_invoice_id)

    def __str__(self) -> str:
        return f"Refund request #{self.pk} ({self.amount_minor} {self.currency}, {self.status})"

    @property
    def is_retrying(self) -> bool:
        """Stripe could not be reached and the request waits for its next try (not a final failure)."""
        return (self.status == self.Status.PROCESSING and not self.stripe_refund_id and self.stripe_tries > 0
                and self.next_attempt_at is not None)

    @property
    def amount_display(self) -> str:
        from billing_site.money import format_money

        return format_money(self.amount_minor, self.currency)
