"""
A drain applies the events that need only their payload together, in one transaction with bulk writes (issue 12);
everything else, and a batch that fails, goes one by one. The rows written must be the ones dj-stripe's own sync
writes, each event applied once, each object's events in order.
"""
import copy
import threading
import time

import pytest
from django.db import connection
from django.test.utils import CaptureQueriesContext

from billing.models import MirrorWatermark, OutboundEmail, WebhookEvent
from billing.services.mirror import _model_for, mirror_apply_event_payloads, mirror_store
from billing.services.webhooks import webhook_events_apply_batch, webhook_events_drain
from billing.stripe_gateway._core import client

from .backoffice_fixtures import invoice_charge, make_customer, make_subscription
from .conftest import emulator_requests

PROCESSED = WebhookEvent.Status.PROCESSED
_VOLATILE = {"djstripe_id", "djstripe_created", "djstripe_updated"}


def _event(event_id: str, type_: str, obj: dict, created: int) -> dict:
    return {"id": event_id, "object": "event", "type": type_, "created": created, "livemode": False,
            "api_version": "2026-08-26.dahlia", "data": {"object": obj}}


def _store(payload: dict) -> int:
    obj = payload["data"]["object"]
    return WebhookEvent.objects.create(
        stripe_event_id=payload["id"], type=payload["type"], payload=payload, stripe_object_id=obj.get("id", ""),
        stripe_customer_id=obj.get("customer") or "").pk


def _row(kind: str, object_id: str) -> dict:
    row = _model_for(kind).objects.get(id=object_id)
    return {f.attname: getattr(row, f.attname) for f in row._meta.concrete_fields if f.name not in _VOLATILE}


def _differences(expected: dict, got: dict) -> dict:
    """The fields (and keys of `stripe_data`) whose values differ."""
    differ = {key: (expected.get(key), got.get(key)) for key in expected.keys() | got.keys()
              if expected.get(key) != got.get(key)}
    for key, (left, right) in list(differ.items()):
        if isinstance(left, dict) and isinstance(right, dict):
            differ[key] = _differences(left, right)
        elif isinstance(left, list) and isinstance(right, list) and len(left) == len(right):
            differ[key] = [_differences(a, b) if isinstance(a, dict) and isinstance(b, dict) else (a, b)
                           for a, b in zip(left, right) if a != b]
    return differ


def _stripe_calls(emulator) -> int:
    return len(list(emulator.emulator.request_log))


def _customer(email: str) -> dict:
    customer = client().v1.customers.create(params={"email": email}).to_dict()
    mirror_store(kind="customer", data=customer)
    return customer


@pytest.mark.django_db
def test_the_batch_writes_the_rows_dj_stripes_own_sync_writes(stripe_emulator, team):
    """Product, price, subscription with items, its paid invoice with lines, payment intent, charge, refund: same rows
    both ways."""
    from djstripe.models import LineItem, SubscriptionItem

    customer = make_customer(team)
    subscription, invoice = make_subscription(customer.id, trial_days=None)
    charge = invoice_charge(invoice.id)
    sdk = client().v1
    refund = sdk.refunds.create(params={"charge": charge.id, "amount": 500}).to_dict(for_json=True)
    price = subscription.stripe_data["items"]["data"][0]["price"]
    objects = [
        sdk.products.retrieve(price["product"]).to_dict(for_json=True),
        sdk.prices.retrieve(price["id"]).to_dict(for_json=True),
        sdk.subscriptions.retrieve(subscription.id).to_dict(for_json=True),
        sdk.invoices.retrieve(invoice.id).to_dict(for_json=True),
        sdk.payment_intents.retrieve(charge.payment_intent_id).to_dict(for_json=True),
        sdk.charges.retrieve(charge.id).to_dict(for_json=True),
        refund,
    ]
    for data in copy.deepcopy(objects):  # dj-stripe's sync (one by one; it edits the lines it is given)
        mirror_store(kind=data["object"], data=data)
    by_sync = {data["id"]: _row(data["object"], data["id"]) for data in objects}
    def items_and_lines() -> tuple[list, list]:
        items = SubscriptionItem.objects.filter(subscription_id=subscription.id).values_list("id", flat=True)
        lines = LineItem.objects.filter(stripe_data__invoice=invoice.id).values_list("id", "stripe_data__amount")
        return sorted(items), sorted(lines)

    items, lines = items_and_lines()
    assert items and lines

    for data in reversed(objects):  # gone, with the items and lines that hang off them
        _model_for(data["object"]).objects.filter(id=data["id"]).delete()
    assert not SubscriptionItem.objects.filter(subscription_id=subscription.id).exists()
    mirror_apply_event_payloads(objects=copy.deepcopy(objects))  # created in bulk
    by_batch = {data["id"]: _row(data["object"], data["id"]) for data in objects}
    assert {object_id: _differences(row, by_batch[object_id]) for object_id, row in by_sync.items()} == {
        data["id"]: {} for data in objects}
    assert items_and_lines() == (items, lines)

    # An update of existing rows: the new state, the same rows (no second row, the row's id kept).
    before = {data["id"]: _model_for(data["object"]).objects.get(id=data["id"]).pk for data in objects}
    changed = [{**data, "metadata": {"batch": "2"}} for data in objects]
    mirror_apply_event_payloads(objects=changed)
    for data in changed:
        row = _model_for(data["object"]).objects.get(id=data["id"])
        assert (row.pk, row.metadata) == (before[data["id"]], {"batch": "2"})
        assert row.stripe_data["metadata"] == {"batch": "2"}
    assert items_and_lines() == (items, lines)


@pytest.mark.django_db(transaction=True)
def test_a_storm_batch_is_one_transaction_with_a_handful_of_statements_and_no_stripe_call(stripe_emulator, team):
    from djstripe.models import Event, Invoice, Subscription

    customers = [_customer(f"storm{i}@example.com") for i in range(5)]
    t = int(time.time())
    # A first batch, as a drain has applied before: dj-stripe's owner-account lookups are remembered after it commits.
    warm = {"id": "in_warm", "object": "invoice", "customer": customers[0]["id"], "status": "draft"}
    assert webhook_events_apply_batch(webhook_event_ids=[_store(_event("evt_warm", "invoice.created", warm, t))]) \
        == (1, [])
    ids = []
    for i in range(60):
        customer = customers[i % 5]["id"]
        if i % 3 == 2:
            obj = {"id": f"sub_b_{i}", "object": "subscription", "customer": customer, "status": "active",
                   "items": {"object": "list", "data": []}}
            ids.append(_store(_event(f"evt_b_{i}", "customer.subscription.updated", obj, t)))
        else:
            obj = {"id": f"in_b_{i}", "object": "invoice", "customer": customer, "status": "paid",
                   "amount_paid": 9900, "currency": "usd"}
            ids.append(_store(_event(f"evt_b_{i}", "invoice.paid", obj, t)))
    calls = _stripe_calls(stripe_emulator)

    with CaptureQueriesContext(connection) as queries:
        applied, alone = webhook_events_apply_batch(webhook_event_ids=ids)

    assert (applied, alone) == (60, [])
    assert len(queries) <= 16  # one by one: about 14 statements per event
    assert _stripe_calls(stripe_emulator) == calls
    assert WebhookEvent.objects.filter(pk__in=ids, status=PROCESSED, attempts=1).count() == 60
    assert Invoice.objects.filter(id__startswith="in_b_").count() == 40
    assert Subscription.objects.filter(id__startswith="sub_b_").count() == 20
    assert Invoice.objects.get(id="in_b_0").customer_id == customers[0]["id"]
    assert Event.objects.filter(id__startswith="evt_b_").count() == 60
    assert MirrorWatermark.objects.get(stripe_object_id="in_b_3").stripe_event_id == "evt_b_3"


@pytest.mark.django_db
def test_ties_cost_one_read_per_object_and_what_the_batch_cannot_apply_goes_one_by_one(stripe_emulator, team):
    """Same-second events of one object: one re-retrieve for all of them, in the batch. A type dj-stripe handles and
    a customer not mirrored yet: alone, after it. Several events of one object: the newest state wins."""
    from djstripe.models import Invoice

    customer = _customer("mixed@example.com")
    unmirrored = client().v1.customers.create(params={"email": "not-mirrored@example.com"}).to_dict()
    on_stripe = client().v1.invoices.create(params={"customer": customer["id"]}).to_dict(for_json=True)
    t = int(time.time())
    invoice = {"object": "invoice", "customer": customer["id"], "currency": "usd"}
    rows = {
        "plain": _store(_event("evt_m_plain", "invoice.paid", {**invoice, "id": "in_m_plain", "status": "paid"}, t)),
        # Three events of one invoice in the same second: which is newest is unknown, so Stripe's state is read.
        "tie_1": _store(_event("evt_m_t1", "invoice.created", {**on_stripe, "status": "void"}, t)),
        "tie_2": _store(_event("evt_m_t2", "invoice.updated", {**on_stripe, "status": "paid"}, t)),
        "tie_3": _store(_event("evt_m_t3", "invoice.paid", {**on_stripe, "status": "uncollectible"}, t)),
        "djstripe": _store(_event("evt_m_tax", "customer.tax_id.created",
                                  {"id": "txi_m", "object": "tax_id", "customer": customer["id"]}, t)),
        "unmirrored": _store(_event("evt_m_new", "invoice.created", {
            **invoice, "id": "in_m_new", "customer": unmirrored["id"], "status": "draft"}, t)),
        # Newer events of one object in one batch: applied together, the newest state wins.
        "seq_1": _store(_event("evt_m_s1", "invoice.created", {**invoice, "id": "in_m_seq", "status": "draft"}, t)),
        "seq_2": _store(_event("evt_m_s2", "invoice.paid", {**invoice, "id": "in_m_seq", "status": "paid"}, t + 1)),
        "seq_0": _store(_event("evt_m_s0", "invoice.updated", {**invoice, "id": "in_m_seq", "status": "open"},
                               t - 1)),  # arrives last, is oldest: written nowhere
    }
    reads_before = len(emulator_requests(stripe_emulator, "GET", f"/v1/invoices/{on_stripe['id']}"))

    applied, alone = webhook_events_apply_batch(webhook_event_ids=list(rows.values()))

    assert applied == 7  # plain, the three ties, seq_1, seq_2 and seq_0 (skipped, still processed)
    assert alone == sorted([rows["djstripe"], rows["unmirrored"]])
    assert len(emulator_requests(stripe_emulator, "GET", f"/v1/invoices/{on_stripe['id']}")) == reads_before + 1
    assert Invoice.objects.get(id=on_stripe["id"]).stripe_data["status"] == on_stripe["status"]  # Stripe's, no guess
    assert MirrorWatermark.objects.get(stripe_object_id=on_stripe["id"]).stripe_event_id == ""  # a read mark
    assert Invoice.objects.get(id="in_m_seq").stripe_data["status"] == "paid"
    assert MirrorWatermark.objects.get(stripe_object_id="in_m_seq").stripe_event_id == "evt_m_s2"
    assert not Invoice.objects.filter(id="in_m_new").exists()  # left for one by one
    assert set(WebhookEvent.objects.filter(pk__in=alone).values_list("status", flat=True)) == {"pending"}
    assert WebhookEvent.objects.filter(status=PROCESSED, attempts=1).count() == 7


@pytest.mark.django_db
@pytest.mark.parametrize("arrival", ["in_order", "reversed"])
def test_a_renewals_same_second_invoice_events_need_no_stripe_read(stripe_emulator, team, arrival):
    """invoice.finalized (open), invoice.paid and invoice.payment_succeeded (the same paid state) in one second: the
    states order themselves, in a batch and across batches, whatever order they arrive in."""
    from djstripe.models import Invoice

    customer = _customer("renewal@example.com")
    t = int(time.time())
    invoice = {"id": "in_renewal", "object": "invoice", "customer": customer["id"], "currency": "usd",
               "amount_due": 9900}
    events = [_event("evt_fin", "invoice.finalized", {**invoice, "status": "open"}, t),
              _event("evt_paid", "invoice.paid", {**invoice, "status": "paid", "amount_paid": 9900}, t),
              _event("evt_ps", "invoice.payment_succeeded", {**invoice, "status": "paid", "amount_paid": 9900}, t)]
    if arrival == "reversed":
        events.reverse()
    calls = _stripe_calls(stripe_emulator)
    first = _store(events[0])
    assert webhook_events_apply_batch(webhook_event_ids=[first]) == (1, [])  # an earlier batch
    rest = [_store(event) for event in events[1:]]
    assert webhook_events_apply_batch(webhook_event_ids=rest) == (2, [])

    assert _stripe_calls(stripe_emulator) == calls
    assert Invoice.objects.get(id="in_renewal").stripe_data["status"] == "paid"
    assert WebhookEvent.objects.filter(status=PROCESSED, attempts=1).count() == 3


@pytest.mark.django_db
def test_a_failing_handler_rolls_the_batch_back_and_only_its_own_event_fails(stripe_emulator, team, monkeypatch,
                                                                            settings):
    from djstripe.models import Invoice

    from billing.webhooks import handlers, registry

    settings.BILLING_WEBHOOK_DRAIN_SHARDS = 1
    customer = _customer("fails@example.com")
    t = int(time.time())
    rows = [_store(_event(f"evt_f_{i}", "invoice.paid", {"id": f"in_f_{i}", "object": "invoice",
                                                          "customer": customer["id"], "status": "paid",
                                                          "amount_paid": 0, "currency": "usd"}, t))
            for i in range(5)]
    real = handlers.invoice_paid

    def invoice_paid(*, event):
        if event["id"] == "evt_f_3":
            raise RuntimeError("handler bug")
        real(event=event)

    monkeypatch.setitem(registry.HANDLERS, "invoice.paid", [invoice_paid])

    assert webhook_events_apply_batch(webhook_event_ids=rows) == (0, rows)  # rolled back: nothing written
    assert not Invoice.objects.filter(id__startswith="in_f_").exists()
    assert webhook_events_drain(shard=0) == 5  # the drain then gives each its own attempt
    statuses = dict(WebhookEvent.objects.filter(pk__in=rows).values_list("stripe_event_id", "status"))
    assert statuses == {"evt_f_0": "processed", "evt_f_1": "processed", "evt_f_2": "processed",
                        "evt_f_3": "failed", "evt_f_4": "processed"}
    assert "handler bug" in WebhookEvent.objects.get(stripe_event_id="evt_f_3").last_error
    assert Invoice.objects.filter(id__startswith="in_f_").count() == 4


@pytest.mark.django_db
def test_a_handler_that_reads_stripe_gets_its_read_between_rounds_and_the_batch_still_applies(
        stripe_emulator, monkeypatch):
    """The read is made with no transaction open (the suite raises otherwise), once per distinct request."""
    from billing.webhooks import registry

    customers = [_customer(f"reader{i}@example.com") for i in range(2)]
    t = int(time.time())
    rows = [_store(_event(f"evt_rd_{i}", "invoice.paid", {
        "id": f"in_rd_{i}", "object": "invoice", "customer": customers[i % 2]["id"], "status": "paid",
        "currency": "usd"}, t)) for i in range(6)]
    seen = []

    def reads_the_customer(*, event):
        customer = client().v1.customers.retrieve(event["data"]["object"]["customer"])
        seen.append((event["id"], customer.email))

    monkeypatch.setitem(registry.HANDLERS, "invoice.paid", [reads_the_customer])
    before = len([r for r in list(stripe_emulator.emulator.request_log) if r["method"] == "GET"])

    assert webhook_events_apply_batch(webhook_event_ids=rows) == (6, [])
    gets = [r for r in list(stripe_emulator.emulator.request_log) if r["method"] == "GET"][before:]
    assert sorted(r["path"] for r in gets) == sorted(f"/v1/customers/{c['id']}" for c in customers)
    # Earlier rounds stopped at their first missing read and were rolled back; the last one saw every customer.
    assert set(seen) == {(f"evt_rd_{i}", f"reader{i % 2}@example.com") for i in range(6)}
    assert WebhookEvent.objects.filter(pk__in=rows, status=PROCESSED, attempts=1).count() == 6


@pytest.mark.django_db
def test_handlers_run_once_per_event_with_the_teams_read_once(stripe_emulator, team):
    """A paid invoice of a team's customer queues its receipt once, as one by one does; a replay of the batch none."""
    customer = make_customer(team)
    t = int(time.time())
    rows = [_store(_event(f"evt_h_{i}", "invoice.paid", {
        "id": f"in_h_{i}", "object": "invoice", "customer": customer.id, "status": "paid", "amount_paid": 9900,
        "currency": "usd"}, t)) for i in range(3)]

    assert webhook_events_apply_batch(webhook_event_ids=rows) == (3, [])
    assert webhook_events_apply_batch(webhook_event_ids=rows) == (0, [])  # processed rows are not applied again
    receipts = OutboundEmail.objects.filter(team=team, template="receipt")
    assert receipts.count() == 3
    assert WebhookEvent.objects.filter(pk__in=rows, attempts=1, status=PROCESSED).count() == 3


@pytest.mark.postgres
@pytest.mark.django_db(transaction=True)
def test_two_drains_batching_events_of_the_same_objects_neither_deadlock_nor_duplicate(stripe_emulator):
    """Real threads on PostgreSQL: two batches over the same 30 objects lock their marks in one order."""
    from djstripe.models import Event, Invoice

    if connection.vendor != "postgresql":
        pytest.skip("needs PostgreSQL row locks")
    customers = [_customer(f"race-batch{i}@example.com") for i in range(3)]
    t = int(time.time())
    chunks: list[list[int]] = [[], []]
    for n in range(30):
        for second in range(2):  # each invoice has an older and a newer event, in different batches
            obj = {"id": f"in_r_{n}", "object": "invoice", "customer": customers[n % 3]["id"], "currency": "usd",
                   "status": "paid" if second else "open"}
            # The first batch takes the objects in one order, the second in the opposite one.
            chunks[second].append(_store(_event(f"evt_r_{n}_{second}", "invoice.updated", obj, t + second)))
    chunks[1].reverse()
    start = threading.Barrier(2)
    results, errors = [], []

    def drain(ids: list[int]) -> None:
        try:
            start.wait()
            results.append(webhook_events_apply_batch(webhook_event_ids=ids))
        except Exception as error:  # noqa: BLE001 - reported by the assertion below
            errors.append(repr(error))
        finally:
            connection.close()

    threads = [threading.Thread(target=drain, args=(ids,)) for ids in chunks]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join(60)
    assert not errors and not any(thread.is_alive() for thread in threads)
    assert sorted(applied for applied, _alone in results) == [30, 30]
    assert WebhookEvent.objects.filter(status=PROCESSED, attempts=1).count() == 60
    assert Invoice.objects.filter(id__startswith="in_r_").count() == 30
    # Whatever order the batches ran in, every invoice holds its newer state.
    assert set(Invoice.objects.filter(id__startswith="in_r_").values_list("stripe_data__status", flat=True)) == {
        "paid"}
    assert Event.objects.filter(id__startswith="evt_r_").count() == 60


@pytest.mark.django_db
@pytest.mark.parametrize("order", ["in_order", "reversed"])
def test_a_real_subscription_lifecycle_drained_in_batches_ends_in_stripes_state(
        billing_world, team, stripe_emulator, settings, monkeypatch, order):
    """The emulator's own events (checkout, subscription, invoices, payments, then a cancellation), stored in either
    order and drained: some in batches, the rest one by one; the mirror ends where Stripe is."""
    from billing.selectors import team_plan, team_subscription
    from billing.services import webhooks
    from billing.services.subscriptions import subscription_cancel_at_period_end

    from .conftest import stripe_events
    from .test_webhooks import _subscribe

    settings.BILLING_WEBHOOK_DRAIN_SHARDS = 1
    outcomes = []
    batch = webhooks.webhook_events_apply_batch
    monkeypatch.setattr(webhooks, "webhook_events_apply_batch",
                        lambda **kwargs: outcomes.append(batch(**kwargs)) or outcomes[-1])

    def drain(events: list[dict]) -> None:
        for event in (events if order == "in_order" else list(reversed(events))):
            _store(event)
        webhooks.webhook_events_drain(shard=0)

    _subscribe(team, stripe_emulator)
    first = stripe_events()
    drain(first)
    assert team_plan(team=team).key == "pro"
    subscription_cancel_at_period_end(team=team)
    drain([e for e in stripe_events() if e["id"] not in {x["id"] for x in first}])

    assert sum(together for together, _alone in outcomes) > 0  # the batch path was taken
    assert not WebhookEvent.objects.exclude(status=PROCESSED).exists()
    subscription = team_subscription(team=team)
    on_stripe = client().v1.subscriptions.retrieve(subscription.id).to_dict(for_json=True)
    assert (subscription.stripe_data["status"], subscription.stripe_data["cancel_at_period_end"]) == (
        on_stripe["status"], True)
    from djstripe.models import Invoice

    for invoice in Invoice.objects.filter(customer_id=on_stripe["customer"]):
        assert invoice.stripe_data["status"] == client().v1.invoices.retrieve(invoice.id).status
    assert team_plan(team=team).key == "pro"  # still paid until the period ends
