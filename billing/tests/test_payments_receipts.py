"""
Issue 13, part one: the payment history (page and API), the project's PDF receipts (numbered once, team members
only) and the receipt and refund emails. Payments are made in the emulator through the gateway and mirrored into
dj-stripe's tables, the path production takes.
"""
import io
import threading
from datetime import timedelta

import pytest
from django.core import mail
from django.db import connection
from django.utils import timezone
from djstripe import models as djstripe_models

from accounts.tests.factories import make_team_with_owner
from billing import selectors
from billing.services.mirror import mirror_refresh, mirror_store
from billing.emails import team_email_send_now
from billing.models import Receipt, ReceiptCounter
from billing.models.receipts import ReceiptImmutableError
from billing.receipts import receipt_for_charge_get_or_create, refunds_new_in_event
from billing.stripe_gateway.refunds import payment_intent_create_confirmed, refund_create

from .backoffice_fixtures import *  # noqa: F401,F403
from .backoffice_fixtures import make_customer, make_payment, make_subscription
from .conftest import stripe_events


@pytest.fixture
def receipt_settings(settings):
    settings.RECEIPT_SELLER_NAME = "Acme Billing Ltda."
    settings.RECEIPT_SELLER_ADDRESS = "Rua das Flores 10, São Paulo"
    settings.RECEIPT_SELLER_TAX_ID = "12.345.678/0001-90"
    settings.RECEIPT_NUMBER_PREFIX = "T13-"
    settings.SITE_URL = "http://testserver"
    return settings


def pdf_text(data: bytes) -> str:
    from pypdf import PdfReader

    return "\n".join(page.extract_text() for page in PdfReader(io.BytesIO(data)).pages)


def pay_credit_pack(customer_id: str, *, key: str = "pack:1", amount: int = 900):
    pi = payment_intent_create_confirmed(
        customer_id=customer_id, amount_minor=amount, currency="usd", payment_method="pm_card_visa",
        idempotency_key=key, metadata={"kind": "credit_pack", "lookup_key": "credits_10", "credits": "10"})
    mirror_store(kind="payment_intent", data={**pi, "latest_charge": pi["latest_charge"]["id"]})
    return mirror_store(kind="charge", data=pi["latest_charge"])


def refund(charge, amount: int, key: str):
    created = refund_create(charge_id=charge.id, amount_minor=amount, reason="requested_by_customer",
                            idempotency_key=key)
    mirror_store(kind="refund", data=created)
    mirror_refresh(kind="charge", object_id=charge.id)
    return created


def apply_invoice_payment_events() -> None:
    """The invoice_payment.paid webhooks, as the pipeline applies them: they say which invoice a payment paid."""
    from billing.webhooks.registry import handlers_for

    for event in stripe_events({"invoice_payment.paid"}):
        for handler in handlers_for(event["type"]):
            handler(event=event)


@pytest.fixture
def payments_world(bo_stripe, receipt_settings, client):
    """A team with a $99.00 one-time payment refunded $25.00, a $9.00 credit pack and a $99.00 subscription invoice."""
    team, owner = make_team_with_owner(name="O'Brien & Co")
    customer = make_customer(team)
    one_time = make_payment(customer.id, amount_minor=9900)
    refund(one_time, 2500, "refund:1")
    pack = pay_credit_pack(customer.id)
    _subscription, invoice = make_subscription(customer.id, trial_days=None)
    invoice_charge = next(c for c in bo_stripe.store.all("charge") if c["customer"] == customer.id
                          and c["id"] not in (one_time.id, pack.id))
    mirror_store(kind="charge", data=invoice_charge)
    apply_invoice_payment_events()
    client.force_login(owner)
    return {"team": team, "owner": owner, "customer": customer, "one_time": one_time, "pack": pack,
            "invoice": invoice, "invoice_charge_id": invoice_charge["id"], "client": client}


# --- selectors and filters -----------------------------------------------------------------------------------------
@pytest.mark.django_db(transaction=True)
def test_team_payments_reads_kind_status_card_and_refunds_from_the_mirror(payments_world):
    w = payments_world
    rows = {row.id: row for row in selectors.team_payments(team=w["team"])}
    assert set(rows) == {w["one_time"].id, w["pack"].id, w["invoice_charge_id"]}
    one_time, pack, invoice = rows[w["one_time"].id], rows[w["pack"].id], rows[w["invoice_charge_id"]]
    assert (one_time.kind, one_time.status, one_time.amount_minor, one_time.amount_refunded_minor) == (
        "one_time", "partially_refunded", 9900, 2500)
    assert [(r.amount_minor, r.status) for r in one_time.refunds] == [(2500, "succeeded")]
    assert (one_time.card_brand, one_time.card_last4) == ("visa", "4242")
    assert (pack.kind, pack.status, pack.amount_minor) == ("credit_pack", "succeeded", 900)
    assert (invoice.kind, invoice.amount_minor) == ("subscription", 9900)

    def ids(**filters):
        return {row.id for row in selectors.team_payments(team=w["team"], **filters)}

    assert ids(status="partially_refunded") == {w["one_time"].id}
    assert ids(status="succeeded") == {w["pack"].id, w["invoice_charge_id"]}
    assert ids(kind="credit_pack") == {w["pack"].id}
    assert ids(kind="subscription") == {w["invoice_charge_id"]}
    tomorrow = timezone.now() + timedelta(days=1)
    assert ids(created_gte=tomorrow) == set()
    assert len(ids(created_lte=tomorrow)) == 3
    assert [r.amount_minor for r in selectors.team_payments(team=w["team"], ordering="amount")] == [900, 9900, 9900]
    # Another team (with its own customer) sees none of them, by list or by id.
    other, _ = make_team_with_owner()
    make_customer(other)
    assert selectors.team_payments(team=other) == []
    assert selectors.team_payment(team=other, payment_id=w["one_time"].id) is None


@pytest.mark.django_db(transaction=True)
def test_payments_api_filters_and_refuses_bad_values_with_the_error_shape(payments_world):
    w, api = payments_world, payments_world["client"]
    listed = api.get("/api/v1/payments/").json()
    assert listed["count"] == 3
    by_id = {p["id"]: p for p in listed["results"]}
    one_time = by_id[w["one_time"].id]
    assert one_time["status"] == "partially_refunded" and one_time["kind"] == "one_time"
    assert one_time["card"] == {"brand": "visa", "last4": "4242"}
    assert [r["amount"] for r in one_time["refunds"]] == [2500]
    assert one_time["receipt_pdf"].endswith(f"/billing/payments/{w['one_time'].id}/receipt.pdf")
    assert api.get("/api/v1/payments/?kind=credit_pack").json()["count"] == 1
    assert api.get("/api/v1/payments/?status=succeeded&kind=subscription").json()["count"] == 1
    today = timezone.now().date().isoformat()
    assert api.get(f"/api/v1/payments/?created_gte={today}&created_lte={today}").json()["count"] == 3
    assert api.get("/api/v1/payments/?created_gte=2001-01-01T00:00:00Z&created_lte=2001-01-02").json()["count"] == 0
    for query, field in [("status=bogus", "status"), ("kind=subscriptions", "kind"),
                         ("created_gte=yesterday", "created_gte"), ("created_lte=2026-02-30", "created_lte")]:
        response = api.get(f"/api/v1/payments/?{query}")
        assert response.status_code == 400, query
        error = response.json()["error"]
        assert error["code"] == "invalid_filter" and error["message"].startswith(f"{field}: "), query
    reversed_range = api.get("/api/v1/payments/?created_gte=2026-02-01&created_lte=2026-01-01")
    assert reversed_range.status_code == 400 and reversed_range.json()["error"]["code"] == "invalid_filter"
    detail = api.get(f"/api/v1/payments/{w['pack'].id}/").json()
    assert (detail["kind"], detail["amount"], detail["refunds"]) == ("credit_pack", 900, [])


@pytest.mark.django_db(transaction=True)
def test_payments_page_lists_filters_and_paginates(payments_world, monkeypatch):
    w, page = payments_world, payments_world["client"]
    html = page.get("/billing/payments/").content.decode()
    assert html.count('class="payment payment-') == 3
    assert "$99.00" in html and "$9.00" in html and "Visa •••• 4242" in html
    assert "Partially refunded" in html and "Refunded $25.00 on" in html
    assert f"/billing/payments/{w['one_time'].id}/receipt.pdf" in html
    filtered = page.get("/billing/payments/?kind=credit_pack").content.decode()
    assert filtered.count('class="payment payment-') == 1 and "Credit pack" in filtered
    # A filter that does not parse is shown with its error; the page still answers.
    bad = page.get("/billing/payments/?status=bogus&created_gte=yesterday")
    assert bad.status_code == 200 and bad.content.decode().count("field-error") == 2
    monkeypatch.setattr("billing.views_payments.PAYMENTS_PER_PAGE", 2)
    first = page.get("/billing/payments/?status=").content.decode()
    assert first.count('class="payment payment-') == 2 and "Page 1 of 2" in first and "status=&amp;page=2" in first
    second = page.get("/billing/payments/?page=2").content.decode()
    assert second.count('class="payment payment-') == 1
    pt = page.get("/billing/payments/", HTTP_ACCEPT_LANGUAGE="pt-br").content.decode()
    assert "Pagamentos" in pt and "Parcialmente reembolsado" in pt and "US$ 99,00" in pt


# --- receipts ------------------------------------------------------------------------------------------------------
@pytest.mark.django_db(transaction=True)
def test_receipt_pdf_is_issued_once_numbered_in_order_and_shows_amounts_refunds_and_seller(payments_world):
    w, owner_client = payments_world, payments_world["client"]
    response = owner_client.get(f"/billing/payments/{w['one_time'].id}/receipt.pdf")
    assert response.status_code == 200 and response["Content-Type"] == "application/pdf"
    assert 'filename="receipt-T13-000001.pdf"' in response["Content-Disposition"]
    text = pdf_text(response.content)
    for expected in ("Receipt T13-000001", "$99.00", "-$25.00", "Net paid after refunds: $74.00", "Acme Billing Ltda.",
                     "12.345.678/0001-90", "Rua das Flores 10, São Paulo", "Visa ending in 4242", "O'Brien & Co"):
        assert expected in text, expected
    again = owner_client.get(f"/billing/payments/{w['one_time'].id}/receipt.pdf")
    assert again.content == response.content
    assert Receipt.objects.filter(stripe_charge_id=w["one_time"].id).count() == 1
    # By payment intent id too, the same receipt.
    intent = w["one_time"].stripe_data["payment_intent"]
    assert receipt_for_charge_get_or_create(team=w["team"], payment_id=intent).number == "T13-000001"
    pack = owner_client.get(f"/billing/payments/{w['pack'].id}/receipt.pdf")
    assert "Receipt T13-000002" in pdf_text(pack.content) and "$9.00" in pdf_text(pack.content)
    assert ReceiptCounter.objects.get(seller="T13-").last_number == 2
    receipt = Receipt.objects.get(number="T13-000001")
    receipt.amount_minor = 1
    with pytest.raises(ReceiptImmutableError):
        receipt.save()
    with pytest.raises(ReceiptImmutableError):
        receipt.delete()


@pytest.mark.django_db(transaction=True)
def test_subscription_receipt_carries_the_invoice_lines_and_number(payments_world):
    w = payments_world
    response = w["client"].get(f"/billing/payments/{w['invoice_charge_id']}/receipt.pdf")
    assert response.status_code == 200
    text = pdf_text(response.content)
    invoice = w["invoice"].stripe_data
    assert invoice["number"] and invoice["number"] in text
    line = invoice["lines"]["data"][0]
    assert line["description"] in text and "$99.00" in text and "Subscription" in text


@pytest.mark.django_db(transaction=True)
def test_refund_receipt_has_its_own_number_and_refers_to_the_payment(payments_world):
    w = payments_world
    refund_id = selectors.team_payment(team=w["team"], payment_id=w["one_time"].id).refunds[0].id
    response = w["client"].get(f"/billing/payments/{w['one_time'].id}/refunds/{refund_id}/receipt.pdf")
    assert response.status_code == 200
    text = pdf_text(response.content)
    # The payment's own receipt is issued first (number 1), the refund's is number 2 and names it.
    assert "Refund receipt T13-000002" in text and "T13-000001" in text and "$25.00" in text
    assert list(Receipt.objects.order_by("sequence").values_list("kind", "sequence")) == [("payment", 1), ("refund", 2)]


@pytest.mark.django_db(transaction=True)
def test_receipt_in_portuguese_for_a_portuguese_owner_in_reais(bo_stripe, receipt_settings, client):
    team, owner = make_team_with_owner(name="Padaria São João")
    owner.language = "pt-br"
    owner.save(update_fields=["language"])
    customer = make_customer(team)
    charge = make_payment(customer.id, amount_minor=249900, currency="brl")
    client.force_login(owner)
    text = pdf_text(client.get(f"/billing/payments/{charge.id}/receipt.pdf").content)
    assert "Recibo T13-000001" in text and "R$ 2.499,00" in text and "Total pago" in text and "Padaria São João" in text


@pytest.mark.django_db(transaction=True)
def test_other_teams_payment_and_receipts_answer_404_and_write_nothing(payments_world):
    w = payments_world
    other_team, other = make_team_with_owner()
    make_customer(other_team)
    w["client"].force_login(other)
    refund_id = selectors.team_payment(team=w["team"], payment_id=w["one_time"].id).refunds[0].id
    for url in [f"/billing/payments/{w['one_time'].id}/receipt.pdf",
                f"/billing/payments/{w['one_time'].stripe_data['payment_intent']}/receipt.pdf",
                f"/billing/payments/{w['one_time'].id}/refunds/{refund_id}/receipt.pdf",
                "/billing/payments/ch_doesnotexist/receipt.pdf",
                f"/api/v1/payments/{w['one_time'].id}/"]:
        assert w["client"].get(url).status_code == 404, url
    assert w["client"].get("/api/v1/payments/").json()["count"] == 0
    assert 'class="payment payment-' not in w["client"].get("/billing/payments/").content.decode()
    assert Receipt.objects.count() == 0 and ReceiptCounter.objects.count() == 0
    # Signed out: the login page, not the receipt.
    w["client"].logout()
    assert w["client"].get(f"/billing/payments/{w['one_time'].id}/receipt.pdf").status_code == 302


@pytest.mark.django_db(transaction=True)
def test_failed_payment_is_listed_without_a_receipt(bo_stripe, receipt_settings, client):
    from billing_site.errors import BillingError

    team, owner = make_team_with_owner()
    customer = make_customer(team)
    with pytest.raises(BillingError):
        payment_intent_create_confirmed(customer_id=customer.id, amount_minor=500, currency="usd",
                                        payment_method="pm_card_chargeDeclined", idempotency_key="declined:1")
    failed = next(c for c in bo_stripe.store.all("charge") if c["customer"] == customer.id)
    mirror_store(kind="charge", data=failed)
    client.force_login(owner)
    (row,) = selectors.team_payments(team=team, status="failed")
    assert row.id == failed["id"] and not row.has_receipt
    assert client.get(f"/billing/payments/{failed['id']}/receipt.pdf").status_code == 404
    assert Receipt.objects.count() == 0


@pytest.mark.postgres
@pytest.mark.django_db(transaction=True)
def test_receipt_numbers_are_sequential_without_gaps_or_duplicates_under_threads(bo_stripe, receipt_settings):
    team, _owner = make_team_with_owner()
    customer = make_customer(team)
    charges = [make_payment(customer.id, amount_minor=1000 + n) for n in range(6)]
    # Each payment asked for by two threads at once: six receipts, numbers 1..6, one per payment.
    targets = [c.id for c in charges] * 2
    barrier = threading.Barrier(len(targets))
    numbers, errors = [], []

    def worker(charge_id):
        try:
            barrier.wait()
            numbers.append((charge_id, receipt_for_charge_get_or_create(team=team, payment_id=charge_id).number))
        except Exception as error:  # noqa: BLE001 - surfaced by the assertion below
            errors.append(error)
        finally:
            connection.close()

    threads = [threading.Thread(target=worker, args=(charge_id,)) for charge_id in targets]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join()
    assert errors == []
    assert sorted(Receipt.objects.values_list("sequence", flat=True)) == [1, 2, 3, 4, 5, 6]
    by_charge = {}
    for charge_id, number in numbers:
        by_charge.setdefault(charge_id, set()).add(number)
    assert all(len(found) == 1 for found in by_charge.values()) and len(by_charge) == 6
    assert ReceiptCounter.objects.get(seller="T13-").last_number == 6


# --- emails --------------------------------------------------------------------------------------------------------
@pytest.mark.django_db(transaction=True)
def test_receipt_email_has_text_html_and_the_pdf(payments_world):
    w = payments_world
    mail.outbox.clear()
    team_email_send_now(team_id=w["team"].pk, template="receipt",
                        context={"payment_intent": w["pack"].stripe_data["payment_intent"]})
    (message,) = mail.outbox
    assert message.to == [w["team"].billing_email]
    assert message.subject == "Receipt T13-000001 for your payment of $9.00"
    assert "Hello O'Brien & Co," in message.body and "http://testserver/billing/payments/" in message.body
    assert f"http://testserver/billing/payments/{w['pack'].id}/receipt.pdf" in message.body
    assert "\n\n\n" not in message.body
    (html, mimetype), = message.alternatives
    assert mimetype == "text/html" and 'href="http://testserver/billing/payments/"' in html
    assert "O&#x27;Brien &amp; Co" in html  # escaped in HTML, plain in the text part
    (name, data, attachment_type), = message.attachments
    assert (name, attachment_type) == ("receipt-T13-000001.pdf", "application/pdf")
    assert "$9.00" in pdf_text(data)


@pytest.mark.django_db(transaction=True)
def test_receipt_email_in_portuguese_has_an_unescaped_subject(bo_stripe, receipt_settings):
    team, owner = make_team_with_owner(name="Café d'Ouro")
    owner.language = "pt-br"
    owner.save(update_fields=["language"])
    charge = make_payment(make_customer(team).id, amount_minor=19900, currency="brl")
    mail.outbox.clear()
    team_email_send_now(team_id=team.pk, template="receipt", context={"charge": charge.id})
    (message,) = mail.outbox
    assert message.subject == "Recibo T13-000001 do seu pagamento de R$ 199,00"
    assert "Olá, Café d'Ouro," in message.body and "&#x27;" not in message.body
    assert "Recibo T13-000001" in pdf_text(message.attachments[0][1])


@pytest.mark.django_db(transaction=True)
def test_charge_refunded_event_emails_the_refund_receipt(payments_world, django_capture_on_commit_callbacks):
    from billing.webhooks.registry import handlers_for

    w = payments_world
    (event,) = stripe_events({"charge.refunded"})
    mail.outbox.clear()
    with django_capture_on_commit_callbacks(execute=True):
        for handler in handlers_for("charge.refunded"):
            handler(event=event)
    (message,) = mail.outbox
    assert message.subject == "Refund of $25.00 issued"
    assert "T13-000002" in message.body  # the payment's receipt is 1, the refund's 2
    assert message.alternatives[0][1] == "text/html"
    (name, data, _type), = message.attachments
    assert name == "receipt-T13-000002.pdf" and "Refund receipt T13-000002" in pdf_text(data)


def test_refunds_new_in_event_uses_previous_attributes_or_the_amount():
    charge = {"refunds": {"data": [{"id": "re_2", "status": "succeeded", "amount": 300, "created": 2},
                                   {"id": "re_1", "status": "succeeded", "amount": 200, "created": 1},
                                   {"id": "re_0", "status": "failed", "amount": 999, "created": 3}]}}
    assert refunds_new_in_event(charge=charge, previous={"refunds": {"data": [{"id": "re_1"}]}},
                                refunded_now=300) == ["re_2"]
    assert refunds_new_in_event(charge=charge, previous={}, refunded_now=300) == ["re_2"]
    assert refunds_new_in_event(charge=charge, previous={}, refunded_now=500) == ["re_2", "re_1"]


@pytest.mark.django_db(transaction=True)
def test_invoice_paid_event_emails_the_subscription_receipt_with_the_invoice_lines(
        payments_world, django_capture_on_commit_callbacks):
    from billing.webhooks.registry import handlers_for

    w = payments_world
    (event,) = [e for e in stripe_events({"invoice.paid"}) if e["data"]["object"]["id"] == w["invoice"].id]
    mail.outbox.clear()
    with django_capture_on_commit_callbacks(execute=True):
        for handler in handlers_for("invoice.paid"):
            handler(event=event)
    (message,) = mail.outbox
    assert message.subject == "Receipt T13-000001 for your payment of $99.00"
    text = pdf_text(message.attachments[0][1])
    assert w["invoice"].stripe_data["number"] in text and "Subscription" in text
    assert Receipt.objects.get().stripe_charge_id == w["invoice_charge_id"]


# --- kinds come from the invoice link, not from descriptions ----------------------------------------------------------
@pytest.mark.django_db(transaction=True)
def test_a_misleading_description_does_not_make_a_payment_a_subscription_payment(bo_stripe, receipt_settings):
    from billing.stripe_gateway.refunds import payment_intent_create_confirmed

    team, _owner = make_team_with_owner(name="Words Inc")
    customer = make_customer(team)
    # A one-time payment described in Stripe's own words for invoice payments.
    pi = payment_intent_create_confirmed(customer_id=customer.id, amount_minor=1234, currency="usd",
                                         payment_method="pm_card_visa", idempotency_key="misleading:1",
                                         description="Subscription update")
    mirror_store(kind="payment_intent", data={**pi, "latest_charge": pi["latest_charge"]["id"]})
    lookalike = mirror_store(kind="charge", data=pi["latest_charge"])
    # A subscription invoice's payment, its charge re-described, with no invoice link in the mirror yet.
    _subscription, invoice = make_subscription(customer.id, trial_days=None)
    invoice_charge = next(c for c in bo_stripe.store.all("charge") if c["customer"] == customer.id
                          and c["id"] != lookalike.id)
    mirror_store(kind="charge", data={**invoice_charge, "description": "Credit top-up"})
    kinds = {row.id: row.kind for row in selectors.team_payments(team=team)}
    assert kinds == {lookalike.id: "one_time", invoice_charge["id"]: "one_time"}  # no link known yet
    apply_invoice_payment_events()  # invoice_payment.paid names the invoice the intent paid
    rows = {row.id: row for row in selectors.team_payments(team=team)}
    assert rows[lookalike.id].kind == "one_time" and rows[lookalike.id].description == "Subscription update"
    assert rows[invoice_charge["id"]].kind == "subscription"
    assert rows[invoice_charge["id"]].invoice_id == invoice.id and rows[invoice_charge["id"]].invoice_number
    assert {row.id for row in selectors.team_payments(team=team, kind="subscription")} == {invoice_charge["id"]}


@pytest.mark.django_db(transaction=True)
def test_receipt_of_a_payment_without_a_recorded_link_asks_stripe_which_invoice_it_paid(bo_stripe, receipt_settings):
    from billing.models import InvoicePaymentLink

    team, _owner = make_team_with_owner(name="Late Events Inc")
    customer = make_customer(team)
    _subscription, invoice = make_subscription(customer.id, trial_days=None)
    charge = next(c for c in bo_stripe.store.all("charge") if c["customer"] == customer.id)
    mirror_store(kind="charge", data=charge)
    receipt = receipt_for_charge_get_or_create(team=team, payment_id=charge["id"])
    assert invoice.stripe_data["number"] in pdf_text(bytes(receipt.pdf))
    assert InvoicePaymentLink.objects.get(payment_intent_id=charge["payment_intent"]).invoice_id == invoice.id
    assert selectors.team_payment(team=team, payment_id=charge["id"]).kind == "subscription"
