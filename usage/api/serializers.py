"""Serializers for the usage API: used for documentation (drf-spectacular) and the few inputs validated by DRF."""
from drf_spectacular.utils import PolymorphicProxySerializer, extend_schema_field
from rest_framework import serializers

from billing.catalog import load_catalog

from ..models import CreditLedgerEntry
from ..services import ingest


@extend_schema_field({
    "type": "object", "maxProperties": ingest.MAX_METADATA_KEYS,
    "additionalProperties": {"oneOf": [{"type": "string", "maxLength": ingest.MAX_METADATA_VALUE_LENGTH},
                                       {"type": "number"}, {"type": "boolean"}], "nullable": True},
    "description": f"Like Stripe's metadata: at most {ingest.MAX_METADATA_KEYS} keys of at most "
                   f"{ingest.MAX_METADATA_KEY_LENGTH} characters, string values of at most "
                   f"{ingest.MAX_METADATA_VALUE_LENGTH} characters (or numbers, booleans, null), at most "
                   f"{ingest.MAX_METADATA_BYTES} bytes as JSON; a batch's metadata at most "
                   f"{ingest.MAX_BATCH_METADATA_BYTES} bytes in all (413 above).",
})
class UsageEventMetadataField(serializers.DictField):
    """Documentation of the bounds usage.services.ingest enforces."""


def _metric_field():
    return serializers.ChoiceField(choices=list(load_catalog().metrics), help_text="A metric of the catalog.")


class UsageEventSingleInputSerializer(serializers.Serializer):
    """One event: its idempotency key travels in the `Idempotency-Key` header."""
    metric = _metric_field()
    quantity = serializers.IntegerField(min_value=1, max_value=ingest.MAX_EVENT_QUANTITY, default=1)
    occurred_at = serializers.DateTimeField(required=False, allow_null=True, help_text="ISO 8601 with time zone; default: now. At "
                                            "most USAGE_EVENT_MAX_AGE_SECONDS in the past.")
    metadata = UsageEventMetadataField(required=False)


class UsageEventInputSerializer(UsageEventSingleInputSerializer):
    """One event of a batch: each carries its own idempotency key."""
    idempotency_key = serializers.CharField(max_length=ingest.MAX_KEY_LENGTH)


class UsageEventBatchInputSerializer(serializers.Serializer):
    events = serializers.ListField(child=UsageEventInputSerializer(), min_length=1,
                                   max_length=ingest.MAX_BATCH_EVENTS, help_text="1 to 1,000 events; all stored or none.")


UsageEventsInput = PolymorphicProxySerializer(
    component_name="UsageEventsInput", resource_type_field_name=None,
    serializers=[UsageEventSingleInputSerializer, UsageEventBatchInputSerializer],
)


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


UsageEventsOutput = PolymorphicProxySerializer(
    component_name="UsageEventsOutput", resource_type_field_name=None,
    serializers=[UsageEventOutputSerializer, UsageEventBatchOutputSerializer],
)


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
    spend_cap_minor = serializers.IntegerField(min_value=0, max_value=10**15, allow_null=True,
                                               help_text="Most overage per period in minor units; null: no cap.")
    # The catalog's currencies, in either case (the service stores them lower case).
    currency = serializers.ChoiceField(choices=[code for currency in load_catalog().currencies
                                                for code in (currency, currency.upper())], default="usd")


class SpendCapOutputSerializer(serializers.Serializer):
    spend_cap_minor = serializers.IntegerField(allow_null=True)
    currency = serializers.CharField()
