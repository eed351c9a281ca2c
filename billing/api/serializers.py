from rest_framework import serializers


class CheckoutSessionInputSerializer(serializers.Serializer):
    lookup_key = serializers.CharField(max_length=100)
    quantity = serializers.IntegerField(min_value=1, max_value=100, default=1)
    currency = serializers.CharField(max_length=3, required=False)


class CheckoutSessionOutputSerializer(serializers.Serializer):
    id = serializers.CharField()
    url = serializers.URLField()


class PortalSessionOutputSerializer(serializers.Serializer):
    url = serializers.URLField()


class SubscriptionChangeInputSerializer(serializers.Serializer):
    lookup_key = serializers.CharField(max_length=100)
    # Omit to get the proration preview only; send the preview's proration_date back to confirm it.
    proration_date = serializers.IntegerField(required=False)


class PlanSerializer(serializers.Serializer):
    key = serializers.CharField()
    name = serializers.CharField()
    description = serializers.CharField()
    seats = serializers.IntegerField()
    rate_limit_per_second = serializers.IntegerField()
    included = serializers.DictField(child=serializers.IntegerField())
    overage = serializers.CharField()
    contact_sales = serializers.BooleanField()
    prices = serializers.ListField(child=serializers.DictField())


class SubscriptionOutputSerializer(serializers.Serializer):
    id = serializers.CharField()
    status = serializers.CharField()
    plan = serializers.DictField()
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


class PaymentOutputSerializer(serializers.Serializer):
    id = serializers.CharField(help_text="Charge id (ch_...).")
    payment_intent = serializers.CharField(allow_null=True)
    status = serializers.CharField()
    amount = serializers.IntegerField(help_text="Minor units.")
    amount_refunded = serializers.IntegerField(help_text="Minor units.")
    currency = serializers.CharField()
    description = serializers.CharField(allow_blank=True, allow_null=True)
    receipt_url = serializers.CharField(allow_null=True)
    invoice = serializers.CharField(allow_null=True)
    created = serializers.DateTimeField()
