"""
The email outbox's admin in Debian's chromium (Playwright), as Support: the parked email is listed with its attempts
and last error, and re-sent with the one action. Screenshots at 1280 and 390 px go to the `screenshots_dir` fixture's
folder, or to $SCREENSHOTS_DIR (docs/screenshots/ was made with it).
"""
import shutil

import pytest
from django.core import mail
from django.utils import timezone

from accounts.tests.factories import make_team_with_owner
from billing.models import AuditEntry, OutboundEmail
from billing_site.tests.test_pages_browser import browser  # noqa: F401  (module-scoped chromium)

from .backoffice_fixtures import *  # noqa: F401,F403
from .test_backoffice_browser import login

pytestmark = [
    pytest.mark.browser,
    pytest.mark.django_db(transaction=True),
    pytest.mark.skipif(shutil.which("chromium") is None, reason="Debian's chromium is not installed"),
]


def test_support_sees_a_parked_email_and_resends_it(browser, live_server, support_user, settings,  # noqa: F811
                                                    screenshots_dir):
    settings.EMAIL_BACKEND = "django.core.mail.backends.locmem.EmailBackend"
    team, _owner = make_team_with_owner(name="Acme Analytics", billing_email="ap@acme.example")
    OutboundEmail.objects.create(team=team, template="receipt", context={"payment_intent": "pi_sent"},
                                 recipients=["ap@acme.example"], status="sent", attempts=1, sent_at=timezone.now(),
                                 dedupe_key="receipt:pi_sent")
    parked = OutboundEmail.objects.create(
        team=team, template="payment_failed", context={"amount": "$99.00", "hosted_invoice_url": ""},
        recipients=["ap@acme.example"], status="parked", attempts=8,
        last_error="Traceback (most recent call last):\n  ...\n"
                   "smtplib.SMTPServerDisconnected: Connection unexpectedly closed")
    OutboundEmail.objects.create(kind="staff", context={"subject": "Dispute opened: dp_1", "body": "..."},
                                 recipients=["finance@example.com"], status="failed", attempts=2,
                                 next_attempt_at=timezone.now() + timezone.timedelta(minutes=1),
                                 last_error="TimeoutError: timed out")

    for width in (390, 1280):  # the narrow one first: the wide one re-sends the parked email
        page = browser.new_page(viewport={"width": width, "height": 900})
        try:
            login(page, live_server.url, support_user.email)
            page.goto(f"{live_server.url}/admin/billing/outboundemail/")
            page.wait_for_selector("#result_list")
            text = page.inner_text("#result_list")
            assert "payment_failed" in text and "SMTPServerDisconnected" in text and "Dispute opened" in text
            page.screenshot(path=str(screenshots_dir / f"outbox-{width}.png"), full_page=True)
            if width == 1280:
                assert page.evaluate("document.documentElement.scrollWidth") <= width
                page.check(f"input[name=_selected_action][value='{parked.pk}']")
                page.select_option("select[name=action]", "resend_selected")
                page.click("button[name=index]")
                page.wait_for_selector(".messagelist")
                assert "1 re-sent" in page.inner_text(".messagelist")
                page.screenshot(path=str(screenshots_dir / "outbox-resent-1280.png"), full_page=True)
        finally:
            page.context.close()
    parked.refresh_from_db()
    assert parked.status == "sent" and parked.attempts == 1
    assert [m.to for m in mail.outbox] == [["ap@acme.example"]]
    assert AuditEntry.objects.filter(action="email.resent", actor=support_user).count() == 1
