"""
Issue 11 at the unit level (any database): cache failures degrade to the database, a stored webhook is acknowledged
even when its enqueue fails and is swept later, refunds show their retry state, the first checkout holds no
transaction across a Stripe call, and the in-process scheduler applies what is stored. The real-stack fault suite
(throwaway Redis, SIGKILL of a worker, a failing emulator, PostgreSQL) is in test_faults.py.
"""
from datetime import timedelta

import pytest
import requests
from django.db import connection
from django.urls import reverse
from django.utils import timezone
from rest_framework.test import APIClient

from accounts import services as account_services
from accounts.tests.factories import make_team_with_owner
from billing.backoffice import refunds as refund_services
from billing.backoffice.audit import StaffContext
from billing.models import RefundRequest, WebhookEvent

from billing.tests.backoffice_fixtures import *  # noqa: F401,F403
from billing.tests.backoffice_fixtures import emulator_refunds, refund_posts
from billing.tests.conftest import billing_world, deliver  # noqa: F401

DEAD_REDIS = "redis://127.0.0.1:1/0"  # nothing listens on port 1: every connection is refused at once


@pytest.fixture
def redis_down(settings):
    """The default cache and metering's Redis point at a Redis that is not there (as during an outage)."""
    from usage.services.policy import policy_cache_clear

    settings.CACHES = {"default": {"BACKEND": "billing_site.cache.DegradingRedisCache", "LOCATION": DEAD_REDIS,
                                   "OPTIONS": {"socket_connect_timeout": 1, "socket_timeout": 1}}}
    settings.USAGE_REDIS_URL = DEAD_REDIS
    settings.REDIS_URL = DEAD_REDIS
    policy_cache_clear()  # a team whose limits are not cached in this process: the case that answered 500
    yield
    policy_cache_clear()


@pytest.mark.django_db
def test_without_redis_pages_work_and_metered_calls_answer_503_with_retry_after(billing_world, redis_down):
    team, owner = make_team_with_owner()
    key = account_services.api_key_create(team=team, name="prod", created_by=owner, scope="full").raw_key
    program = APIClient()
    program.credentials(HTTP_AUTHORIZATION=f"Bearer {key}")
    for _ in range(3):
        answer = program.get(reverse("api:demo-metered-ping"))
        assert answer.status_code == 503, answer.content
        assert answer["Retry-After"] == "5"
        assert answer.json()["error"]["code"] == "metering_unavailable"

    from django.test import Client

    browser = Client()
    browser.force_login(owner)
    for path in ("/billing/", "/pricing/", "/usage/"):
        assert browser.get(path).status_code == 200, path


def test_the_cache_keeps_one_redis_client_per_pool_and_still_works():
    import os

    from billing_site.cache import DegradingRedisCache

    if not os.environ.get("REDIS_URL"):
        pytest.skip("needs Redis (set REDIS_URL)")
    cache = DegradingRedisCache(os.environ["REDIS_URL"], {"KEY_PREFIX": "reuse-test"})
    cache.delete("doorbell")
    assert cache.add("doorbell", 1, timeout=5) is True and cache.add("doorbell", 2, timeout=5) is False
    assert cache.get("doorbell") == 1 and cache.delete("doorbell") is True
    clients = {id(cache._cache.get_client(write=True)) for _ in range(5)}
    assert len(clients) == 1  # built once, not per call


@pytest.mark.django_db
def test_the_degrading_cache_answers_misses_and_keeps_writes_harmless(redis_down):
    from django.core.cache import cache

    assert cache.get("k") is None and cache.get("k", "fallback") == "fallback"
    cache.set("k", 1)
    assert cache.get_many(["a", "b"]) == {} and cache.delete("k") is False and cache.add("k", 1) is True


@pytest.mark.django_db
def test_webhook_is_acknowledged_when_the_enqueue_fails_then_redelivery_and_sweep_apply_it(
        billing_world, client, settings, monkeypatch):
    from billing.services.webhooks import webhook_events_enqueue_due
    from billing.tasks import webhook_event_process_task
    from billing_site import celery as celery_module

    sent = []

    def broker_down(*args, **kwargs):
        sent.append(args)
        raise ConnectionRefusedError("[Errno 111] Connection refused")

    monkeypatch.setattr(webhook_event_process_task, "apply_async", broker_down)
    event = {"id": "evt_broker_down", "object": "event", "type": "radar.early_fraud_warning.created",
             "created": int(timezone.now().timestamp()), "livemode": False, "api_version": "2025-03-31",
             "data": {"object": {"id": "issfr_1", "object": "radar.early_fraud_warning"}}}
    response = deliver(client, billing_world, event)
    assert response.status_code == 200 and response.json() == {"received": True, "duplicate": False}
    stored = WebhookEvent.objects.get(stripe_event_id="evt_broker_down")
    assert stored.status == WebhookEvent.Status.PENDING and stored.attempts == 0
    assert len(sent) == 1

    # Stripe delivers it again while it is pending: the enqueue is tried again (not only "duplicate").
    monkeypatch.setattr(celery_module, "_broker_down_until", 0.0)
    again = deliver(client, billing_world, event)
    assert again.status_code == 200 and again.json()["duplicate"] is True
    assert len(sent) == 2

    # The broker is back: the sweep sends pending rows older than the grace, and they are applied once.
    monkeypatch.undo()
    monkeypatch.setattr(celery_module, "_broker_down_until", 0.0)
    settings.BILLING_WEBHOOK_PENDING_GRACE_SECONDS = 0
    assert webhook_events_enqueue_due() == 1
    stored.refresh_from_db()
    assert stored.status == WebhookEvent.Status.PROCESSED and stored.attempts == 1
    assert webhook_events_enqueue_due() == 0


@pytest.mark.django_db
def test_a_superseded_copy_of_the_apply_task_does_nothing(billing_world, client):
    from billing.tasks import webhook_event_process_task

    event = {"id": "evt_copy", "object": "event", "type": "radar.early_fraud_warning.created",
             "created": int(timezone.now().timestamp()), "livemode": False, "api_version": "2025-03-31",
             "data": {"object": {"id": "issfr_2", "object": "radar.early_fraud_warning"}}}
    deliver(client, billing_world, event)
    stored = WebhookEvent.objects.get(stripe_event_id="evt_copy")
    assert stored.attempts == 1
    # A copy sent by the sweep when the event had 0 attempts arrives after it was applied.
    assert webhook_event_process_task.apply(args=(stored.pk,), kwargs={"after_attempts": 0}).get() == "superseded"
    stored.refresh_from_db()
    assert stored.attempts == 1 and stored.status == WebhookEvent.Status.PROCESSED


@pytest.mark.django_db(transaction=True)
def test_refund_retrying_against_a_failing_stripe_shows_its_state_then_the_sweep_finishes_it(
        paying_team, finance_user, bo_stripe, client, settings):
    from billing.backoffice.tasks import refund_requests_resume_stuck_task

    team, _owner, charge = paying_team
    bo_stripe.control("POST", "/_emulator/faults", {"path_prefix": "/v1/refunds", "method": "POST",
                                                    "status": "503", "count": "-1"})
    staff = StaffContext(user=finance_user, request_id="req-test", ip_address="127.0.0.1")
    rr = refund_services.refund_request_create(staff=staff, charge_id=charge.id, amount_minor=2500, currency="usd",
                                               reason="requested_by_customer")
    rr.refresh_from_db()
    assert rr.status == RefundRequest.Status.PROCESSING and rr.is_retrying
    assert rr.stripe_tries == 1 and rr.last_error_code == "stripe_unavailable" and rr.last_error
    assert timezone.now() + timedelta(seconds=10) < rr.next_attempt_at <= timezone.now() + timedelta(seconds=21)
    assert emulator_refunds(bo_stripe, charge.id) == []

    client.force_login(finance_user)
    page = client.get(reverse("admin:billing_refundrequest_change", args=[rr.pk])).content.decode()
    assert 'id="rr-retry-state"' in page and "Retrying" in page and "stripe_unavailable" in page
    assert rr.next_attempt_at.strftime("%Y-%m-%d %H:%M:%S") in page
    page_360 = client.get(reverse("admin:billing_customeraccount_change", args=[team.pk])).content.decode()
    assert f'data-refund-retrying="{rr.pk}"' in page_360 and "try 1" in page_360

    # Not due yet: the sweep leaves it alone (no second call inside the backoff).
    posts_before = refund_posts(bo_stripe)
    assert refund_requests_resume_stuck_task() == 0
    assert refund_posts(bo_stripe) == posts_before

    # Stripe is back and the retry is due: one sweep finishes it, one refund at Stripe.
    bo_stripe.control("DELETE", "/_emulator/faults")
    RefundRequest.objects.filter(pk=rr.pk).update(next_attempt_at=timezone.now() - timedelta(seconds=1))
    assert refund_requests_resume_stuck_task() == 1
    rr.refresh_from_db()
    assert rr.status == RefundRequest.Status.SUCCEEDED and not rr.is_retrying and rr.next_attempt_at is None
    assert [r["amount"] for r in emulator_refunds(bo_stripe, charge.id)] == [2500]
    page = client.get(reverse("admin:billing_refundrequest_change", args=[rr.pk])).content.decode()
    assert 'id="rr-retry-state"' not in page


@pytest.mark.django_db(transaction=True)
def test_a_lost_execution_is_resumed_by_the_sweep_once_its_lease_ends(paying_team, finance_user, bo_stripe):
    """A worker died right after STARTED (lease taken, nothing at Stripe): the sweep resumes it, refunds once."""
    from billing.backoffice.tasks import refund_requests_resume_stuck_task

    from billing.tests.factories import RefundRequestFactory

    team, _owner, charge = paying_team
    rr = RefundRequestFactory(team=team, stripe_charge_id=charge.id, amount_minor=700, requested_by=finance_user,
                              status=RefundRequest.Status.PROCESSING, attempts=1,
                              execution_started_at=timezone.now(),
                              next_attempt_at=timezone.now() + timedelta(seconds=30))
    assert refund_requests_resume_stuck_task() == 0  # the lease still runs: maybe a live attempt
    RefundRequest.objects.filter(pk=rr.pk).update(next_attempt_at=timezone.now() - timedelta(seconds=1))
    assert refund_requests_resume_stuck_task() == 1
    assert refund_requests_resume_stuck_task() == 0
    rr.refresh_from_db()
    assert rr.status == RefundRequest.Status.SUCCEEDED
    assert [r["amount"] for r in emulator_refunds(bo_stripe, charge.id)] == [700]


@pytest.mark.django_db(transaction=True)
def test_first_checkout_calls_stripe_outside_any_transaction(stripe_emulator, billing_world, monkeypatch):
    from billing.services.checkout import checkout_session_start

    calls = []
    original = requests.Session.request

    def recording(self, method, url, *args, **kwargs):
        if url.startswith(stripe_emulator.url + "/v1/"):
            calls.append((method, url.split("/v1/")[1].split("?")[0], connection.in_atomic_block))
        return original(self, method, url, *args, **kwargs)

    monkeypatch.setattr(requests.Session, "request", recording)
    team, owner = make_team_with_owner()
    start = checkout_session_start(team=team, user=owner, lookup_key="pro_monthly", currency="usd",
                                   request_token="t-1")
    assert start.id.startswith("cs_")
    writes = [(m.upper(), p) for m, p, _ in calls if m.upper() == "POST"]
    assert ("POST", "customers") in writes and ("POST", "checkout/sessions") in writes
    assert [c for c in calls if c[2]] == [], "a Stripe call was made inside a database transaction"


@pytest.mark.django_db(transaction=True)
def test_the_in_process_scheduler_applies_pending_events_and_sends_due_work(billing_world, settings, monkeypatch):
    """`make run` has no beat: `run_scheduler` runs the same periodic jobs in-process (here once)."""
    from django.core.management import call_command

    from billing.services import webhooks

    settings.BILLING_WEBHOOK_PENDING_GRACE_SECONDS = 0
    settings.BILLING_EVENTS_SWEEP_DAYS = 0
    payload = {"id": "evt_stranded", "object": "event", "type": "radar.early_fraud_warning.created",
               "created": int(timezone.now().timestamp()), "livemode": False,
               "data": {"object": {"id": "issfr_3", "object": "radar.early_fraud_warning"}}}
    # Stored, but its message was lost (the enqueue never happened).
    with monkeypatch.context() as patch:
        patch.setattr(webhooks, "_enqueue", lambda webhook_event_id: None)
        webhooks.webhook_event_record(payload=payload)
    assert WebhookEvent.objects.get(stripe_event_id="evt_stranded").status == WebhookEvent.Status.PENDING
    call_command("run_scheduler", "--once")
    stored = WebhookEvent.objects.get(stripe_event_id="evt_stranded")
    assert stored.status == WebhookEvent.Status.PROCESSED and stored.attempts == 1


def test_sqlite_uses_wal_and_immediate_transactions(tmp_path):
    """The embedded default's settings, read in a plain process (the test run swaps in its own database)."""
    import json
    import subprocess
    import sys
    from pathlib import Path

    code = ("import json, django; django.setup(); from django.conf import settings; "
            "print(json.dumps(settings.DATABASES['default']['OPTIONS']))")
    env = {"DJANGO_SETTINGS_MODULE": "billing_site.settings", "PATH": "/usr/bin:/bin",
           "DATABASE_URL": f"sqlite:///{tmp_path / 'db.sqlite3'}"}
    result = subprocess.run([sys.executable, "-c", code], cwd=Path(__file__).resolve().parents[2], env=env,
                            capture_output=True, text=True, timeout=60)
    options = json.loads(result.stdout.strip().splitlines()[-1])
    assert options["transaction_mode"] == "IMMEDIATE"
    assert "journal_mode=WAL" in options["init_command"] and options["timeout"] == 20
