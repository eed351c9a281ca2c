"""
The whole subscription path in a real browser (Debian's chromium through Playwright), with webhooks delivered by
the emulator over HTTP to the live server and applied by a real Celery worker consuming from Redis.
"""
import shutil
import time

import pytest
from django.conf import settings as django_settings

from accounts.tests.factories import DEFAULT_PASSWORD, make_team_with_owner

CHROMIUM_ARGS = ["--headless", "--no-sandbox", "--disable-gpu", "--disable-background-networking",
                 "--disable-component-update", "--disable-sync", "--no-first-run"]


@pytest.fixture
def celery_worker_thread(transactional_db):
    """A real worker (threads pool) consuming the project's queue on REDIS_URL, inside this test process."""
    if not django_settings.REDIS_URL:
        pytest.skip("needs Redis (set REDIS_URL) for a real Celery worker")
    from celery.contrib.testing.worker import start_worker

    from billing_site.celery import app

    app.control.purge()  # stale messages from earlier runs must not be mistaken for this test's work
    with start_worker(app, pool="threads", concurrency=2, perform_ping_check=False, loglevel="WARNING",
                      shutdown_timeout=10) as worker:
        yield worker


@pytest.mark.browser
@pytest.mark.celery_worker
@pytest.mark.slow
@pytest.mark.django_db(transaction=True)
def test_subscribe_in_a_browser_and_the_worker_applies_the_webhook(
        live_server, stripe_emulator, settings, celery_worker_thread):
    chromium = shutil.which("chromium")
    if not chromium:
        pytest.skip("chromium not installed")
    from playwright.sync_api import sync_playwright

    from billing.models import WebhookEvent
    from billing.services.setup import catalog_push
    from billing.webhooks import views

    settings.SITE_URL = live_server.url
    views._ENDPOINT_CACHE.clear()
    catalog_push(out=lambda line: None)  # registers the webhook endpoint at the live server
    team, owner = make_team_with_owner()

    with sync_playwright() as playwright:
        browser = playwright.chromium.launch(executable_path=chromium, args=CHROMIUM_ARGS)
        page = browser.new_page()
        page.goto(f"{live_server.url}/accounts/login/")
        page.fill("input[name=username]", owner.email)
        page.fill("input[name=password]", DEFAULT_PASSWORD)
        page.click("main form button[type=submit]")
        page.wait_for_url(f"{live_server.url}/billing/")
        page.goto(f"{live_server.url}/pricing/?currency=usd")
        assert "$99.00" in page.content()
        page.click("button[data-lookup-key=pro_monthly]")
        try:
            page.wait_for_selector("#checkout-form", timeout=15000)
        except Exception:
            raise AssertionError(f"no checkout page at {page.url}: {page.content()[:3000]}")
        assert stripe_emulator.url.split("//")[1] in page.url
        page.fill("#card_number", "4242 4242 4242 4242")
        page.click("#submit")
        page.wait_for_url(f"{live_server.url}/billing/checkout/success/**")
        assert "Thank you" in page.content()
        deadline = time.monotonic() + 90
        while time.monotonic() < deadline:
            page.goto(f"{live_server.url}/billing/")
            if "is on the Pro plan" in page.content():
                break
            time.sleep(0.5)
        content = page.content()
        browser.close()
    assert "is on the Pro plan" in content, content[:2000]
    assert "trialing" in content
    processed = WebhookEvent.objects.filter(status=WebhookEvent.Status.PROCESSED)
    deadline = time.monotonic() + 90  # the rest of the checkout's events are still being delivered and applied
    while time.monotonic() < deadline and not processed.filter(type="checkout.session.completed").exists():
        time.sleep(0.5)
    assert processed.filter(type="checkout.session.completed").count() == 1
    assert processed.filter(type="customer.subscription.created").count() == 1
    assert not WebhookEvent.objects.filter(status__in=["failed", "parked"]).exists()
