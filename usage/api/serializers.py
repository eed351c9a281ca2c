"""Serializers for the usage API: used for documentation (drf-spectacular) and the few inputs validated by DRF."""
from rest_framework import serializers

from ..models import CreditLedgerEntry


class UsageEventInputSerializer(serializers.Serializer):
    idempotency_key = serializers.CharField(max_length=255, required=False,
                                            help_text="Required in a batch; a single event uses the header.")
    metric = serializers.CharField()
    quantity = serializers.IntegerField(min_value=1, default=1)
    occurred_at = serializers.DateTimeField(required=False, help_text="ISO 8601 with time zone; default: now.")
    metadata = serializers.DictField(required=False)


class UsageEventBatchInputSerializer(serializers.Serializer):
    events = UsageEventInputSerializer(many=True, help_text="1 to 1,000 events; all stored or none.")


class UsageEventOutputSerializer(serializers.Serializer):
    id = serializers.IntegerField()
    idempotency_key = serializers.CharField()
    metric = serializers.CharField()
    quantity = serializers.IntegerField()
    occurred_at = serializers.DateTimeField()
    source = serializers.CharField()
    api_key_id = serializers.IntegerField(allow_null=True)
    metadata = serializers.DictField()
    duplicate = serializers.BooleanField(help_text="True when the key was stored before: this is the original.")


class UsageEventBatchOutputSerializer(serializers.Serializer):
    events = UsageEventOutputSerializer(many=True)
    created = serializers.IntegerField()
    duplicates = serializers.IntegerField()


class MetricFiguresSerializer(serializers.Serializer):
    used = serializers.IntegerField()
    included = serializers.IntegerField()
    remaining = serializers.IntegerField()
    overage = serializers.IntegerField()


class UsageSummarySerializer(serializers.Serializer):
    period_start = serializers.DateTimeField()
    period_end = serializers.DateTimeField()
    plan = serializers.CharField()
    overage_mode = serializers.CharField()
    metrics = serializers.DictField(child=MetricFiguresSerializer())
    credits_balance = serializers.IntegerField()
    daily = serializers.ListField(child=serializers.DictField())
    by_api_key = serializers.ListField(child=serializers.DictField())


class CreditLedgerEntrySerializer(serializers.ModelSerializer):
    created_by = serializers.SerializerMethodField()

    class Meta:
        model = CreditLedgerEntry
        fields = ["id", "delta", "balance_after", "reason", "reference", "note", "metadata", "created", "created_by"]

    def get_created_by(self, entry) -> str | None:
        return entry.created_by.email if entry.created_by_id and entry.created_by else None


class SpendCapInputSerializer(serializers.Serializer):
    spend_cap_minor = serializers.IntegerField(min_value=0, allow_null=True,
                                               help_text="Most overage per period in minor units; null: no cap.")
    currency = serializers.CharField(max_length=3, default="usd")


class SpendCapOutputSerializer(serializers.Serializer):
    spend_cap_minor = serializers.IntegerField(allow_null=True)
    currency = serializers.CharField()
