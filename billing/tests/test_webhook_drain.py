"""Stored events are applied by drain tasks per shard, rung by a doorbell key: a few messages, no event left behind."""
import time

import pytest
from django.core.cache import cache

from billing.models import WebhookEvent
from billing.services import webhooks


def _payload(i: int) -> dict:
    return {"id": f"evt_drain_{i}", "object": "event", "type": "radar.early_fraud_warning.created",
            "created": int(time.time()), "livemode": False,
            "data": {"object": {"id": f"issfr_{i}", "object": "radar.early_fraud_warning"}}}


def _not_in_process(app) -> None:
    # As with a broker (the conftest's autouse fixture puts the eager setting back after the test).
    app.conf.task_always_eager = app.conf.CELERY_TASK_ALWAYS_EAGER = False


@pytest.fixture
def drains(billing_world, settings, monkeypatch):
    """Tasks as with a broker (not in-process); the drain messages that would be sent are recorded, not run."""
    from billing_site import celery

    _not_in_process(celery.app)
    settings.BILLING_WEBHOOK_DRAIN_SHARDS = 2
    cache.clear()
    sent = []

    def task_send(task, args=(), kwargs=None, *, what, **options):
        sent.append((task.name, args, kwargs))
        return True

    monkeypatch.setattr(celery, "task_send", task_send)
    return sent


@pytest.mark.django_db(transaction=True)
def test_a_storm_rings_once_per_shard_and_each_drain_applies_its_shard(drains):
    rows = [webhooks.webhook_event_record(payload=_payload(i)).webhook_event_id for i in range(10)]
    assert sorted(args for name, args, _ in drains) == [(0,), (1,)]  # 10 stored events, 2 messages
    assert {name for name, _, _ in drains} == {"billing.tasks.webhook_events_drain_task"}

    assert webhooks.webhook_events_drain(shard=0) == 5
    statuses = dict(WebhookEvent.objects.values_list("pk", "status"))
    assert {pk for pk in rows if statuses[pk] == "processed"} == {pk for pk in rows if pk % 2 == 0}
    assert webhooks.webhook_events_drain(shard=1) == 5
    assert set(WebhookEvent.objects.values_list("status", flat=True)) == {"processed"}
    assert sum(WebhookEvent.objects.values_list("attempts", flat=True)) == 10  # each applied once


@pytest.mark.django_db(transaction=True)
def test_an_event_stored_after_a_drain_looked_rings_again(drains, settings):
    settings.BILLING_WEBHOOK_DRAIN_SHARDS = 1
    shard = 0
    webhooks.webhook_event_record(payload=_payload(0))
    drains.clear()
    webhooks.webhook_events_drain(shard=shard)  # deletes the doorbell before it looks
    # Same shard, stored after the drain finished: the doorbell is gone, so a new drain is sent.
    webhooks.webhook_event_record(payload=_payload(2))
    assert drains == [("billing.tasks.webhook_events_drain_task", (shard,), None)]
    # While that drain has not run, more events of the shard send nothing more, and it applies them all.
    webhooks.webhook_event_record(payload=_payload(4))
    assert len(drains) == 1
    assert webhooks.webhook_events_drain(shard=shard) == 2


@pytest.mark.django_db(transaction=True)
def test_a_failed_drain_send_leaves_the_doorbell_open_for_the_next_event(billing_world, settings, monkeypatch):
    from billing_site import celery

    _not_in_process(celery.app)
    settings.BILLING_WEBHOOK_DRAIN_SHARDS = 1
    cache.clear()
    results = iter([False, True])  # the broker is down for the first send
    sent = []
    monkeypatch.setattr(celery, "task_send", lambda task, args=(), kwargs=None, *, what, **o: (
        sent.append(args), next(results))[1])
    webhooks.webhook_event_record(payload=_payload(1))
    webhooks.webhook_event_record(payload=_payload(2))
    assert sent == [(0,), (0,)]  # the second event rang again, not silenced by a doorbell nobody answers
    assert webhooks.webhook_events_drain(shard=0) == 2


@pytest.mark.django_db(transaction=True)
def test_a_drain_gives_way_to_a_fresh_task_after_its_time(drains, settings):
    settings.BILLING_WEBHOOK_DRAIN_SHARDS = 1
    settings.BILLING_WEBHOOK_DRAIN_MAX_SECONDS = 0  # out of time after the first event
    for i in range(3):
        webhooks.webhook_event_record(payload=_payload(i))
    drains.clear()
    assert webhooks.webhook_events_drain(shard=0) == 1
    assert drains == [("billing.tasks.webhook_events_drain_task", (0,), None)]
    assert WebhookEvent.objects.filter(status="pending").count() == 2
