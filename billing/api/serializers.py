from rest_framework import serializers

from billing.catalog import load_catalog


def _lookup_keys(*, plans: bool, packs: bool) -> list[str]:
    catalog = load_catalog()
    keys = [price.lookup_key for plan in catalog.plans for price in plan.prices] if plans else []
    return keys + ([pack.lookup_key for pack in catalog.credit_packs] if packs else [])


class CheckoutSessionInputSerializer(serializers.Serializer):
    # The catalog's lookup keys only: no other Stripe price can be bought through the API (issue 10).
    lookup_key = serializers.ChoiceField(choices=_lookup_keys(plans=True, packs=True))
    quantity = serializers.IntegerField(min_value=1, max_value=100, default=1)
    currency = serializers.ChoiceField(choices=list(load_catalog().currencies), required=False)


class CheckoutSessionOutputSerializer(serializers.Serializer):
    id = serializers.CharField()
    url = serializers.URLField()


class PortalSessionOutputSerializer(serializers.Serializer):
    url = serializers.URLField()


class SubscriptionChangeInputSerializer(serializers.Serializer):
    lookup_key = serializers.ChoiceField(choices=_lookup_keys(plans=True, packs=False))
    # Omit to get the proration preview only; send the preview's proration_date back to confirm it.
    proration_date = serializers.IntegerField(required=False, min_value=0, max_value=2**40,
                                              help_text="The preview's proration_date (unix seconds).")


class PlanPriceSerializer(serializers.Serializer):
    lookup_key = serializers.CharField()
    interval = serializers.ChoiceField(choices=["month", "year"])
    amount = serializers.IntegerField(allow_null=True, help_text="Minor units.")
    currency = serializers.CharField()


class PlanSerializer(serializers.Serializer):
    key = serializers.CharField()
    name = serializers.CharField()
    description = serializers.CharField()
    seats = serializers.IntegerField()
    rate_limit_per_second = serializers.IntegerField()
    included = serializers.DictField(child=serializers.IntegerField(), help_text="Metric -> units per month.")
    overage = serializers.ChoiceField(choices=["credits", "metered"])
    contact_sales = serializers.BooleanField()
    prices = PlanPriceSerializer(many=True)


class CreditPackPriceSerializer(serializers.Serializer):
    lookup_key = serializers.CharField()
    name = serializers.CharField()
    credits = serializers.IntegerField()
    amount = serializers.IntegerField(allow_null=True, help_text="Minor units.")
    currency = serializers.CharField()


class PlanListSerializer(serializers.Serializer):
    count = serializers.IntegerField()
    next = serializers.URLField(allow_null=True)
    previous = serializers.URLField(allow_null=True)
    results = PlanSerializer(many=True)
    credit_packs = CreditPackPriceSerializer(many=True)


class SubscriptionPlanSerializer(serializers.Serializer):
    key = serializers.CharField()
    name = serializers.CharField()
    lookup_key = serializers.CharField(help_text="The flat (licensed) price's lookup key.")
    interval = serializers.CharField()


class ChangePreviewLineSerializer(serializers.Serializer):
    description = serializers.CharField(allow_blank=True)
    amount = serializers.IntegerField(help_text="Minor units.")


class ChangePreviewSerializer(serializers.Serializer):
    lookup_key = serializers.CharField()
    amount_due = serializers.IntegerField(help_text="Minor units, charged when the change is confirmed.")
    currency = serializers.CharField()
    proration_date = serializers.IntegerField(help_text="Send back with the same lookup_key to confirm.")
    lines = ChangePreviewLineSerializer(many=True)


class ChangePreviewOutputSerializer(serializers.Serializer):
    preview = ChangePreviewSerializer()


class SubscriptionOutputSerializer(serializers.Serializer):
    id = serializers.CharField()
    status = serializers.CharField()
    plan = SubscriptionPlanSerializer()
    currency = serializers.CharField()
    current_period_start = serializers.DateTimeField(allow_null=True)
    current_period_end = serializers.DateTimeField(allow_null=True)
    cancel_at_period_end = serializers.BooleanField()
    cancel_at = serializers.DateTimeField(allow_null=True)
    trial_end = serializers.DateTimeField(allow_null=True)


class InvoiceOutputSerializer(serializers.Serializer):
    id = serializers.CharField()
    number = serializers.CharField()
    status = serializers.CharField()
    total = serializers.IntegerField(help_text="Minor units.")
    amount_paid = serializers.IntegerField(help_text="Minor units.")
    currency = serializers.CharField()
    period_start = serializers.DateTimeField(allow_null=True)
    period_end = serializers.DateTimeField(allow_null=True)
    created = serializers.DateTimeField()
    hosted_invoice_url = serializers.CharField()
    invoice_pdf = serializers.CharField()


class PaymentCardSerializer(serializers.Serializer):
    brand = serializers.CharField()
    last4 = serializers.CharField()


class PaymentRefundSerializer(serializers.Serializer):
    id = serializers.CharField()
    amount = serializers.IntegerField(help_text="Minor units.")
    currency = serializers.CharField()
    status = serializers.CharField()
    reason = serializers.CharField(allow_null=True)
    created = serializers.DateTimeField(allow_null=True)


class PaymentOutputSerializer(serializers.Serializer):
    id = serializers.CharField(help_text="Charge id (ch_...).")
    payment_intent = serializers.CharField(allow_null=True)
    status = serializers.CharField()
    amount = serializers.IntegerField(help_text="Minor units.")
    amount_refunded = serializers.IntegerField(help_text="Minor units.")
    currency = serializers.CharField()
    description = serializers.CharField(allow_blank=True, allow_null=True)
    receipt_url = serializers.CharField(allow_null=True, help_text="Stripe's hosted receipt.")
    invoice = serializers.CharField(allow_null=True)
    created = serializers.DateTimeField()
    # Issue 13: what kind of payment, the card, the refunds and the project's own PDF receipt.
    kind = serializers.ChoiceField(choices=["subscription", "credit_pack", "one_time"])
    card = PaymentCardSerializer(allow_null=True)
    refunds = PaymentRefundSerializer(many=True)
    receipt_pdf = serializers.URLField(allow_null=True, help_text="The project's PDF receipt (succeeded payments).")


class InvoicePageSerializer(serializers.Serializer):
    count = serializers.IntegerField()
    next = serializers.URLField(allow_null=True)
    previous = serializers.URLField(allow_null=True)
    results = InvoiceOutputSerializer(many=True)


class PaymentPageSerializer(serializers.Serializer):
    count = serializers.IntegerField()
    next = serializers.URLField(allow_null=True)
    previous = serializers.URLField(allow_null=True)
    results = PaymentOutputSerializer(many=True)
