"""
A plan change with a card that asks for 3-D Secure on every charge, in a real browser (Debian's chromium) against the
emulator, whose webhooks reach the live server. The change is a Stripe pending update: a failed authentication leaves
the subscription active on its old plan and /billing/ says the change waits for payment; a passed one applies it.
Also /billing/ and /usage/ at 1280 and 390 px (usage chart legible on a phone, no sideways scroll). Screenshots go to
`screenshots_dir` (SCREENSHOTS_DIR=docs/screenshots refreshes docs/screenshots/plan-change-*.png, usage-*.png and
billing-*.png).
"""
import shutil
import time

import pytest

from accounts.tests.factories import DEFAULT_PASSWORD, make_team_with_owner
from billing_site.tests.test_pages_browser import AUDIT, browser  # noqa: F401  (the module's chromium fixture)

from .conftest import wait_for

pytestmark = [
    pytest.mark.browser,
    pytest.mark.slow,
    pytest.mark.django_db(transaction=True),
    pytest.mark.skipif(shutil.which("chromium") is None, reason="Debian's chromium is not installed"),
]


def _shots(page, screenshots_dir, name: str, problems: list[str]) -> None:
    for width, height in ((1280, 900), (390, 844)):
        page.set_viewport_size({"width": width, "height": height})
        problems.extend(f"{name}@{width}: {p}" for p in page.evaluate(AUDIT))
        page.screenshot(path=str(screenshots_dir / f"{name}-{width}.png"), full_page=True)
    page.set_viewport_size({"width": 1280, "height": 900})


def test_plan_change_with_3d_secure_failed_then_passed(browser, live_server, stripe_emulator, settings,  # noqa: F811
                                                       screenshots_dir):
    from billing.selectors import team_plan, team_subscription
    from billing.services.payment_methods import payment_method_set_default
    from billing.services.setup import catalog_push
    from billing.stripe_gateway._core import client
    from billing.webhooks import views

    settings.SITE_URL = live_server.url
    settings.TRIAL_PERIOD_DAYS = 0  # paying from the first day, so the upgrade charges now
    views._ENDPOINT_CACHE.clear()
    catalog_push(out=lambda line: None)
    team, owner = make_team_with_owner(name="Bakery Ltd")
    problems: list[str] = []

    context = browser.new_context(viewport={"width": 1280, "height": 900}, locale="en-US")
    page = context.new_page()
    page.goto(live_server.url + "/accounts/login/")
    page.fill("#id_username" if page.locator("#id_username").count() else "#id_email", owner.email)
    page.fill("#id_password", DEFAULT_PASSWORD)
    page.click("main form button[type=submit]")
    page.wait_for_load_state()

    # Subscribe to Pro through Checkout with a plain card.
    page.goto(live_server.url + "/pricing/")
    page.click("button[data-lookup-key=pro_monthly]")
    page.wait_for_selector("#checkout-form")
    page.fill("#card_number", "4242 4242 4242 4242")
    page.click("#submit")
    page.wait_for_url(f"{live_server.url}/billing/checkout/success/**")
    wait_for(lambda: team_plan(team=team).key == "pro", "the Pro plan")

    # The card that pays from now on asks for 3-D Secure on every charge.
    sdk = client()
    customer_id = team_subscription(team=team).customer_id
    card = sdk.v1.payment_methods.create(params={"type": "card", "card": {"token": "tok_threeDSecure2Required"}})
    sdk.v1.payment_methods.attach(card.id, params={"customer": customer_id})
    payment_method_set_default(team=team, payment_method_id=card.id)

    # 1. Upgrade to Team; the bank's page; authentication fails.
    page.goto(live_server.url + "/billing/change/team_monthly/")
    page.click("main form button[type=submit]")
    page.wait_for_selector("#fail")
    page.click("#fail")
    page.wait_for_url(f"{live_server.url}/billing/#cards")
    text = page.inner_text("main")
    assert "your plan was not changed: The card's bank did not confirm the payment." in text
    assert "Change to Team is waiting for your payment" in text
    _shots(page, screenshots_dir, "plan-change-3ds-failed-message", problems)
    subscription = team_subscription(team=team)
    assert subscription.stripe_data["status"] == "active" and team_plan(team=team).key == "pro"
    time.sleep(1)  # let the webhooks of the attempt land: the plan must still be Pro afterwards
    assert team_subscription(team=team).stripe_data["status"] == "active" and team_plan(team=team).key == "pro"
    page.goto(live_server.url + "/billing/")
    plan_text = page.inner_text("#current-plan")
    assert "is on the Pro plan" in plan_text and "Active" in plan_text
    assert "Change to Team is waiting for your payment" in plan_text
    _shots(page, screenshots_dir, "plan-change-3ds-failed", problems)

    # 2. Again, and this time the customer authenticates: the change applies.
    page.goto(live_server.url + "/billing/change/team_monthly/")
    page.click("main form button[type=submit]")
    page.wait_for_selector("#approve")
    page.click("#approve")
    page.wait_for_url(f"{live_server.url}/billing/")
    text = page.inner_text("main")
    assert "Your plan was changed." in text and "waiting for your payment" not in text
    assert "is on the Team plan" in page.inner_text("#current-plan")
    wait_for(lambda: team_plan(team=team).key == "team", "the Team plan")
    assert team_subscription(team=team).stripe_data["pending_update"] is None
    page.goto(live_server.url + "/billing/")
    _shots(page, screenshots_dir, "plan-change-3ds-passed", problems)
    _shots(page, screenshots_dir, "billing", problems)

    # 3. /usage/ on a phone: the narrow chart, with labels of a legible size. Some usage on the last days first,
    # reported through the API as a customer's server would (events may be up to three days late).
    from datetime import timedelta

    from django.utils import timezone

    csrf = next(c["value"] for c in context.cookies() if c["name"] == "csrftoken")
    for index in range(3):
        occurred = timezone.now() - timedelta(days=index, minutes=1)
        if occurred.month != timezone.now().month:
            continue
        answer = page.request.post(
            live_server.url + "/api/v1/usage/events/",
            data={"metric": "api_call", "quantity": 1200 + 900 * index, "occurred_at": occurred.isoformat()},
            headers={"Idempotency-Key": f"chart-{index}", "X-CSRFToken": csrf, "Referer": live_server.url + "/"})
        assert answer.status in (200, 201), answer.text()
    page.goto(live_server.url + "/usage/")
    _shots(page, screenshots_dir, "usage", problems)
    page.set_viewport_size({"width": 390, "height": 844})
    assert page.locator("svg.usage-chart-narrow").is_visible() and not page.locator("svg.usage-chart-wide").is_visible()
    sizes = page.eval_on_selector_all(
        "svg.usage-chart-narrow text", "els => els.map(e => e.getBoundingClientRect().height)")
    assert sizes and min(sizes) >= 14, sizes  # rendered line box of the labels in CSS px (was about 7 px)
    assert problems == []
    context.close()
