"""
The project's own receipts (issue 13): one PDF per payment (and one per refund), numbered sequentially per seller.

A receipt is a document the customer may already hold: it is never changed or deleted once written. What happens to
the payment later (a refund) gets its own receipt with the next number, referring to the payment's receipt.

Numbers come from `ReceiptCounter`, one row per seller (`RECEIPT_NUMBER_PREFIX`), locked with select_for_update in
the same transaction that inserts the receipt: a rolled-back insert rolls the counter back too, so there are no gaps,
and the lock serialises issuers, so there are no duplicates (the unique constraints below are the backstop).
Money is integer minor units of `currency` (lower-case ISO).
"""
from django.db import models
from django.db.models import Q
from django.utils import timezone


class ReceiptImmutableError(RuntimeError):
    """A receipt was about to be changed or deleted: receipts are issued once and kept as issued."""


class ReceiptCounter(models.Model):
    seller = models.CharField(max_length=64, unique=True,
                              help_text="The numbering sequence (the seller's RECEIPT_NUMBER_PREFIX).")
    last_number = models.PositiveBigIntegerField(default=0, help_text="The last number issued in this sequence.")

    class Meta:
        verbose_name = "receipt counter"

    def __str__(self) -> str:
        return f"{self.seller}: {self.last_number}"


class Receipt(models.Model):
    class Kind(models.TextChoices):
        PAYMENT = "payment", "Payment"
        REFUND = "refund", "Refund"

    team = models.ForeignKey("accounts.Team", on_delete=models.PROTECT, related_name="receipts",
                             help_text="The team whose Stripe customer paid (only its members may download it).")
    kind = models.CharField(max_length=16, choices=Kind.choices, default=Kind.PAYMENT)
    stripe_charge_id = models.CharField(max_length=255, db_index=True, help_text="The charge (ch_...) it documents.")
    stripe_refund_id = models.CharField(max_length=255, blank=True, default="",
                                        help_text="For refund receipts: the refund (re_...) it documents.")
    seller = models.CharField(max_length=64, help_text="The numbering sequence (RECEIPT_NUMBER_PREFIX at issue).")
    sequence = models.PositiveBigIntegerField(help_text="Position in the seller's sequence: 1, 2, 3... with no gaps.")
    number = models.CharField(max_length=96, unique=True, help_text="Printed number: prefix + zero-padded sequence.")
    amount_minor = models.BigIntegerField(help_text="Amount paid (or refunded), in minor units of `currency`.")
    currency = models.CharField(max_length=3, help_text="Lower-case ISO currency of the charge.")
    language = models.CharField(max_length=16, help_text="Language the PDF was written in (the owner's).")
    pdf = models.BinaryField(help_text="The PDF as issued; served as is, never re-rendered.")
    created = models.DateTimeField(default=timezone.now)

    class Meta:
        constraints = [
            models.UniqueConstraint(fields=["seller", "sequence"], name="receipt_unique_seller_sequence"),
            # Never two receipts for one payment, nor for one refund.
            models.UniqueConstraint(fields=["stripe_charge_id"], condition=Q(kind="payment"),
                                    name="receipt_unique_payment_charge"),
            models.UniqueConstraint(fields=["stripe_refund_id"], condition=Q(kind="refund"),
                                    name="receipt_unique_refund"),
            models.CheckConstraint(condition=Q(kind="payment", stripe_refund_id="") | Q(kind="refund") & ~Q(
                stripe_refund_id=""), name="receipt_refund_id_iff_refund"),
            models.CheckConstraint(condition=Q(amount_minor__gte=0), name="receipt_amount_non_negative"),
        ]
        indexes = [models.Index(fields=["team", "stripe_charge_id"], name="receipt_team_charge")]

    def __str__(self) -> str:
        return self.number

    def save(self, *args, **kwargs):
        # The one guard kept on the model: whatever path tries it (admin, shell, a service), an issued receipt stays.
        if self.pk is not None and not self._state.adding:
            raise ReceiptImmutableError(f"receipt {self.number} is issued and cannot change")
        super().save(*args, **kwargs)

    def delete(self, *args, **kwargs):
        raise ReceiptImmutableError(f"receipt {self.number} is issued and cannot be deleted")


class InvoicePaymentLink(models.Model):
    """
    Which invoice a payment intent paid. Since API 2025-03 neither the charge nor the payment intent names its
    invoice, and an invoice lists its payments only when expanded (the mirror does not expand them): Stripe's
    InvoicePayment objects (`invoice_payment.paid` events, or a lookup at Stripe) are the link, kept here so the
    payment history tells a subscription payment from a one-time one without reading Stripe's descriptions.
    """

    payment_intent_id = models.CharField(max_length=255, unique=True, help_text="The payment intent (pi_...).")
    invoice_id = models.CharField(max_length=255, db_index=True, help_text="The invoice (in_...) it paid.")
    invoice_payment_id = models.CharField(max_length=255, blank=True, default="",
                                          help_text="Stripe's InvoicePayment (inpay_...) that says so, if known.")
    created = models.DateTimeField(default=timezone.now)

    class Meta:
        verbose_name = "invoice payment link"

    def __str__(self) -> str:
        return f"{self.payment_intent_id} -> {self.invoice_id}"
