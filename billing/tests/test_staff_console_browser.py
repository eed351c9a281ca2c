"""
The staff console in Debian's chromium (Playwright) at 1280 px, as Support and as Finance (issue 14's "done when"):
find a customer by member email and by an in_ id, request a partial refund from the 360 page in two steps and a
credit note on a subscription invoice, approve both from the home page's queue, retry a past-due invoice from the
dunning view. Screenshots of each page go to the `screenshots_dir` fixture's folder, or to $SCREENSHOTS_DIR
(docs/screenshots/ was made with it).
"""
import shutil

import pytest
from djstripe import models as djstripe_models

from billing.models import CreditNote, RefundRequest
from billing_site.tests.test_pages_browser import browser  # noqa: F401  (module-scoped chromium)

from .backoffice_fixtures import *  # noqa: F401,F403
from .backoffice_fixtures import emulator_refunds, make_card_default, make_payment
from .test_backoffice_browser import login

pytestmark = [
    pytest.mark.browser,
    pytest.mark.django_db(transaction=True),
    pytest.mark.skipif(shutil.which("chromium") is None, reason="Debian's chromium is not installed"),
]
WIDTH = 1280


@pytest.fixture
def page_1280(browser):  # noqa: F811  (the project's one chromium, billing_site/tests/test_pages_browser.py)
    page = browser.new_page(viewport={"width": WIDTH, "height": 900})
    yield page
    page.context.close()


def test_support_and_finance_work_the_console(page_1280, live_server, subscribed_team, past_due_team, support_user,
                                              finance_user, bo_stripe, settings, screenshots_dir):
    settings.REFUND_APPROVAL_THRESHOLD = 5000  # $50.00: both requests below need Finance
    page, base = page_1280, live_server.url
    shots = screenshots_dir

    def shot(name):
        page.screenshot(path=str(shots / f"{name}.png"), full_page=True)
        # Nothing runs off the right edge at 1280 px (overlapping or spilling tables would).
        assert page.evaluate("document.documentElement.scrollWidth") <= WIDTH, name

    team, subscription, invoice, invoice_charge = subscribed_team
    one_off = make_payment(invoice_charge.customer_id, amount_minor=9900)
    owner_email = team.memberships.get().user.email
    late_team, late_sub, late_invoice, sdk = past_due_team

    # ---- Support: find the customer by a member's email, then by an invoice id ------------------------------
    login(page, base, support_user.email)
    page.goto(f"{base}/admin/")
    assert "Stripe mirror (read-only)" not in page.content()
    shot("staff-home-support")
    page.fill("#bo-q", owner_email)
    page.click(".bo-search input[type=submit]")
    page.wait_for_selector("#result_list")
    assert page.locator("#result_list tbody tr").count() == 1
    shot("search-by-email")
    page.goto(f"{base}/admin/billing/customeraccount/?q={invoice.id}")
    assert page.locator("#result_list tbody tr").count() == 1
    shot("search-by-invoice-id")
    page.click("text=Open 360")
    page.wait_for_selector("#payments")
    assert "$99.00" in page.inner_text("#invoices") and "(unix)" not in page.content()
    shot("customer-360")

    # ---- Support: a partial refund of the one-off payment, in two steps --------------------------------------
    page.click("#refund-start")
    page.wait_for_selector("#refund-pick")
    shot("refund-step1-choose-payment")
    page.check(f"input[name=charge_id][value='{one_off.id}']")
    page.click("#refund-pick input[type=submit]")
    page.wait_for_selector("#refund-form")
    assert page.input_value("input[name=amount]") == "99.00"
    assert "Above $50.00 needs a second approval" in page.inner_text("#threshold")
    assert page.locator("input[name=currency]").get_attribute("type") == "hidden"
    page.fill("input[name=amount]", "60.00")
    page.fill("textarea[name=note]", "Charged twice for the same order")
    shot("refund-step2-amount-and-reason")
    page.click("#refund-form input[type=submit]")
    page.wait_for_selector("#rr-status")
    assert page.inner_text("#rr-status") == "Requested" and "of a $99.00 payment" in page.content()
    shot("refund-requested")

    # ---- Support: a credit note on the subscription invoice (to the card, partial) ---------------------------
    page.goto(f"{base}/admin/billing/customeraccount/{team.pk}/refund/")
    page.check(f"input[name=charge_id][value='{invoice_charge.id}']")
    page.click("#refund-pick input[type=submit]")
    page.wait_for_selector("#credit-note-notice")
    page.fill("input[name=amount]", "55.00")
    page.select_option("select[name=reason]", "duplicate")
    shot("credit-note-form")
    page.click("#refund-form input[type=submit]")
    page.wait_for_selector("#rr-status")
    assert page.inner_text("#rr-status") == "Requested"
    refund_rr, credit_rr = RefundRequest.objects.order_by("id")
    assert (refund_rr.amount_minor, refund_rr.stripe_invoice_id) == (6000, "")
    assert (credit_rr.amount_minor, credit_rr.stripe_invoice_id) == (5500, invoice.id)
    assert emulator_refunds(bo_stripe, one_off.id) == [] and CreditNote.objects.count() == 0

    # ---- Support: retry the past-due invoice from the dunning view (after the customer fixed their card) ----
    make_card_default(sdk, late_sub.customer_id, late_sub.id)
    page.goto(f"{base}/admin/billing/dunningsubscription/")
    page.wait_for_selector(f"#dunning-{late_sub.id}")
    assert page.inner_text(f"#dunning-{late_sub.id} .bo-attempts") == "1"
    shot("dunning")
    page.click(f"#dunning-{late_sub.id} button.bo-retry")
    page.wait_for_selector(".messagelist .success")
    assert "paid" in page.inner_text(".messagelist")
    shot("dunning-after-retry")
    assert djstripe_models.Invoice.objects.get(id=late_invoice.id).stripe_data["status"] == "paid"

    # ---- Finance: approve both from the home page's queue, one click each ------------------------------------
    login(page, base, finance_user.email)
    page.goto(f"{base}/admin/")
    assert page.inner_text("#waiting-count") == "2"
    assert "Stripe mirror (read-only)" in page.content()
    shot("staff-home-finance")
    page.click(f"button.bo-approve[data-rr='{refund_rr.pk}']")
    page.wait_for_selector(".messagelist .success")
    assert page.inner_text("#waiting-count") == "1"
    page.click(f"button.bo-approve[data-rr='{credit_rr.pk}']")
    page.wait_for_selector(".messagelist .success")
    assert page.inner_text("#waiting-count") == "0"
    shot("queue-approved")
    refund_rr.refresh_from_db()
    credit_rr.refresh_from_db()
    assert refund_rr.status == credit_rr.status == RefundRequest.Status.SUCCEEDED
    assert [r["amount"] for r in emulator_refunds(bo_stripe, one_off.id)] == [6000]
    note = CreditNote.objects.get()
    assert (note.stripe_invoice_id, note.total_minor, note.refund_minor) == (invoice.id, 5500, 5500)
    page.goto(f"{base}/admin/billing/refundrequest/{credit_rr.pk}/change/")
    assert note.number in page.inner_text("#rr-credit-note")
    shot("credit-note-issued")
    page.goto(f"{base}/admin/billing/customeraccount/{team.pk}/change/")
    assert note.number in page.inner_text("#credit-notes")
    shot("customer-360-after")
    page.goto(f"{base}/admin/djstripe/invoice/{invoice.pk}/change/")
    assert note.number in page.content()
    shot("invoice-with-credit-note")
    page.goto(f"{base}/admin/billing/auditentry/")
    shot("audit-trail")
    # Key columns of the audit list are on screen at 1280 px.
    for column in ("column-id", "column-when", "column-actor_email", "column-action", "column-outcome"):
        box = page.locator(f"#result_list th.{column}").bounding_box()
        assert box and box["x"] + box["width"] <= WIDTH, column
