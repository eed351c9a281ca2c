"""`POST /_emulator/trigger` for the billing event types, and their signed webhook delivery."""
from __future__ import annotations

from typing import Any

import pytest
import stripe

from .conftest import Receiver, make_client

BILLING_TRIGGERS = [
    "checkout.session.completed", "customer.subscription.created", "customer.subscription.updated",
    "customer.subscription.deleted", "customer.subscription.trial_will_end", "invoice.paid",
    "invoice.payment_failed", "invoice.payment_succeeded", "invoice.created", "invoice.finalized",
]


@pytest.mark.parametrize("event_type", BILLING_TRIGGERS)
def test_trigger_creates_the_event_with_its_objects(emulator: Any, client: stripe.StripeClient, event_type: str) -> None:
    out = emulator.control("POST", "/_emulator/trigger", {"type": event_type})
    created = [e for e in out["events"] if e["type"] == event_type]
    assert created, out["events"]
    event = client.v1.events.retrieve(created[-1]["id"])
    obj = event.data.object
    if event_type.startswith("invoice."):
        inv = client.v1.invoices.retrieve(obj.id)
        assert inv.id == out["objects"]["invoice"]
        expected = "open" if event_type == "invoice.payment_failed" else "paid"
        if event_type in ("invoice.created",):
            assert obj.status == "draft"
        elif event_type == "invoice.finalized":
            assert obj.status == "open"
        else:
            assert obj.status == expected and inv.status == expected
    elif event_type.startswith("customer.subscription."):
        assert obj.id == out["objects"]["subscription"]
    else:
        assert obj.id == out["objects"]["checkout_session"] and obj.status == "complete"


def test_checkout_completion_is_delivered_signed(fresh_emulator: Any, receiver: Receiver) -> None:
    client = make_client(fresh_emulator)
    endpoint = client.v1.webhook_endpoints.create(params={"url": receiver.url,
                                                          "enabled_events": ["checkout.session.completed"]})
    fresh_emulator.control("POST", "/_emulator/trigger", {"type": "checkout.session.completed"})
    assert fresh_emulator.wait_for_webhooks(10)
    assert len(receiver.received) == 1
    got = receiver.received[0]
    event = stripe.Webhook.construct_event(got["body"].decode(), got["signature"], endpoint.secret)
    assert event.type == "checkout.session.completed" and event.data.object.payment_status == "paid"
