"""Checkout Sessions through the SDK and the hosted page (form posts like a browser, and a real browser)."""
from __future__ import annotations

import re
import shutil
import urllib.parse
from typing import Any

import pytest
import stripe

from .conftest import http
from .shape_makers_billing import _price


def _form_post(url: str, fields: dict[str, str]) -> tuple[int, dict[str, str], str]:
    status, headers, body = http("POST", url, urllib.parse.urlencode(fields).encode(),
                                 {"Content-Type": "application/x-www-form-urlencoded"})
    return status, headers, body.decode()


def _page_form(page_html: str) -> tuple[str, dict[str, str]]:
    """The hosted page's form action and its prefilled fields, as a browser would submit them."""
    action = re.search(r"<form method='post' id='checkout-form' action='([^']+)'", page_html)
    assert action, "no checkout form on the page"
    fields = dict(re.findall(r"<input id='[^']*' name='([^']+)'[^>]*?value='([^']*)'", page_html))
    return action.group(1), fields


def _events_for(client: stripe.StripeClient, obj_id: str) -> list[str]:
    out = []
    for ev in client.v1.events.list(params={"limit": 100}).data:
        o = ev.data.object.to_dict()
        if o.get("id") == obj_id or o.get("customer") == obj_id or o.get("subscription") == obj_id:
            out.append(ev.type)
    return list(reversed(out))


def test_payment_checkout_completed_through_the_hosted_page_form(client: stripe.StripeClient, emulator: Any) -> None:
    price = _price(client, recurring=False, amount=1250)
    session = client.v1.checkout.sessions.create(params={
        "mode": "payment", "line_items": [{"price": price.id, "quantity": 2}],
        "success_url": "https://app.example/thanks?session={CHECKOUT_SESSION_ID}",
        "cancel_url": "https://app.example/cancel", "customer_email": "buyer@example.com",
        "client_reference_id": "team_42", "metadata": {"team_id": "42"},
        "payment_intent_data": {"metadata": {"order": "o-1"}},
    })
    assert session.status == "open" and session.amount_total == 2500 and session.payment_intent is None
    assert session.url.startswith(emulator.url + "/")

    status, _, body = http("GET", session.url)
    html = body.decode()
    assert status == 200
    assert "$12.50" in html and "$25.00" in html and "4242 4242 4242 4242" in html
    action, fields = _page_form(html)
    assert fields["card_number"] == "4242 4242 4242 4242"

    status, headers, _ = _form_post(emulator.url + action, fields)
    assert status == 303
    assert headers["location"] == f"https://app.example/thanks?session={session.id}"

    done = client.v1.checkout.sessions.retrieve(session.id, params={"expand": ["payment_intent"]})
    assert (done.status, done.payment_status) == ("complete", "paid")
    assert done.client_reference_id == "team_42" and done.metadata["team_id"] == "42"
    assert done.customer_details.email == "buyer@example.com"
    assert done.customer is None  # payment mode creates no customer unless customer_creation=always
    pi = done.payment_intent
    assert (pi.status, pi.amount, pi.currency) == ("succeeded", 2500, "usd")
    assert pi.metadata["order"] == "o-1"
    types = _events_for(client, session.id)
    assert types == ["checkout.session.completed"]
    # the payment events precede the session's completion (only this test's objects: the emulator is shared)
    own_types = [e.type for e in reversed(client.v1.events.list(params={"limit": 100}).data)
                 if e.data.object.to_dict().get("id") in (pi.id, session.id)]
    assert own_types.index("payment_intent.succeeded") < own_types.index("checkout.session.completed")


def test_declined_card_stays_on_the_page_and_changes_nothing(client: stripe.StripeClient, emulator: Any) -> None:
    price = _price(client, recurring=False, amount=900)
    session = client.v1.checkout.sessions.create(params={
        "mode": "payment", "line_items": [{"price": price.id, "quantity": 1}],
        "success_url": "https://app.example/ok", "customer_email": "d@example.com"})
    newest_pi = [pi.id for pi in client.v1.payment_intents.list(params={"limit": 1}).data]
    status, headers, html = _form_post(f"{emulator.url}/_emulator/checkout_sessions/{session.id}/complete",
                                       {"card_number": "4000 0000 0000 0002", "card_expiry": "12 / 34"})
    assert status == 402
    assert "location" not in headers
    assert "Your card was declined." in html and "checkout-form" in html
    status, _, html = _form_post(f"{emulator.url}/_emulator/checkout_sessions/{session.id}/complete",
                                 {"card_number": "4000000000009995"})
    assert status == 402 and "Your card has insufficient funds." in html
    again = client.v1.checkout.sessions.retrieve(session.id)
    assert (again.status, again.payment_status, again.payment_intent) == ("open", "unpaid", None)
    assert [pi.id for pi in client.v1.payment_intents.list(params={"limit": 1}).data] == newest_pi  # none created
    assert _events_for(client, session.id) == []
    # the same session can then be paid with a good card
    status, headers, _ = _form_post(f"{emulator.url}/_emulator/checkout_sessions/{session.id}/complete", {})
    assert status == 303 and headers["location"] == "https://app.example/ok"


def test_subscription_checkout_with_trial_creates_customer_and_trialing_subscription(
        client: stripe.StripeClient, emulator: Any) -> None:
    price = _price(client, amount=4900)
    session = client.v1.checkout.sessions.create(params={
        "mode": "subscription", "line_items": [{"price": price.id, "quantity": 1}],
        "success_url": "https://app.example/ok", "customer_email": "trial@example.com",
        "subscription_data": {"trial_period_days": 14, "metadata": {"team_id": "9"}},
    })
    assert session.amount_total == 0  # nothing due today during a trial
    status, headers, _ = _form_post(f"{emulator.url}/_emulator/checkout_sessions/{session.id}/complete",
                                    {"card_number": "4242424242424242"})
    assert status == 303
    done = client.v1.checkout.sessions.retrieve(session.id, params={"expand": ["subscription", "invoice", "customer"]})
    assert (done.status, done.payment_status) == ("complete", "no_payment_required")
    assert done.customer.email == "trial@example.com"
    sub = done.subscription
    assert sub.status == "trialing" and sub.metadata["team_id"] == "9"
    assert sub.trial_end - sub.trial_start == 14 * 86400
    assert sub["items"].data[0].current_period_end == sub.trial_end
    pm = client.v1.payment_methods.retrieve(sub.default_payment_method)
    assert pm.customer == done.customer.id and pm.card.last4 == "4242"
    assert (done.invoice.status, done.invoice.total, done.invoice.billing_reason) == ("paid", 0, "subscription_create")
    types = _events_for(client, done.customer.id)
    assert types.index("customer.created") < types.index("customer.subscription.created") < types.index("invoice.paid")
    assert _events_for(client, session.id) == ["checkout.session.completed"]


def test_subscription_checkout_in_brl_with_a_promotion_code(client: stripe.StripeClient, emulator: Any) -> None:
    price = _price(client, amount=2000, currency_options={"brl": {"unit_amount": 9990}})
    coupon = client.v1.coupons.create(params={"percent_off": 20, "duration": "once"})
    code = client.v1.promotion_codes.create(params={"promotion": {"type": "coupon", "coupon": coupon.id},
                                                    "code": f"LAUNCH{price.id[-6:]}"})
    session = client.v1.checkout.sessions.create(params={
        "mode": "subscription", "currency": "brl", "line_items": [{"price": price.id, "quantity": 1}],
        "allow_promotion_codes": True, "success_url": "https://app.example/ok", "customer_email": "br@example.com"})
    assert (session.currency, session.amount_total) == ("brl", 9990)
    status, _, html = http("GET", session.url)
    assert "R$99.90" in html.decode() and "promotion_code" in html.decode()

    status, _, html = _form_post(f"{emulator.url}/_emulator/checkout_sessions/{session.id}/complete",
                                 {"promotion_code": "NOPE", "action": "apply"})
    assert status == 400 and "This code is invalid." in html
    status, _, html = _form_post(f"{emulator.url}/_emulator/checkout_sessions/{session.id}/complete",
                                 {"promotion_code": code.code.lower(), "action": "apply"})
    assert status == 200 and "R$79.92" in html
    assert client.v1.checkout.sessions.retrieve(session.id).amount_total == 7992

    status, _, _ = _form_post(f"{emulator.url}/_emulator/checkout_sessions/{session.id}/complete",
                              {"card_number": "4242424242424242"})
    assert status == 303
    done = client.v1.checkout.sessions.retrieve(session.id, params={"expand": ["invoice", "subscription"]})
    assert (done.amount_total, done.total_details.amount_discount) == (7992, 1998)
    inv = done.invoice
    assert (inv.currency, inv.subtotal, inv.total, inv.amount_paid) == ("brl", 9990, 7992, 7992)
    assert inv.total_discount_amounts[0].amount == 1998
    assert done.subscription.currency == "brl" and done.subscription.status == "active"
    assert client.v1.promotion_codes.retrieve(code.id).times_redeemed == 1
    # a "once" coupon ends after the first invoice
    assert client.v1.subscriptions.retrieve(done.subscription.id).discounts == []


def test_three_d_secure_card_goes_through_the_challenge_page(client: stripe.StripeClient, emulator: Any) -> None:
    price = _price(client, recurring=False, amount=3000)
    session = client.v1.checkout.sessions.create(params={
        "mode": "payment", "line_items": [{"price": price.id, "quantity": 1}],
        "success_url": "https://app.example/ok?id={CHECKOUT_SESSION_ID}", "customer_email": "3ds@example.com"})
    status, headers, _ = _form_post(f"{emulator.url}/_emulator/checkout_sessions/{session.id}/complete",
                                    {"card_number": "4000002760003184"})
    assert status == 303 and "/_emulator/3ds/pi_" in headers["location"]
    assert client.v1.checkout.sessions.retrieve(session.id).status == "open"
    status, headers, _ = _form_post(headers["location"], {"action": "approve"})
    assert status == 303 and headers["location"] == f"https://app.example/ok?id={session.id}"
    done = client.v1.checkout.sessions.retrieve(session.id, params={"expand": ["payment_intent"]})
    assert done.status == "complete" and done.payment_intent.status == "succeeded"


def test_expire_and_validation_errors(client: stripe.StripeClient, emulator: Any) -> None:
    one_time = _price(client, recurring=False)
    monthly = _price(client)
    with pytest.raises(stripe.InvalidRequestError) as exc:
        client.v1.checkout.sessions.create(params={"mode": "payment", "line_items": [{"price": monthly.id, "quantity": 1}],
                                                   "success_url": "https://x.example"})
    assert "recurring price" in exc.value.user_message and exc.value.param == "mode"
    with pytest.raises(stripe.InvalidRequestError) as exc:
        client.v1.checkout.sessions.create(params={"mode": "subscription", "line_items": [{"price": one_time.id, "quantity": 1}],
                                                   "success_url": "https://x.example"})
    assert "at least one recurring price" in exc.value.user_message
    session = client.v1.checkout.sessions.create(params={
        "mode": "payment", "line_items": [{"price": one_time.id, "quantity": 3}], "success_url": "https://x.example"})
    items = client.v1.checkout.sessions.line_items.list(session.id)
    assert [(i.object, i.quantity, i.amount_total, i.price.id) for i in items.data] == [("item", 3, 6000, one_time.id)]
    expanded = client.v1.checkout.sessions.retrieve(session.id, params={"expand": ["line_items"]})
    assert expanded.line_items.data[0].id == items.data[0].id
    expired = client.v1.checkout.sessions.expire(session.id)
    assert expired.status == "expired" and expired.url is None
    with pytest.raises(stripe.InvalidRequestError):
        client.v1.checkout.sessions.expire(session.id)
    status, _, _ = _form_post(f"{emulator.url}/_emulator/checkout_sessions/{session.id}/complete", {})
    assert status == 409
    assert _events_for(client, session.id) == ["checkout.session.expired"]
    listed = client.v1.checkout.sessions.list(params={"status": "expired", "limit": 100})
    assert session.id in [s.id for s in listed.data]


@pytest.mark.browser
@pytest.mark.skipif(shutil.which("chromium") is None, reason="Debian chromium not installed")
def test_checkout_clicked_through_in_chromium(client: stripe.StripeClient, emulator: Any) -> None:
    from playwright.sync_api import sync_playwright

    price = _price(client, amount=1500)
    session = client.v1.checkout.sessions.create(params={
        "mode": "subscription", "line_items": [{"price": price.id, "quantity": 1}],
        "success_url": f"{emulator.url}/_emulator/health?session={{CHECKOUT_SESSION_ID}}",
        "customer_email": "browser@example.com"})
    with sync_playwright() as pw:
        browser = pw.chromium.launch(executable_path=shutil.which("chromium"), args=[
            "--headless", "--no-sandbox", "--disable-gpu", "--disable-background-networking",
            "--disable-component-update", "--disable-sync", "--no-first-run"])
        try:
            page = browser.new_page()
            page.goto(session.url)
            assert page.inner_text("#amount-total") == "$15.00"
            page.fill("#card_number", "4000 0000 0000 0002")
            page.click("#submit")
            assert page.inner_text("#error") == "Your card was declined."
            page.fill("#card_number", "4242 4242 4242 4242")
            page.click("#submit")
            page.wait_for_url(re.compile(r".*/_emulator/health\?session=cs_test_.*"))
            assert session.id in page.url
        finally:
            browser.close()
    done = client.v1.checkout.sessions.retrieve(session.id, params={"expand": ["subscription"]})
    assert done.status == "complete" and done.subscription.status == "active"


def test_subscription_checkout_with_three_d_secure(client: stripe.StripeClient, emulator: Any) -> None:
    price = _price(client, amount=2200)
    session = client.v1.checkout.sessions.create(params={
        "mode": "subscription", "line_items": [{"price": price.id, "quantity": 1}],
        "success_url": "https://app.example/ok", "customer_email": "sub3ds@example.com"})
    status, headers, _ = _form_post(f"{emulator.url}/_emulator/checkout_sessions/{session.id}/complete",
                                    {"card_number": "4000002500003155"})
    assert status == 303 and "/_emulator/3ds/" in headers["location"]
    status, headers, _ = _form_post(headers["location"], {"action": "approve"})
    assert status == 303 and headers["location"] == "https://app.example/ok"
    done = client.v1.checkout.sessions.retrieve(session.id, params={"expand": ["subscription", "invoice"]})
    assert (done.status, done.payment_status) == ("complete", "paid")
    assert (done.subscription.status, done.invoice.status, done.invoice.amount_paid) == ("active", "paid", 2200)


def test_failed_three_d_secure_keeps_the_session_open(client: stripe.StripeClient, emulator: Any) -> None:
    price = _price(client, recurring=False, amount=1800)
    session = client.v1.checkout.sessions.create(params={
        "mode": "payment", "line_items": [{"price": price.id, "quantity": 1}],
        "success_url": "https://app.example/ok", "customer_email": "fail3ds@example.com"})
    _, headers, _ = _form_post(f"{emulator.url}/_emulator/checkout_sessions/{session.id}/complete",
                               {"card_number": "4000002760003184"})
    status, _, html = _form_post(headers["location"], {"action": "fail"})
    assert status == 402 and "We are unable to authenticate your payment method." in html
    again = client.v1.checkout.sessions.retrieve(session.id)
    assert (again.status, again.payment_status, again.payment_intent) == ("open", "unpaid", None)


def test_concurrent_completions_of_one_session_charge_once(client: stripe.StripeClient, emulator: Any) -> None:
    import threading

    price = _price(client, recurring=False, amount=700)
    session = client.v1.checkout.sessions.create(params={
        "mode": "payment", "line_items": [{"price": price.id, "quantity": 1}], "success_url": "https://app.example/ok",
        "customer_email": "race@example.com"})
    statuses: list[int] = []
    lock = threading.Lock()

    def submit() -> None:
        status, _, _ = _form_post(f"{emulator.url}/_emulator/checkout_sessions/{session.id}/complete", {})
        with lock:
            statuses.append(status)

    threads = [threading.Thread(target=submit) for _ in range(6)]
    for t in threads:
        t.start()
    for t in threads:
        t.join()
    assert sorted(statuses) == [303] + [409] * 5
    done = client.v1.checkout.sessions.retrieve(session.id)
    charges = client.v1.charges.list(params={"payment_intent": done.payment_intent}).data
    assert len(charges) == 1 and charges[0].amount == 700
    assert _events_for(client, session.id) == ["checkout.session.completed"]


def test_subscription_checkout_with_inline_price_data(client: stripe.StripeClient, emulator: Any) -> None:
    prod = client.v1.products.create(params={"name": "Inline plan"})
    session = client.v1.checkout.sessions.create(params={
        "mode": "subscription", "success_url": "https://app.example/ok", "customer_email": "inline@example.com",
        "line_items": [{"quantity": 2, "price_data": {"currency": "usd", "product": prod.id, "unit_amount": 1100,
                                                      "recurring": {"interval": "month"}}}]})
    assert session.amount_total == 2200
    status, _, _ = _form_post(f"{emulator.url}/_emulator/checkout_sessions/{session.id}/complete", {})
    assert status == 303
    sub = client.v1.subscriptions.retrieve(client.v1.checkout.sessions.retrieve(session.id).subscription)
    item = sub["items"].data[0]
    assert (sub.status, item.quantity, item.price.unit_amount, item.price.active) == ("active", 2, 1100, False)


def test_payment_checkout_with_post_payment_invoice(client: stripe.StripeClient, emulator: Any) -> None:
    price = _price(client, recurring=False, amount=2500)
    session = client.v1.checkout.sessions.create(params={
        "mode": "payment", "line_items": [{"price": price.id, "quantity": 2}], "success_url": "https://app.example/ok",
        "customer_email": "credits@example.com",
        "invoice_creation": {"enabled": True, "invoice_data": {"description": "Credit pack", "metadata": {"pack": "50"}}}})
    assert session.invoice_creation.enabled is True
    status, _, _ = _form_post(f"{emulator.url}/_emulator/checkout_sessions/{session.id}/complete", {})
    assert status == 303
    done = client.v1.checkout.sessions.retrieve(session.id, params={"expand": ["invoice.payments"]})
    inv = done.invoice
    assert done.customer is not None and inv.customer == done.customer
    assert (inv.status, inv.total, inv.amount_paid, inv.description) == ("paid", 5000, 5000, "Credit pack")
    assert inv.metadata["pack"] == "50" and inv.payments.data[0].payment.payment_intent == done.payment_intent
    status, headers, body = http("GET", inv.invoice_pdf)
    assert status == 200 and body.startswith(b"%PDF-")
