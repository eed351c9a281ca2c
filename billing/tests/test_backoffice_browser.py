"""
One walk through the real pages in Debian's chromium (Playwright): a Support user requests a refund above the
approval threshold from the Customer 360 page, a Finance user approves it, the refund reaches Stripe (the emulator).
Screenshots go to the `screenshots_dir` fixture's folder ($SCREENSHOTS_DIR=docs/screenshots made the committed ones), so
a test run never dirties the working tree.
"""
import shutil

import pytest

from billing.models import RefundRequest
from billing_site.tests.test_pages_browser import browser  # noqa: F401  (module-scoped chromium)

from .backoffice_fixtures import *  # noqa: F401,F403
from .backoffice_fixtures import emulator_refunds

pytestmark = [
    pytest.mark.browser,
    pytest.mark.django_db(transaction=True),
    pytest.mark.skipif(shutil.which("chromium") is None, reason="Debian's chromium is not installed"),
]


@pytest.fixture
def browser_page(browser):  # noqa: F811  (the project's one chromium, billing_site/tests/test_pages_browser.py)
    page = browser.new_page(viewport={"width": 1400, "height": 1000})
    yield page
    page.context.close()


def login(page, base_url, email, password="correct-horse-battery-staple"):
    page.context.clear_cookies()
    page.goto(f"{base_url}/admin/login/")
    page.fill("input[name=username]", email)
    page.fill("input[name=password]", password)
    page.click("input[type=submit]")
    page.wait_for_selector("#site-name")


def test_support_requests_and_finance_approves_a_refund(browser_page, live_server, paying_team, support_user,
                                                        finance_user, bo_stripe, settings, screenshots_dir):
    settings.REFUND_APPROVAL_THRESHOLD = 5000  # $50: the $60 refund below needs Finance
    page, base = browser_page, live_server.url
    team, _owner, charge = paying_team
    SHOTS = screenshots_dir

    login(page, base, support_user.email)
    page.goto(f"{base}/admin/billing/customeraccount/?q={charge.id}")
    page.click("text=Open 360")
    page.wait_for_selector("#payments")
    page.screenshot(path=str(SHOTS / "customer-360.png"), full_page=True)
    page.click(f"#payments a.button[href*='{charge.id}']")
    assert page.input_value("input[name=amount]") == "99.00"
    page.fill("input[name=amount]", "60.00")
    page.select_option("select[name=reason]", "requested_by_customer")
    page.fill("textarea[name=note]", "Customer was double charged")
    page.screenshot(path=str(SHOTS / "refund-request-form.png"), full_page=True)
    page.click("#refund-form input[type=submit]")
    page.wait_for_selector("#rr-status")
    assert page.inner_text("#rr-status") == "Requested"
    assert "Approve refund" not in page.content()
    rr = RefundRequest.objects.get()
    assert emulator_refunds(bo_stripe, charge.id) == []

    login(page, base, finance_user.email)
    page.goto(f"{base}/admin/billing/refundrequest/")
    page.click(f"a[href$='/admin/billing/refundrequest/{rr.pk}/change/']")
    page.fill("textarea[name=note]", "Checked the duplicate")
    page.screenshot(path=str(SHOTS / "refund-approval.png"), full_page=True)
    page.click("text=Approve refund")
    page.wait_for_selector("#rr-status")
    assert page.inner_text("#rr-status") == "Succeeded"
    page.screenshot(path=str(SHOTS / "refund-succeeded.png"), full_page=True)
    rr.refresh_from_db()
    assert (rr.requested_by, rr.approved_by, rr.status) == (support_user, finance_user, RefundRequest.Status.SUCCEEDED)
    assert [r["amount"] for r in emulator_refunds(bo_stripe, charge.id)] == [6000]
    page.goto(f"{base}/admin/billing/auditentry/")
    page.screenshot(path=str(SHOTS / "audit-trail.png"), full_page=True)
