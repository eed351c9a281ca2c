"""
Stripe credit notes, mirrored: dj-stripe 2.11 has no CreditNote model, so the project keeps its own mirror, written
from the gateway's answer (when the back office issues one) and from `credit_note.*` webhooks (the handler table).
The raw Stripe payload is kept beside the queried fields, as dj-stripe does. Money is integer minor units.
"""
from django.db import models
from django.utils import timezone
from django.utils.translation import gettext_lazy as _


class CreditNote(models.Model):
    class Status(models.TextChoices):
        ISSUED = "issued", _("Issued")
        VOID = "void", _("Void")

    stripe_id = models.CharField(max_length=255, unique=True, help_text="Stripe credit note id (cn_...).")
    stripe_invoice_id = models.CharField(max_length=255, db_index=True, help_text="The credited invoice (in_...).")
    stripe_customer_id = models.CharField(max_length=255, db_index=True, help_text="cus_... of the invoice.")
    team = models.ForeignKey("accounts.Team", on_delete=models.PROTECT, null=True, blank=True,
                             related_name="credit_notes", help_text="The customer's team (null if unknown).")
    number = models.CharField(max_length=64, blank=True, default="", help_text="Stripe's number, e.g. ABC-0001-CN-01.")
    status = models.CharField(max_length=16, choices=Status.choices, default=Status.ISSUED)
    reason = models.CharField(max_length=32, blank=True, default="", help_text="Stripe's reason, if any.")
    currency = models.CharField(max_length=3, help_text="Lower-case ISO currency of the invoice.")
    total_minor = models.BigIntegerField(help_text="Credit note total, minor units.")
    refund_minor = models.BigIntegerField(default=0, help_text="Part refunded to the card, minor units.")
    credit_minor = models.BigIntegerField(default=0, help_text="Part credited to the customer balance, minor units.")
    out_of_band_minor = models.BigIntegerField(default=0, help_text="Part settled outside Stripe, minor units.")
    stripe_refund_id = models.CharField(max_length=255, blank=True, default="",
                                        help_text="The refund (re_...) the note made, if it refunded the card.")
    memo = models.TextField(blank=True, default="")
    pdf_url = models.URLField(max_length=500, blank=True, default="")
    refund_request = models.ForeignKey("billing.RefundRequest", on_delete=models.PROTECT, null=True, blank=True,
                                       related_name="credit_notes",
                                       help_text="The back-office request that issued it (null if made elsewhere).")
    stripe_created = models.DateTimeField(help_text="When Stripe created it.")
    stripe_data = models.JSONField(default=dict, help_text="The raw Stripe object as last seen.")
    updated = models.DateTimeField(default=timezone.now)

    class Meta:
        ordering = ["-stripe_created", "-id"]
        indexes = [
            models.Index(fields=["team", "-stripe_created"], name="creditnote_team_created"),
            # The credit notes list pages newest first: without it, every page sorts the whole table.
            models.Index(fields=["-stripe_created", "-id"], name="creditnote_created"),
        ]
        constraints = [
            models.CheckConstraint(condition=models.Q(total_minor__gte=0), name="credit_note_total_non_negative"),
        ]

    def __str__(self) -> str:
        return f"{self.number or self.stripe_id} ({self.total_display})"

    @property
    def total_display(self) -> str:
        from billing_site.money import format_money

        return format_money(self.total_minor, self.currency)

    @property
    def refund_display(self) -> str:
        from billing_site.money import format_money

        return format_money(self.refund_minor, self.currency)

    @property
    def credit_display(self) -> str:
        from billing_site.money import format_money

        return format_money(self.credit_minor, self.currency)
