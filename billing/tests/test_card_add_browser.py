"""
Adding a card in a real browser (Debian's chromium through Playwright) through the emulator's hosted Checkout page in
setup mode, with a 3-D Secure card, then making another card the default and removing the first. Screenshots at
1280 and 390 px (`billing-card-add-*.png` in `screenshots_dir`; SCREENSHOTS_DIR=docs/screenshots refreshes the
committed ones); the project's own pages are audited (landmarks, labels, no sideways scroll).
"""
import shutil

import pytest

from accounts.tests.factories import DEFAULT_PASSWORD, make_team_with_owner
from billing_site.tests.test_pages_browser import AUDIT, browser  # noqa: F401  (the module's chromium fixture)

pytestmark = [
    pytest.mark.browser,
    pytest.mark.django_db(transaction=True),
    pytest.mark.skipif(shutil.which("chromium") is None, reason="Debian's chromium is not installed"),
]


def test_card_added_on_the_hosted_page_made_default_and_removed(browser, live_server, stripe_emulator, settings,
                                                               screenshots_dir):  # noqa: F811
    from billing.selectors import team_saved_cards
    from billing.services.payment_methods import team_default_payment_method_id
    from billing.services.setup import catalog_push
    from billing.webhooks import views

    settings.SITE_URL = live_server.url
    views._ENDPOINT_CACHE.clear()
    catalog_push(out=lambda line: None)  # the emulator delivers webhooks to the live server
    team, owner = make_team_with_owner()
    problems: list[str] = []

    context = browser.new_context(viewport={"width": 1280, "height": 900})
    page = context.new_page()

    def shot(name: str, *, ours: bool = True) -> None:
        for width, height in ((1280, 900), (390, 844)):
            page.set_viewport_size({"width": width, "height": height})
            if ours:
                problems.extend(f"{name}@{width}: {p}" for p in page.evaluate(AUDIT))
            page.screenshot(path=str(screenshots_dir / f"billing-card-add-{name}-{width}.png"), full_page=True)
        page.set_viewport_size({"width": 1280, "height": 900})

    page.goto(live_server.url + "/accounts/login/")
    page.fill("#id_username", owner.email)
    page.fill("#id_password", DEFAULT_PASSWORD)
    page.click("main form button[type=submit]")
    page.wait_for_load_state()
    page.goto(live_server.url + "/billing/")
    assert "No saved cards yet." in page.inner_text("#cards")
    shot("1-billing")

    # Add a card: Stripe's hosted page (the emulator's), with a card that asks for 3-D Secure when saved.
    page.click("#add-card")
    page.wait_for_url(f"{stripe_emulator.url}/_emulator/checkout/cs_*")
    assert "Save card" in page.inner_text("body") and "No charge today" in page.inner_text("body")
    page.fill("#card_number", "4000 0025 0000 3155")
    page.fill("#name", "Ana Souza")
    shot("2-hosted-page", ours=False)
    page.click("#submit")
    page.wait_for_url(f"{stripe_emulator.url}/_emulator/3ds/seti_*")
    shot("3-bank-challenge", ours=False)
    page.click("#approve")
    page.wait_for_url(f"{live_server.url}/billing/#cards")
    assert "Your card was saved." in page.inner_text("main")
    assert "•••• 3155" in page.inner_text("#cards") and "Default" in page.inner_text("#cards")
    shot("4-added")
    first = team_saved_cards(team=team)[0]["id"]
    assert team_default_payment_method_id(team=team) == first

    # A second card (no challenge), made the default; then the first one removed.
    page.click("#add-card")
    page.wait_for_url(f"{stripe_emulator.url}/_emulator/checkout/cs_*")
    page.fill("#card_number", "5555 5555 5555 4444")
    page.click("#submit")
    page.wait_for_url(f"{live_server.url}/billing/#cards")
    assert page.locator("li.saved-card").count() == 2
    page.click("li.saved-card:has-text('4444') >> text=Make default")
    page.wait_for_url(f"{live_server.url}/billing/#cards")
    assert "Your default card was changed." in page.inner_text("main")
    page.click("li.saved-card:has-text('3155') >> text=Remove")
    page.wait_for_url(f"{live_server.url}/billing/#cards")
    assert "The card was removed." in page.inner_text("main")
    assert page.locator("li.saved-card").count() == 1 and "3155" not in page.inner_text("#cards")
    assert "Default" in page.inner_text("li.saved-card:has-text('4444')")
    shot("5-default-and-removed")

    # Leaving the hosted page with its Back link returns to /billing/ with a neutral message.
    page.click("#add-card")
    page.wait_for_url(f"{stripe_emulator.url}/_emulator/checkout/cs_*")
    page.click("#cancel")
    page.wait_for_url(f"{live_server.url}/billing/#cards")
    assert "No card was added." in page.inner_text("main")
    shot("6-cancelled")
    context.close()

    assert [c["last4"] for c in team_saved_cards(team=team)] == ["4444"]
    assert problems == []
