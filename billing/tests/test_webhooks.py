"""The webhook pipeline: verify, store once, acknowledge, apply once in a task, retry then park, replay, sweep."""
import time

import pytest

from billing.models import WebhookEvent
from billing.selectors import team_plan

from .conftest import complete_checkout, deliver, stripe_events


def _event(event_id="evt_test_1", type_="customer.updated", obj=None):
    return {"id": event_id, "object": "event", "type": type_, "created": int(time.time()), "livemode": False,
            "api_version": "2026-08-26.dahlia", "data": {"object": obj or {"id": "cus_missing", "object": "customer"}}}


@pytest.mark.django_db
def test_forged_stale_unsigned_and_bad_bodies_are_rejected_and_store_nothing(billing_world, client):
    assert deliver(client, billing_world, _event(), secret="whsec_forged").status_code == 400
    assert deliver(client, billing_world, _event(), timestamp=int(time.time()) - 301).status_code == 400
    assert client.post(f"/stripe/webhook/{billing_world.djstripe_uuid}/", data="{}",
                       content_type="application/json").status_code == 400
    assert deliver(client, billing_world, {}, body="not json").status_code == 400
    unknown = client.post("/stripe/webhook/00000000-0000-0000-0000-000000000000/", data="{}",
                          content_type="application/json", HTTP_STRIPE_SIGNATURE="t=1,v1=x")
    assert unknown.status_code == 404
    assert WebhookEvent.objects.count() == 0


@pytest.mark.django_db
def test_unknown_event_type_is_stored_and_processed_without_handlers(billing_world, client):
    event = _event(type_="radar.early_fraud_warning.created", obj={"id": "issfr_1", "object": "radar.early_fraud_warning"})
    assert deliver(client, billing_world, event).status_code == 200
    stored = WebhookEvent.objects.get()
    assert stored.status == WebhookEvent.Status.PROCESSED and stored.attempts == 1


@pytest.mark.django_db
def test_credit_pack_granted_once_when_the_webhook_arrives_three_times(billing_world, client, team, django_capture_on_commit_callbacks):
    from billing.extensions import credit_ledger
    from billing.services.checkout import checkout_session_start

    before = credit_ledger().balance(team=team)
    start = checkout_session_start(team=team, user=None, lookup_key="credits_10", currency="usd", request_token="t1")
    assert complete_checkout(_emu(), start.id).status_code == 303
    (completed,) = stripe_events({"checkout.session.completed"})
    for _ in range(3):
        response = deliver(client, billing_world, completed)
        assert response.status_code == 200
    assert WebhookEvent.objects.filter(stripe_event_id=completed["id"]).count() == 1
    assert credit_ledger().balance(team=team) == before + 10
    # A staff replay of the processed event grants nothing more either (idempotent on the session id).
    from billing.services import webhook_event_replay

    assert webhook_event_replay(event_id=completed["id"]) == WebhookEvent.Status.PROCESSED
    assert credit_ledger().balance(team=team) == before + 10


_EMU = {}


def _emu():
    return _EMU["emulator"]


@pytest.fixture(autouse=True)
def _remember_emulator(request):
    if "stripe_emulator" in request.fixturenames:
        _EMU["emulator"] = request.getfixturevalue("stripe_emulator")
    yield


def _subscribe(team, emulator, lookup_key="pro_monthly"):
    from billing.services.checkout import checkout_session_start

    start = checkout_session_start(team=team, user=None, lookup_key=lookup_key, currency="usd",
                                   request_token=f"sub-{lookup_key}")
    assert complete_checkout(emulator, start.id).status_code == 303
    return start


@pytest.mark.django_db
@pytest.mark.parametrize("order", ["in_order", "reversed"])
def test_subscription_events_in_any_order_end_in_the_same_state(billing_world, client, team, stripe_emulator, order):
    _subscribe(team, stripe_emulator)
    from billing.services.subscriptions import subscription_cancel_at_period_end

    # Apply the checkout's events, then cancel at period end: the mirror must end canceling, whatever the order.
    events = stripe_events()
    for event in (events if order == "in_order" else list(reversed(events))):
        assert deliver(client, billing_world, event).status_code == 200
    assert team_plan(team=team).key == "pro"
    subscription_cancel_at_period_end(team=team)
    later = [e for e in stripe_events() if e["id"] not in {x["id"] for x in events}]
    assert any(e["type"] == "customer.subscription.updated" for e in later)
    for event in (later if order == "in_order" else list(reversed(later))):
        deliver(client, billing_world, event)
    from billing.selectors import team_subscription

    subscription = team_subscription(team=team)
    assert subscription.stripe_data["cancel_at_period_end"] is True
    assert team_plan(team=team).key == "pro"  # still paid until the period ends
    assert not WebhookEvent.objects.exclude(status=WebhookEvent.Status.PROCESSED).exists()


@pytest.mark.django_db
def test_handler_crash_is_retried_then_parked_then_replayed(billing_world, client, settings, monkeypatch):
    from billing.webhooks import registry

    settings.BILLING_WEBHOOK_MAX_ATTEMPTS = 3
    calls = []

    def crashing(*, event):
        calls.append(event["id"])
        raise RuntimeError("handler exploded")

    monkeypatch.setitem(registry.HANDLERS, "test.crash", [crashing])
    event = _event("evt_crash", "test.crash", {"id": "x_1", "object": "thing"})
    assert deliver(client, billing_world, event).status_code == 200  # acknowledged even though processing fails
    stored = WebhookEvent.objects.get(stripe_event_id="evt_crash")
    assert stored.status == WebhookEvent.Status.PARKED
    assert stored.attempts == 3 and len(calls) == 3
    assert "handler exploded" in stored.last_error and "Traceback" in stored.last_error

    monkeypatch.setitem(registry.HANDLERS, "test.crash", [lambda *, event: calls.append("ok")])
    from django.core.management import call_command

    call_command("replay_events", "--failed")
    stored.refresh_from_db()
    assert stored.status == WebhookEvent.Status.PROCESSED and calls[-1] == "ok"


@pytest.mark.django_db
def test_sweep_applies_events_that_were_never_delivered(billing_world, team, stripe_emulator):
    from billing.services import events_sweep

    _subscribe(team, stripe_emulator)
    assert WebhookEvent.objects.count() == 0
    from django.test import TestCase

    with TestCase.captureOnCommitCallbacks(execute=True):
        found = events_sweep(days=1)
    # Issue 11: only the types the endpoint subscribes to are recorded (it was every type Stripe listed).
    from billing.services.setup import WEBHOOK_EVENTS

    everything = stripe_events()
    assert found == len(stripe_events(types=set(WEBHOOK_EVENTS))) < len(everything)
    assert set(WebhookEvent.objects.values_list("type", flat=True)) <= set(WEBHOOK_EVENTS)
    assert WebhookEvent.objects.filter(source=WebhookEvent.Source.SWEEP, status=WebhookEvent.Status.PROCESSED).count() == found
    assert team_plan(team=team).key == "pro"
    with TestCase.captureOnCommitCallbacks(execute=True):
        assert events_sweep(days=1) == 0


@pytest.mark.django_db
def test_raw_insert_of_the_endpoint_stores_what_the_model_would(billing_world, client):
    """The endpoint inserts with one SQL statement (no model instance); the row must read back like a model-made one."""
    event = _event("evt_raw_1", "radar.early_fraud_warning.created",
                   {"id": "issfr_raw_1", "object": "radar.early_fraud_warning", "customer": "cus_raw_1"})
    assert deliver(client, billing_world, event).status_code == 200
    stored = WebhookEvent.objects.get(stripe_event_id="evt_raw_1")
    assert stored.payload == event and stored.type == "radar.early_fraud_warning.created"
    assert stored.source == WebhookEvent.Source.WEBHOOK and stored.webhook_endpoint_id == billing_world.id
    assert stored.stripe_object_id == "issfr_raw_1" and stored.stripe_customer_id == "cus_raw_1"
    assert int(stored.stripe_created.timestamp()) == event["created"] and stored.received_at is not None
    assert stored.attempts == 1 and stored.status == WebhookEvent.Status.PROCESSED and stored.last_error == ""
    # A second delivery of the same id is a no-op that still answers 200 and says so.
    again = deliver(client, billing_world, event)
    assert again.status_code == 200 and again.json() == {"received": True, "duplicate": True}
    assert WebhookEvent.objects.filter(stripe_event_id="evt_raw_1").count() == 1


@pytest.mark.django_db
def test_watermark_skips_the_re_retrieve_only_when_the_mirror_is_newer_than_the_event(billing_world, client, team,
                                                                                     stripe_emulator):
    from djstripe.models import Event, Invoice

    _subscribe(team, stripe_emulator)
    events = stripe_events()
    for event in events:
        assert deliver(client, billing_world, event).status_code == 200
    (paid,) = [e for e in events if e["type"] == "invoice.paid"]
    invoice_id = paid["data"]["object"]["id"]
    mirrored_at = Invoice.objects.get(id=invoice_id).djstripe_updated

    def invoice_reads() -> int:
        return sum(1 for r in list(stripe_emulator.emulator.request_log)
                   if r["method"] == "GET" and r["path"].startswith(f"/v1/invoices/{invoice_id}"))

    # An event created well before the mirror was written: the mirror already holds a newer state, no re-retrieve.
    stale = {**paid, "id": "evt_stale_paid", "created": paid["created"] - 3600}
    reads = invoice_reads()
    assert deliver(client, billing_world, stale).status_code == 200
    assert invoice_reads() == reads
    assert WebhookEvent.objects.get(stripe_event_id="evt_stale_paid").status == WebhookEvent.Status.PROCESSED
    assert Event.objects.filter(id="evt_stale_paid").exists()  # dj-stripe's event table stays complete
    assert Invoice.objects.get(id=invoice_id).djstripe_updated == mirrored_at

    # An event created after the mirror was written: its own payload is the newest state, applied without a
    # re-retrieve (issue 12; this assertion said `reads + 1` when every applied event was re-retrieved).
    fresh = {**paid, "id": "evt_fresh_paid", "created": int(time.time()) + 60,
             "data": {"object": {**paid["data"]["object"], "metadata": {"fresh": "yes"}}}}
    assert deliver(client, billing_world, fresh).status_code == 200
    assert invoice_reads() == reads
    assert Invoice.objects.get(id=invoice_id).djstripe_updated > mirrored_at
    assert Invoice.objects.get(id=invoice_id).metadata == {"fresh": "yes"}


def test_watermark_never_skips_a_dj_stripe_signal_that_another_receiver_listens_to():
    from djstripe.signals import WEBHOOK_SIGNALS

    from billing.services.webhooks import _only_djstripe_receivers

    assert _only_djstripe_receivers("invoice.paid")

    def listener(sender, event, **kwargs):
        pass

    WEBHOOK_SIGNALS["invoice.paid"].connect(listener)
    try:
        assert not _only_djstripe_receivers("invoice.paid")
    finally:
        WEBHOOK_SIGNALS["invoice.paid"].disconnect(listener)
    assert _only_djstripe_receivers("invoice.paid")
