"""
Issue 10, usage inputs: impossible dates answered 500, metadata and batches had no bound (20 MB of metadata in one
event, 1,000 events of 20 kB each were stored). Each case now answers 4xx in the error shape and stores nothing.
"""
import json

import pytest
from django.urls import reverse

from usage.models import UsageEvent
from usage.services.ingest import (
    MAX_BATCH_METADATA_BYTES,
    MAX_METADATA_KEY_LENGTH,
    MAX_METADATA_KEYS,
    MAX_METADATA_VALUE_LENGTH,
)

pytestmark = pytest.mark.django_db
EVENTS = reverse("api:usage-events")


def post(client, body, key="job-1"):
    return client.post(EVENTS, body, format="json", HTTP_IDEMPOTENCY_KEY=key)


def assert_refused(response, status: int, code: str, field: str | None = None):
    assert response.status_code == status, response.content[:300]
    error = response.json()["error"]
    assert error["code"] == code and error["message"]
    if field is not None:
        assert error["details"]["field"] == field


@pytest.mark.parametrize("occurred_at", ["2026-02-30T10:00:00Z", "2026-13-01T00:00:00Z", "2026-01-01T25:00:00Z",
                                         "2026-01-01T10:00:00+25:00", "2026-01-01T10:61:00Z"])
def test_impossible_dates_are_400_not_500(api_key_client, occurred_at):
    single = post(api_key_client, {"metric": "api_call", "quantity": 1, "occurred_at": occurred_at})
    assert_refused(single, 400, "invalid_usage_event", "occurred_at")
    in_batch = post(api_key_client, {"events": [{"idempotency_key": "a", "metric": "api_call", "quantity": 1},
                                                {"idempotency_key": "b", "metric": "api_call",
                                                 "occurred_at": occurred_at}]})
    assert_refused(in_batch, 400, "invalid_usage_event", "occurred_at")
    assert in_batch.json()["error"]["details"]["index"] == 1
    assert UsageEvent.objects.count() == 0


@pytest.mark.parametrize("metadata, reason", [
    ({f"k{i}": "v" for i in range(MAX_METADATA_KEYS + 1)}, "keys"),
    ({"k" * (MAX_METADATA_KEY_LENGTH + 1): "v"}, "characters"),
    ({"note": "x" * (MAX_METADATA_VALUE_LENGTH + 1)}, "characters"),
    ({"nested": {"a": 1}}, "values must be"),
    ({"list": [1, 2]}, "values must be"),
    (["not", "an", "object"], "JSON object"),
])
def test_metadata_is_bounded_like_stripes(api_key_client, metadata, reason):
    response = post(api_key_client, {"metric": "api_call", "metadata": metadata})
    assert_refused(response, 400, "invalid_usage_event", "metadata")
    assert reason in response.json()["error"]["details"]["reason"]
    assert UsageEvent.objects.count() == 0


def test_metadata_at_the_limits_is_stored(api_key_client):
    metadata = {f"{i:0>{MAX_METADATA_KEY_LENGTH}}": i for i in range(MAX_METADATA_KEYS - 3)}
    metadata |= {"plan": "é" * MAX_METADATA_VALUE_LENGTH, "ok": True, "none": None}
    assert len(metadata) == MAX_METADATA_KEYS
    response = post(api_key_client, {"metric": "api_call", "metadata": metadata})
    assert response.status_code == 201
    assert UsageEvent.objects.get().metadata == metadata


def test_metadata_within_each_rule_but_too_large_as_a_whole_is_400(api_key_client):
    metadata = {f"k{i}": "x" * MAX_METADATA_VALUE_LENGTH for i in range(MAX_METADATA_KEYS)}  # about 26 kB
    response = post(api_key_client, {"metric": "api_call", "metadata": metadata})
    assert_refused(response, 400, "invalid_usage_event", "metadata")
    assert "bytes" in response.json()["error"]["details"]["reason"]


def test_a_20_mb_metadata_event_is_413_before_it_is_read(api_key_client):
    body = json.dumps({"metric": "api_call", "metadata": {"blob": "x" * (20 * 1024 * 1024)}})
    response = api_key_client.generic("POST", EVENTS, body, content_type="application/json",
                                      HTTP_IDEMPOTENCY_KEY="big")
    assert_refused(response, 413, "request_too_large")
    assert UsageEvent.objects.count() == 0


def test_a_batch_whose_metadata_is_too_large_together_is_413_and_stores_nothing(api_key_client, settings):
    settings.API_MAX_BODY_BYTES = 4 * 1024 * 1024  # the batch bound must hold under a generous body limit too
    per_event = {f"k{i}": "x" * MAX_METADATA_VALUE_LENGTH for i in range(12)}  # about 6 kB, within one event's bound
    count = MAX_BATCH_METADATA_BYTES // len(json.dumps(per_event)) + 1
    events = [{"idempotency_key": f"e{i}", "metric": "api_call", "metadata": per_event} for i in range(count)]
    response = post(api_key_client, {"events": events})
    assert_refused(response, 413, "request_too_large")
    assert UsageEvent.objects.count() == 0
    # One event fewer fits, and is stored whole.
    response = post(api_key_client, {"events": events[:count - 1]})
    assert response.status_code == 201 and UsageEvent.objects.count() == count - 1


def test_a_batch_above_the_count_limit_is_400(api_key_client):
    events = [{"idempotency_key": f"e{i}", "metric": "api_call"} for i in range(1001)]
    assert_refused(post(api_key_client, {"events": events}), 400, "invalid_usage_event", "events")
    assert UsageEvent.objects.count() == 0


@pytest.mark.parametrize("text", ["nul\u0000key", "lone \ud800 surrogate"])
def test_strings_postgresql_cannot_store_are_400(api_key_client, text):
    """Both are legal JSON escapes (json.dumps writes \\u0000, \\ud800) that PostgreSQL refuses: a 500 before."""
    for metadata, field in (({"note": text}, "metadata"), ({text: "note"}, "metadata")):
        body = json.dumps({"metric": "api_call", "metadata": metadata})
        response = api_key_client.generic("POST", EVENTS, body, content_type="application/json",
                                          HTTP_IDEMPOTENCY_KEY="k")
        assert_refused(response, 400, "invalid_usage_event", field)
    in_batch = api_key_client.generic("POST", EVENTS, json.dumps({"events": [{"idempotency_key": text,
                                                                               "metric": "api_call"}]}),
                                      content_type="application/json")
    assert_refused(in_batch, 400, "invalid_usage_event", "idempotency_key")
    assert UsageEvent.objects.count() == 0


@pytest.mark.parametrize("reason", ["nope", "\x00", "usage\x00"])
def test_an_unknown_credit_ledger_reason_is_400_not_passed_to_the_database(api_key_client, reason):
    response = api_key_client.get(reverse("api:credits"), {"reason": reason})
    assert_refused(response, 400, "invalid")
    assert api_key_client.get(reverse("api:credits"), {"reason": "signup_grant"}).status_code == 200
