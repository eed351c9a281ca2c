"""
Applying an event never calls Stripe with a database transaction open: reads the apply needs (dj-stripe's sync of a
Checkout Session, a handler's re-read, a re-retrieve on a same-second tie) are fetched between rounds, with no
transaction, and replayed inside (billing.stripe_gateway.deferred_reads).
"""
import pytest
import requests
from django.db import connection

from billing.models import WebhookEvent

from .conftest import complete_checkout, deliver, stripe_events


@pytest.fixture
def stripe_calls(stripe_emulator, monkeypatch):
    """Every HTTP request to the emulator's API: (method, path?query, whether a transaction was open)."""
    calls = []
    original = requests.Session.request

    def recording(self, method, url, *args, **kwargs):
        if url.startswith(stripe_emulator.url + "/v1/"):
            calls.append((method.upper(), url.split("/v1/")[1], connection.in_atomic_block))
        return original(self, method, url, *args, **kwargs)

    monkeypatch.setattr(requests.Session, "request", recording)
    return calls


def _credit_pack_completed(team, emulator) -> dict:
    from billing.services.checkout import checkout_session_start

    start = checkout_session_start(team=team, user=None, lookup_key="credits_10", currency="usd", request_token="t1")
    assert complete_checkout(emulator, start.id).status_code == 303
    (completed,) = stripe_events({"checkout.session.completed"})
    return completed


@pytest.mark.django_db(transaction=True)
def test_checkout_completed_reads_stripe_only_between_transactions(billing_world, client, stripe_emulator,
                                                                   stripe_calls):
    from accounts.tests.factories import make_team_with_owner
    from billing.extensions import credit_ledger

    team, _owner = make_team_with_owner()
    before = credit_ledger().balance(team=team)
    completed = _credit_pack_completed(team, stripe_emulator)
    stripe_calls.clear()
    assert deliver(client, billing_world, completed).status_code == 200  # applied in-process (eager) after commit

    stored = WebhookEvent.objects.get(stripe_event_id=completed["id"])
    assert stored.status == WebhookEvent.Status.PROCESSED and stored.attempts == 1
    assert credit_ledger().balance(team=team) == before + 10
    # dj-stripe's session sync and the handler's re-read both went to Stripe, each read once, none inside a transaction
    session_reads = [c for c in stripe_calls
                     if c[1].split("?")[0] == f"checkout/sessions/{completed['data']['object']['id']}"]
    assert session_reads and all(method == "GET" for method, _, _ in stripe_calls)
    assert len({c[1] for c in stripe_calls}) == len(stripe_calls), "the same request was sent twice"
    assert [c for c in stripe_calls if c[2]] == [], "a Stripe call was made inside a database transaction"


@pytest.mark.django_db(transaction=True)
def test_stripe_failing_during_the_read_phase_fails_the_attempt_and_writes_nothing(
        billing_world, client, stripe_emulator, stripe_calls, settings):
    from accounts.tests.factories import make_team_with_owner
    from billing.extensions import credit_ledger
    from billing.services import webhook_event_replay

    settings.STRIPE_MAX_NETWORK_RETRIES = 0
    settings.BILLING_EAGER_RETRY_INLINE = False  # one attempt here; the row keeps its retry time
    team, _owner = make_team_with_owner()
    before = credit_ledger().balance(team=team)
    completed = _credit_pack_completed(team, stripe_emulator)
    stripe_emulator.control("POST", "/_emulator/faults", {"path_prefix": "/v1/checkout/sessions/", "method": "GET",
                                                          "status": "503", "count": "-1"})
    stripe_calls.clear()
    assert deliver(client, billing_world, completed).status_code == 200
    stored = WebhookEvent.objects.get(stripe_event_id=completed["id"])
    assert stored.status == WebhookEvent.Status.FAILED and stored.attempts == 1
    assert "APIError" in stored.last_error or "stripe_unavailable" in stored.last_error  # Stripe's 503, as raised
    assert credit_ledger().balance(team=team) == before
    assert [c for c in stripe_calls if c[2]] == []

    stripe_emulator.control("DELETE", "/_emulator/faults")
    assert webhook_event_replay(event_id=completed["id"]) == WebhookEvent.Status.PROCESSED
    assert credit_ledger().balance(team=team) == before + 10


@pytest.mark.django_db
def test_a_stripe_write_inside_the_transaction_fails_the_event_without_reaching_stripe(
        billing_world, client, stripe_emulator, monkeypatch):
    from billing.stripe_gateway import customers as customers_gateway
    from billing.webhooks import registry

    def writes_to_stripe(*, event):
        customers_gateway.customer_create(email="x@example.com", name="x", team_id=1, idempotency_key="k-1")

    monkeypatch.setitem(registry.HANDLERS, "radar.early_fraud_warning.created", [writes_to_stripe])
    before = len(stripe_emulator.control("GET", "/_emulator/requests?method=POST&path_prefix=/v1/customers")["data"])
    event = {"id": "evt_writes", "object": "event", "type": "radar.early_fraud_warning.created", "created": 1,
             "livemode": False, "data": {"object": {"id": "issfr_1", "object": "radar.early_fraud_warning"}}}
    assert deliver(client, billing_world, event).status_code == 200
    stored = WebhookEvent.objects.get(stripe_event_id="evt_writes")
    assert stored.status in (WebhookEvent.Status.FAILED, WebhookEvent.Status.PARKED)  # retried as any failure
    assert "StripeWriteInTransaction" in stored.last_error
    after = len(stripe_emulator.control("GET", "/_emulator/requests?method=POST&path_prefix=/v1/customers")["data"])
    assert after == before


@pytest.mark.django_db(transaction=True)
def test_work_that_keeps_missing_reads_is_never_committed_on_its_last_round(stripe_emulator, team):
    """A read swallowed on the way (as dj-stripe does) in every round: after the last one it raises, nothing kept."""
    from billing.models import MirrorWatermark
    from billing.stripe_gateway._core import client
    from billing.stripe_gateway.deferred_reads import StripeReadDeferred, atomic_with_stripe_reads

    customer = client().v1.customers.create(params={"email": "rounds@example.com"}).to_dict()
    rounds = []

    def work():
        rounds.append(len(rounds))
        MirrorWatermark.objects.create(stripe_object_id=f"x_{len(rounds)}", object_type="invoice")
        try:  # a new read every round: never all fetched
            client().v1.customers.retrieve(customer["id"], params={"expand": [f"r{len(rounds)}"]})
        except StripeReadDeferred:
            pass

    with pytest.raises(StripeReadDeferred):
        atomic_with_stripe_reads(work, rounds=3)
    assert len(rounds) == 3
    assert not MirrorWatermark.objects.filter(stripe_object_id__startswith="x_").exists()
