"""
Issue 10 in a real browser (Debian's chromium through Playwright): a Finance staff user enrols TOTP at their first
admin login, logs in again with a code and approves a refund; a staff user without a second factor cannot open the
refund pages.
"""
import base64
import shutil

import pytest
from django_otp.oath import TOTP

from billing.backoffice import refunds as refund_services
from billing.backoffice.audit import StaffContext
from billing.models import RefundRequest
from billing.tests.backoffice_fixtures import *  # noqa: F401,F403  (bo_stripe, paying_team, staff users)
from billing.tests.factories import StaffUserFactory
from accounts.tests.factories import DEFAULT_PASSWORD
from billing_site.tests.test_pages_browser import browser  # noqa: F401  (the module-scoped chromium fixture)

pytestmark = [
    pytest.mark.browser,
    pytest.mark.staff_otp,
    pytest.mark.django_db(transaction=True),
    pytest.mark.skipif(shutil.which("chromium") is None, reason="Debian's chromium is not installed"),
]


def code_for(secret: str, steps_ahead: int = 0) -> str:
    # django-otp refuses a code of a time step already used, so a second login uses the next step's code (it accepts
    # one step of clock drift either way).
    return f"{TOTP(base64.b32decode(secret), drift=steps_ahead).token():06d}"


def admin_password_login(page, base_url: str, email: str) -> None:
    page.goto(base_url + "/admin/login/?next=/admin/")
    page.fill("#id_username", email)
    page.fill("#id_password", DEFAULT_PASSWORD)
    page.click("input[type=submit]")
    page.wait_for_load_state()


def test_finance_enrols_totp_logs_in_with_it_and_approves_a_refund(browser, live_server, paying_team):  # noqa: F811
    _team, _owner, charge = paying_team
    support = StaffUserFactory(groups=["Support"], email="support-otp@staff.example.com")
    finance = StaffUserFactory(groups=["Finance"], email="finance-otp@staff.example.com")
    refund = refund_services.refund_request_create(
        staff=StaffContext(user=support, request_id="req-browser", ip_address="127.0.0.1"),
        charge_id=charge.id, amount_minor=9900, currency="usd", reason="duplicate",
    )
    assert refund.status == RefundRequest.Status.REQUESTED
    refund_url = f"{live_server.url}/admin/billing/refundrequest/{refund.pk}/change/"

    context = browser.new_context()
    page = context.new_page()
    csp_violations = []
    page.on("console", lambda message: csp_violations.append(message.text)
            if "Content Security Policy" in message.text else None)

    # First login: the password alone leads to enrolment, never to the admin.
    admin_password_login(page, live_server.url, finance.email)
    assert "/accounts/otp/enrol/" in page.url
    page.goto(refund_url)
    assert "/accounts/otp/enrol/" in page.url
    secret = page.text_content("#otp-secret").strip()
    assert page.locator(".otp-qr svg").count() == 1
    page.fill("#id_otp_token", code_for(secret))
    page.click("main form button[type=submit]")
    page.wait_for_load_state()
    assert "/accounts/otp/recovery-codes/" in page.url
    assert page.locator(".recovery-codes li").count() == 10
    page.click("text=Continue to the back office")
    page.wait_for_load_state()
    assert page.url == refund_url  # back where the enrolment interrupted

    # Log out, log in again: password, then a code, then the refund page.
    page.goto(live_server.url + "/admin/")
    page.click("#logout-form button")
    page.wait_for_load_state()
    admin_password_login(page, live_server.url, finance.email)
    assert "/accounts/otp/verify/" in page.url
    page.fill("#id_otp_token", code_for(secret, steps_ahead=1))
    page.click("main form button[type=submit]")
    page.wait_for_load_state()
    assert page.url.rstrip("/").endswith("/admin")
    page.goto(refund_url)
    assert page.url == refund_url
    page.click("text=Approve refund")
    page.wait_for_load_state()
    assert page.text_content("#rr-status").strip() == "Succeeded"
    refund.refresh_from_db()
    assert refund.status == RefundRequest.Status.SUCCEEDED and refund.approved_by == finance
    assert csp_violations == []
    context.close()


def test_staff_without_a_second_factor_cannot_open_the_refund_pages(browser, live_server):  # noqa: F811
    finance = StaffUserFactory(groups=["Finance"], email="finance-no-otp@staff.example.com")
    context = browser.new_context()
    page = context.new_page()
    admin_password_login(page, live_server.url, finance.email)
    for path in ["/admin/billing/refundrequest/", "/admin/"]:
        page.goto(live_server.url + path)
        assert "/accounts/otp/enrol/" in page.url, path
        assert page.locator("h1").text_content().strip() == "Set up two-factor authentication"
    context.close()
