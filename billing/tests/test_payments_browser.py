"""
/billing/payments/ in a real browser (Debian's chromium through Playwright) at 1280 and 390 px: accessible, no
sideways scroll on a phone, filters that work; screenshots saved to the `screenshots_dir` fixture's folder
(SCREENSHOTS_DIR=docs/screenshots refreshes the committed ones).
"""
import shutil

import pytest

from accounts.tests.factories import DEFAULT_PASSWORD
from billing_site.tests.test_pages_browser import AUDIT, browser  # noqa: F401  (the module's chromium fixture)

from .backoffice_fixtures import *  # noqa: F401,F403
from .test_payments_receipts import payments_world, receipt_settings  # noqa: F401

pytestmark = [
    pytest.mark.browser,
    pytest.mark.django_db(transaction=True),
    pytest.mark.skipif(shutil.which("chromium") is None, reason="Debian's chromium is not installed"),
]

def test_payments_page_in_the_browser_at_desktop_and_phone_widths(browser, live_server, payments_world,
                                                                  screenshots_dir):  # noqa: F811
    w = payments_world
    for width, height, language in ((1280, 900, "en"), (390, 844, "en"), (390, 844, "pt-BR")):
        context = browser.new_context(viewport={"width": width, "height": height}, locale=language,
                                      extra_http_headers={"Accept-Language": language.lower()})
        page = context.new_page()
        page.goto(live_server.url + "/accounts/login/")
        page.fill("#id_username", w["owner"].email)
        page.fill("#id_password", DEFAULT_PASSWORD)
        page.click("main form button[type=submit]")
        page.wait_for_load_state()
        response = page.goto(live_server.url + "/billing/payments/")
        assert response.status == 200
        assert page.evaluate(AUDIT) == [], (width, language)
        assert page.locator("tr.payment").count() == 3
        suffix = f"{width}" + ("" if language == "en" else "-pt-br")
        page.screenshot(path=str(screenshots_dir / f"payments-{suffix}.png"), full_page=True)
        if width == 1280:
            page.select_option("#id_kind", "credit_pack")
            page.click("text=Filter")
            page.wait_for_load_state()
            assert page.locator("tr.payment").count() == 1
            receipt = page.request.get(live_server.url + f"/billing/payments/{w['pack'].id}/receipt.pdf")
            assert receipt.status == 200 and receipt.headers["content-type"] == "application/pdf"
        context.close()
