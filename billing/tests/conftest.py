import pytest

from accounts.tests.factories import make_team_with_owner


@pytest.fixture
def team(db):
    team, _owner = make_team_with_owner()
    return team


def emulator_requests(emulator, method: str | None = None, path_prefix: str = "/v1/") -> list[dict]:
    query = f"/_emulator/requests?path_prefix={path_prefix}" + (f"&method={method}" if method else "")
    return emulator.control("GET", query)["data"]


# ---- Stripe world helpers: catalog pushed, events fetched from the emulator and delivered signed ----------------
import hashlib  # noqa: E402
import hmac  # noqa: E402
import json  # noqa: E402
import time  # noqa: E402

import requests  # noqa: E402


@pytest.fixture
def billing_world(stripe_emulator, settings, db):
    """The catalog pushed to a clean emulator and the webhook endpoint registered (its secret stored)."""
    from djstripe.models import WebhookEndpoint

    from billing.services.setup import catalog_push
    from billing.webhooks import views

    # Nothing listens here: the emulator's own deliveries fail fast; tests deliver events themselves.
    settings.SITE_URL = "http://127.0.0.1:9"
    views._ENDPOINT_CACHE.clear()
    catalog_push(out=lambda line: None)
    return WebhookEndpoint.objects.get()


def sign(payload: str, secret: str, timestamp: int | None = None) -> str:
    timestamp = int(time.time()) if timestamp is None else timestamp
    mac = hmac.new(secret.encode(), f"{timestamp}.{payload}".encode(), hashlib.sha256).hexdigest()
    return f"t={timestamp},v1={mac}"


def deliver(client, endpoint, event: dict, *, timestamp: int | None = None, secret: str | None = None,
            body: str | None = None):
    from django.test import TestCase

    body = json.dumps(event) if body is None else body
    # The view enqueues processing on commit; inside a test transaction, run those callbacks as a commit would.
    with TestCase.captureOnCommitCallbacks(execute=True):
        return client.post(
            f"/stripe/webhook/{endpoint.djstripe_uuid}/", data=body, content_type="application/json",
            HTTP_STRIPE_SIGNATURE=sign(body, secret or endpoint.secret, timestamp),
        )


def stripe_events(types: set[str] | None = None) -> list[dict]:
    """Every event the emulator created, oldest first (optionally only some types)."""
    from billing.stripe_gateway.events import event_iter

    events = list(event_iter(created_gte=0))
    events.reverse()
    return [e for e in events if types is None or e["type"] in types]


def complete_checkout(emulator, session_id: str, card: str = "4242424242424242") -> requests.Response:
    """Pay on the emulator's hosted Checkout page, as the browser form does (no redirect followed)."""
    return requests.post(f"{emulator.url}/_emulator/checkout_sessions/{session_id}/complete",
                         data={"card_number": card}, allow_redirects=False, timeout=10)


def clock_customer(team):
    """The team's Stripe customer on a new test clock frozen at now: returns (sdk client, clock, now)."""
    from billing.models import BillingProfile
    from billing.services.customers import mirror_customer_link
    from billing.stripe_gateway._core import client as stripe_client

    sdk = stripe_client()
    now = int(time.time())
    clock = sdk.v1.test_helpers.test_clocks.create(params={"frozen_time": now})
    customer = sdk.v1.customers.create(params={"email": team.billing_email, "test_clock": clock.id,
                                               "metadata": {"team_id": str(team.pk)}})
    BillingProfile.objects.update_or_create(team=team, defaults={"stripe_customer_id": customer.id})
    mirror_customer_link(team=team, customer=customer.to_dict(for_json=True))
    return sdk, clock, now


def advance_clock(sdk, clock, to: int) -> None:
    """Advance a test clock and wait until the emulator has run everything due up to `to`."""
    sdk.v1.test_helpers.test_clocks.advance(clock.id, params={"frozen_time": to})
    for _ in range(100):
        if sdk.v1.test_helpers.test_clocks.retrieve(clock.id).status == "ready":
            return
        time.sleep(0.1)


def wait_for(condition, what: str, timeout: float = 30):
    """Poll `condition()` (webhooks landing, a page updating) until it is truthy; returns its value."""
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        value = condition()
        if value:
            return value
        time.sleep(0.3)
    raise AssertionError(f"timed out waiting for {what}")
