"""
How an event reaches the mirror (issue 12): from its own payload when it is the newest state seen for the object,
nothing when the mirror is already newer, a re-retrieve only when the order is ambiguous or the payload is partial.
Counts of Stripe calls come from the emulator's request log.
"""
import threading
import time

import pytest

from billing.models import MirrorWatermark, WebhookEvent
from billing.services.webhooks import ApplyMode, webhook_apply_decision, webhook_event_apply

from .conftest import deliver


def _event(event_id: str, type_: str, obj: dict, created: int) -> dict:
    return {"id": event_id, "object": "event", "type": type_, "created": created, "livemode": False,
            "api_version": "2026-08-26.dahlia", "data": {"object": obj}}


def _mark(state_at: int, event_id: str = "evt_mark", deleted: bool = False) -> MirrorWatermark:
    return MirrorWatermark(stripe_object_id="x", object_type="invoice", state_at=state_at, stripe_event_id=event_id,
                           deleted=deleted)


INVOICE = {"id": "in_1", "object": "invoice", "customer": "cus_1", "status": "paid"}


@pytest.mark.parametrize("payload, mark, mode", [
    # Never seen, or strictly newer than the mark: the payload is the newest state.
    (_event("evt_a", "invoice.paid", INVOICE, 1000), None, ApplyMode.PAYLOAD),
    (_event("evt_a", "invoice.paid", INVOICE, 1001), _mark(1000), ApplyMode.PAYLOAD),
    # The very event the mirror holds (a staff replay): its payload again.
    (_event("evt_mark", "invoice.paid", INVOICE, 1000), _mark(1000), ApplyMode.PAYLOAD),
    # Older than the mark: the mirror is newer, nothing is written and Stripe is not asked.
    (_event("evt_a", "invoice.paid", INVOICE, 999), _mark(1000), ApplyMode.SKIP),
    # Another event in the same second: order unknown, Stripe's current state decides.
    (_event("evt_zzz", "invoice.paid", INVOICE, 1000), _mark(1000, "evt_aaa"), ApplyMode.REFETCH),
    # The mirror was read from Stripe at 1000 (retrieve mark, margin 5 s): inside the margin re-retrieve, else order.
    (_event("evt_a", "invoice.paid", INVOICE, 1003), _mark(1000, ""), ApplyMode.REFETCH),
    (_event("evt_a", "invoice.paid", INVOICE, 1006), _mark(1000, ""), ApplyMode.PAYLOAD),
    (_event("evt_a", "invoice.paid", INVOICE, 990), _mark(1000, ""), ApplyMode.SKIP),
    # Deletions: final when newest; an older create after a delete writes nothing.
    (_event("evt_a", "invoice.deleted", INVOICE, 1001), _mark(1000), ApplyMode.DELETE),
    (_event("evt_a", "invoice.created", INVOICE, 999), _mark(1000, deleted=True), ApplyMode.SKIP),
    (_event("evt_zzz", "invoice.created", INVOICE, 1000), _mark(1000, "evt_aaa", deleted=True), ApplyMode.SKIP),
    # A subscription's .deleted is a cancellation: its payload (status canceled) is applied like an update.
    (_event("evt_a", "customer.subscription.deleted", {"id": "sub_1", "object": "subscription", "customer": "cus_1",
                                                       "status": "canceled"}, 1001), _mark(1000), ApplyMode.PAYLOAD),
    # Partial payloads: Checkout Sessions (line_items need expanding: dj-stripe's handler, which expands them),
    # tiered prices without tiers, invoice discounts as ids (re-retrieved).
    (_event("evt_a", "checkout.session.completed", {"id": "cs_1", "object": "checkout.session"}, 1001), None,
     ApplyMode.DJSTRIPE),
    (_event("evt_a", "price.updated", {"id": "price_1", "object": "price", "tiers_mode": "graduated"}, 1001), None,
     ApplyMode.REFETCH),
    (_event("evt_a", "invoice.updated", {**INVOICE, "discounts": ["di_1"]}, 1001), None, ApplyMode.REFETCH),
    # Types not applied from payloads keep dj-stripe's handlers.
    (_event("evt_a", "customer.tax_id.created", {"id": "txi_1", "object": "tax_id"}, 1001), None, ApplyMode.DJSTRIPE),
    (_event("evt_a", "invoice.upcoming", {"object": "invoice", "customer": "cus_1"}, 1001), None, ApplyMode.DJSTRIPE),
])
def test_apply_decision(payload, mark, mode, settings):
    settings.BILLING_WEBHOOK_WATERMARK_MARGIN_SECONDS = 5
    assert webhook_apply_decision(payload=payload, mark=mark).mode == mode


OPEN, PAID = {**INVOICE, "status": "open"}, {**INVOICE, "status": "paid"}


@pytest.mark.parametrize("obj, held, mode", [
    # The mirror holds this very state (invoice.paid then invoice.payment_succeeded): either order, same mirror.
    (PAID, PAID, ApplyMode.SKIP),
    # A later status of the invoice lifecycle than the mirror's is newer, an earlier one older.
    (PAID, OPEN, ApplyMode.PAYLOAD),
    (OPEN, PAID, ApplyMode.SKIP),
    ({**INVOICE, "status": "paid"}, {**INVOICE, "status": "uncollectible"}, ApplyMode.PAYLOAD),
    # Same rank (paid vs void cannot both happen; two open states differ in attempts): Stripe decides.
    ({**INVOICE, "status": "void"}, PAID, ApplyMode.REFETCH),
    ({**OPEN, "attempt_count": 2}, {**OPEN, "attempt_count": 1}, ApplyMode.REFETCH),
    # Not an invoice: only an identical state spares the read.
    ({"id": "sub_1", "object": "subscription", "status": "active"},
     {"id": "sub_1", "object": "subscription", "status": "past_due"}, ApplyMode.REFETCH),
    # The mirror's copy is unknown.
    (PAID, None, ApplyMode.REFETCH),
])
def test_a_same_second_tie_is_broken_by_the_states_themselves_when_they_can_say(obj, held, mode):
    asked = []
    decision = webhook_apply_decision(payload=_event("evt_zzz", "invoice.updated", obj, 1000),
                                      mark=_mark(1000, "evt_aaa"), held=lambda: asked.append(1) or held)
    assert decision.mode == mode
    assert asked == [1]  # read once, only because the event ties
    assert webhook_apply_decision(payload=_event("evt_zzz", "invoice.updated", obj, 1001), mark=_mark(1000),
                                  held=lambda: asked.append(2)).mode == ApplyMode.PAYLOAD
    assert asked == [1]  # not asked when the order is known


def _customer_reads(emulator, customer_id: str) -> int:
    return sum(1 for r in list(emulator.emulator.request_log)
               if r["method"] == "GET" and r["path"].startswith(f"/v1/customers/{customer_id}"))


def _emulator_customer(email: str) -> dict:
    from billing.stripe_gateway._core import client

    return client().v1.customers.create(params={"email": email}).to_dict()


@pytest.mark.django_db
def test_out_of_order_customer_events_converge_with_one_retrieve_only_for_a_same_second_tie(
        billing_world, client, stripe_emulator):
    from djstripe.models import Customer

    customer = _emulator_customer("order@example.com")
    t = int(time.time())
    newest = _event("evt_c_2", "customer.updated", {**customer, "metadata": {"v": "2"}}, t + 2)
    older = _event("evt_c_1", "customer.updated", {**customer, "metadata": {"v": "1"}}, t + 1)
    before = _customer_reads(stripe_emulator, customer["id"])

    assert deliver(client, billing_world, newest).status_code == 200  # newest first
    assert Customer.objects.get(id=customer["id"]).metadata == {"v": "2"}
    assert deliver(client, billing_world, older).status_code == 200  # then the older one: nothing written
    assert Customer.objects.get(id=customer["id"]).metadata == {"v": "2"}
    assert _customer_reads(stripe_emulator, customer["id"]) == before  # no Stripe call for either
    mark = MirrorWatermark.objects.get(stripe_object_id=customer["id"])
    assert (mark.state_at, mark.stripe_event_id, mark.deleted) == (t + 2, "evt_c_2", False)

    # Same second as the mark, another event: which is newer is unknown, so Stripe's current state is read once.
    tie = _event("evt_c_tie", "customer.updated", {**customer, "metadata": {"v": "tie"}}, t + 2)
    assert deliver(client, billing_world, tie).status_code == 200
    assert _customer_reads(stripe_emulator, customer["id"]) == before + 1
    assert Customer.objects.get(id=customer["id"]).metadata == customer["metadata"]  # Stripe's state, not a guess
    assert WebhookEvent.objects.filter(status=WebhookEvent.Status.PROCESSED).count() == 3


@pytest.mark.django_db
def test_deleted_before_created_leaves_the_object_deleted(billing_world, client, stripe_emulator):
    from djstripe.models import Event, Product

    t = int(time.time())
    product = {"id": "prod_gone", "object": "product", "name": "Gone", "active": True, "created": t,
               "livemode": False, "metadata": {}, "type": "service", "images": [], "updated": t}
    assert deliver(client, billing_world, _event("evt_p_del", "product.deleted", product, t + 1)).status_code == 200
    assert deliver(client, billing_world, _event("evt_p_new", "product.created", product, t)).status_code == 200
    assert not Product.objects.filter(id="prod_gone").exists()
    assert MirrorWatermark.objects.get(stripe_object_id="prod_gone").deleted
    assert Event.objects.filter(id__in=["evt_p_del", "evt_p_new"]).count() == 2
    assert not any(r["path"].startswith("/v1/products/prod_gone") for r in list(stripe_emulator.emulator.request_log))


@pytest.mark.postgres
@pytest.mark.django_db(transaction=True)
def test_two_events_for_one_new_object_applied_at_once_neither_deadlock_nor_duplicate(
        billing_world, stripe_emulator):
    """Real threads on PostgreSQL: the watermark row lock serialises them; the newest payload wins."""
    from django.db import connection
    from djstripe.models import Customer, Event

    from billing.models import MirrorWatermark as Mark

    if connection.vendor != "postgresql":
        pytest.skip("needs PostgreSQL row locks")
    for round_number in range(5):
        customer = _emulator_customer(f"race{round_number}@example.com")
        t = int(time.time())
        rows = [WebhookEvent.objects.create(
            stripe_event_id=f"evt_race_{round_number}_{i}", type="customer.updated", stripe_object_id=customer["id"],
            payload=_event(f"evt_race_{round_number}_{i}", "customer.updated",
                           {**customer, "metadata": {"v": str(i)}}, t + i)) for i in range(2)]
        start = threading.Barrier(2)
        results, errors = {}, []

        def apply(row_id: int) -> None:
            try:
                start.wait()
                results[row_id] = webhook_event_apply(webhook_event_id=row_id)
            except Exception as error:  # noqa: BLE001 - reported by the assertion below
                errors.append(repr(error))
            finally:
                connection.close()

        threads = [threading.Thread(target=apply, args=(row.pk,)) for row in rows]
        for thread in threads:
            thread.start()
        for thread in threads:
            thread.join(30)
        assert not errors and not any(thread.is_alive() for thread in threads)
        assert set(results.values()) == {WebhookEvent.Status.PROCESSED}
        assert WebhookEvent.objects.filter(pk__in=[r.pk for r in rows], attempts=1).count() == 2
        assert Customer.objects.filter(id=customer["id"]).count() == 1
        assert Customer.objects.get(id=customer["id"]).metadata == {"v": "1"}  # the newer event, whatever the order
        assert Mark.objects.get(stripe_object_id=customer["id"]).stripe_event_id == f"evt_race_{round_number}_1"
        assert Event.objects.filter(id__startswith=f"evt_race_{round_number}_").count() == 2


@pytest.mark.django_db
def test_a_tie_on_an_object_gone_from_stripe_is_skipped_not_retried(billing_world, client, stripe_emulator):
    """The re-retrieve finds nothing (deleted on Stripe since): skipped like dj-stripe does, never parked."""
    t = int(time.time())
    obj = {"id": "cus_gone_from_stripe", "object": "customer", "email": "gone@example.com", "metadata": {}}
    assert deliver(client, billing_world, _event("evt_g_1", "customer.updated", obj, t)).status_code == 200
    assert deliver(client, billing_world, _event("evt_g_2", "customer.updated", obj, t)).status_code == 200  # tie
    reads = [r for r in list(stripe_emulator.emulator.request_log)
             if r["method"] == "GET" and r["path"].startswith("/v1/customers/cus_gone_from_stripe")]
    assert len(reads) == 1
    assert WebhookEvent.objects.filter(stripe_event_id__in=["evt_g_1", "evt_g_2"],
                                       status=WebhookEvent.Status.PROCESSED).count() == 2
