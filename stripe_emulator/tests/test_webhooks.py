"""Webhook endpoints and signed, retried, non-blocking delivery (verified with the SDK's own checker)."""
from __future__ import annotations

import json
import time
from typing import Any

import pytest
import stripe

from .conftest import Receiver


def _deliveries(emu: Any, **filters: str) -> list[dict[str, Any]]:
    query = "&".join(f"{k}={v}" for k, v in filters.items())
    return emu.control("GET", "/_emulator/deliveries" + (f"?{query}" if query else ""))["data"]


def test_secret_is_returned_only_on_create(fresh_client: stripe.StripeClient, receiver: Receiver) -> None:
    ep = fresh_client.v1.webhook_endpoints.create(params={"url": receiver.url, "enabled_events": ["customer.created"]})
    assert ep.secret.startswith("whsec_") and ep.status == "enabled"
    again = fresh_client.v1.webhook_endpoints.retrieve(ep.id)
    assert "secret" not in again
    listed = fresh_client.v1.webhook_endpoints.list().data
    assert [e.id for e in listed] == [ep.id] and "secret" not in listed[0]
    upd = fresh_client.v1.webhook_endpoints.update(ep.id, params={"enabled_events": ["*"], "disabled": True})
    assert upd.status == "disabled" and upd.enabled_events == ["*"]
    with pytest.raises(stripe.InvalidRequestError) as exc:
        fresh_client.v1.webhook_endpoints.update(ep.id, params={"url": "ftp://example.com/hook"})
    assert exc.value.param == "url"
    assert fresh_client.v1.webhook_endpoints.delete(ep.id).deleted is True
    with pytest.raises(stripe.InvalidRequestError):
        fresh_client.v1.webhook_endpoints.retrieve(ep.id)


def test_signed_delivery_verifies_with_construct_event(fresh_emulator: Any, fresh_client: stripe.StripeClient,
                                                      receiver: Receiver) -> None:
    ep = fresh_client.v1.webhook_endpoints.create(params={"url": receiver.url, "enabled_events": ["customer.created", "customer.updated"]})
    cus = fresh_client.v1.customers.create(params={"email": "hook@example.com"})
    fresh_client.v1.customers.update(cus.id, params={"name": "Hooked"})
    fresh_client.v1.products.create(params={"name": "not subscribed"})
    assert fresh_emulator.wait_for_webhooks()
    assert len(receiver.received) == 2
    events = []
    for rec in receiver.received:
        event = stripe.Webhook.construct_event(rec["body"].decode(), rec["signature"], ep.secret)
        events.append(event)
        assert rec["headers"]["Content-Type"].startswith("application/json")
    assert [e.type for e in events] == ["customer.created", "customer.updated"]
    assert events[0].data.object.id == cus.id and events[0].data.object.email == "hook@example.com"
    assert events[1]["data"]["previous_attributes"].to_dict() == {"name": None}
    assert events[1]["data"]["object"]["name"] == "Hooked"
    assert events[0]["request"]["id"].startswith("req_") and events[0]["api_version"] == stripe.api_version
    with pytest.raises(stripe.SignatureVerificationError):
        stripe.Webhook.construct_event(receiver.received[0]["body"].decode(), receiver.received[0]["signature"], "whsec_wrong")
    # once delivered, the event has no pending webhooks
    assert fresh_client.v1.events.retrieve(events[0].id).pending_webhooks == 0
    rows = _deliveries(fresh_emulator, endpoint=ep.id)
    assert [(r["type"], r["attempt"], r["status_code"], r["succeeded"]) for r in rows] == [
        ("customer.created", 1, 200, True), ("customer.updated", 1, 200, True)]


def test_failed_delivery_is_retried_with_backoff(fresh_emulator: Any, fresh_client: stripe.StripeClient,
                                                receiver: Receiver) -> None:
    receiver.statuses = [500, 502]
    fresh_emulator.emulator.webhooks.retry_scale = 0.00002  # 1h -> 72 ms
    fresh_client.v1.webhook_endpoints.create(params={"url": receiver.url, "enabled_events": ["product.created"]})
    prod = fresh_client.v1.products.create(params={"name": "retry me"})
    assert fresh_emulator.wait_for_webhooks()
    rows = _deliveries(fresh_emulator, type="product.created")
    assert [(r["attempt"], r["status_code"], r["succeeded"]) for r in rows] == [(1, 500, False), (2, 502, False), (3, 200, True)]
    assert rows[0]["next_retry_at"] is not None and rows[2]["next_retry_at"] is None
    # Stripe's schedule (1h, then 2h) multiplied by the emulator's retry scale
    scale = fresh_emulator.emulator.webhooks.retry_scale
    assert [r["retry_delay_seconds"] for r in rows] == [3600 * scale, 7200 * scale, None]
    bodies = [json.loads(r["body"]) for r in receiver.received]
    assert {b["id"] for b in bodies} == {rows[0]["event"]} and bodies[0]["data"]["object"]["id"] == prod.id


def test_unreachable_endpoint_is_recorded(fresh_emulator: Any, fresh_client: stripe.StripeClient) -> None:
    ep = fresh_client.v1.webhook_endpoints.create(params={"url": "http://127.0.0.1:9/nothing", "enabled_events": ["coupon.created"]})
    fresh_emulator.emulator.webhooks.pause()  # only look at the first attempt
    fresh_client.v1.coupons.create(params={"percent_off": "5"})
    fresh_emulator.emulator.webhooks.resume()
    deadline = time.monotonic() + 5
    while not _deliveries(fresh_emulator, endpoint=ep.id) and time.monotonic() < deadline:
        time.sleep(0.01)
    row = _deliveries(fresh_emulator, endpoint=ep.id)[0]
    assert row["status_code"] is None and row["error"] and not row["succeeded"]
    fresh_client.v1.webhook_endpoints.delete(ep.id)  # stops further retries


def test_hanging_receiver_blocks_neither_api_nor_other_endpoints(fresh_emulator: Any, fresh_client: stripe.StripeClient) -> None:
    hanging, healthy = Receiver(), Receiver()
    try:
        hanging.gate.clear()
        fresh_client.v1.webhook_endpoints.create(params={"url": hanging.url, "enabled_events": ["*"]})
        fresh_client.v1.webhook_endpoints.create(params={"url": healthy.url, "enabled_events": ["customer.created"]})
        ids = [fresh_client.v1.customers.create().id for _ in range(5)]  # API answers while the receiver hangs
        deadline = time.monotonic() + 5
        while len(healthy.received) < 5 and time.monotonic() < deadline:
            time.sleep(0.01)
        assert [json.loads(r["body"])["data"]["object"]["id"] for r in healthy.received] == ids
        assert len(hanging.received) == 1  # its worker is stuck on the first event only
    finally:
        hanging.gate.set()
        assert fresh_emulator.wait_for_webhooks()
        hanging.close()
        healthy.close()


def test_events_before_endpoint_exists_are_not_delivered(fresh_emulator: Any, fresh_client: stripe.StripeClient,
                                                         receiver: Receiver) -> None:
    early = fresh_client.v1.customers.create()
    fresh_client.v1.webhook_endpoints.create(params={"url": receiver.url, "enabled_events": ["customer.created"]})
    late = fresh_client.v1.customers.create()
    assert fresh_emulator.wait_for_webhooks()
    assert [e["data"]["object"]["id"] for e in receiver.events()] == [late.id]
    assert early.id != late.id


def test_pause_and_resume_delivery(fresh_emulator: Any, fresh_client: stripe.StripeClient, receiver: Receiver) -> None:
    fresh_client.v1.webhook_endpoints.create(params={"url": receiver.url, "enabled_events": ["*"]})
    fresh_emulator.control("POST", "/_emulator/webhooks/pause")
    fresh_client.v1.customers.create()
    assert receiver.received == []
    fresh_emulator.control("POST", "/_emulator/webhooks/resume")
    assert fresh_emulator.wait_for_webhooks()
    assert [e["type"] for e in receiver.events()] == ["customer.created"]


def test_trigger_events_are_delivered_in_order(fresh_emulator: Any, fresh_client: stripe.StripeClient, receiver: Receiver) -> None:
    fresh_client.v1.webhook_endpoints.create(params={"url": receiver.url, "enabled_events": ["*"]})
    out = fresh_emulator.control("POST", "/_emulator/trigger", {"type": "payment_intent.succeeded"})
    assert fresh_emulator.wait_for_webhooks()
    assert [e["type"] for e in receiver.events()] == [e["type"] for e in out["events"]] == [
        "payment_intent.created", "charge.succeeded", "payment_intent.succeeded"]
    assert all(e["request"]["id"] is None for e in receiver.events())
