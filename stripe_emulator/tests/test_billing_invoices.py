"""Invoices and invoice items: lifecycle, pay errors, hosted page, a real PDF, and metered usage billing."""
from __future__ import annotations

import re
import time
import zlib
from typing import Any

import pytest
import stripe

from .conftest import http
from .shape_makers_billing import _customer_with_card

T0 = 1_800_000_000
DAY = 86400


def _open_invoice(client: stripe.StripeClient, amount: int = 4200) -> tuple[Any, Any]:
    cus = _customer_with_card(client)
    client.v1.invoice_items.create(params={"customer": cus.id, "amount": amount, "currency": "usd",
                                           "description": "Consulting – 2 h"})
    inv = client.v1.invoices.create(params={"customer": cus.id, "pending_invoice_items_behavior": "include",
                                            "metadata": {"order": "A-1"}})
    return cus, inv


def test_manual_invoice_lifecycle_draft_open_paid(client: stripe.StripeClient) -> None:
    cus, inv = _open_invoice(client)
    assert (inv.status, inv.total, inv.number, inv.hosted_invoice_url) == ("draft", 4200, None, None)
    assert inv.lines.data[0].parent.type == "invoice_item_details"
    inv = client.v1.invoices.finalize_invoice(inv.id)
    assert inv.status == "open" and re.fullmatch(r"[A-Z0-9]{8}-\d{4}", inv.number)
    assert inv.hosted_invoice_url and inv.invoice_pdf and inv.amount_due == 4200
    with pytest.raises(stripe.InvalidRequestError):
        client.v1.invoices.finalize_invoice(inv.id)
    paid = client.v1.invoices.pay(inv.id)
    assert (paid.status, paid.amount_paid, paid.amount_remaining, paid.attempt_count) == ("paid", 4200, 0, 1)
    payments = client.v1.invoice_payments.list(params={"invoice": inv.id}).data
    assert [(p.status, p.amount_paid) for p in payments] == [("paid", 4200)]
    pi = client.v1.payment_intents.retrieve(payments[0].payment.payment_intent)
    assert (pi.amount, pi.status, pi.customer) == (4200, "succeeded", cus.id)
    with pytest.raises(stripe.InvalidRequestError) as exc:
        client.v1.invoices.pay(inv.id)
    assert exc.value.user_message == "Invoice is already paid."
    types = [e.type for e in client.v1.events.list(params={"limit": 40}).data
             if e.data.object.to_dict().get("id") == inv.id]
    assert list(reversed(types)) == ["invoice.created", "invoice.finalized", "invoice.paid", "invoice.payment_succeeded"]


def test_paying_a_void_invoice_is_refused_and_changes_nothing(client: stripe.StripeClient) -> None:
    _, inv = _open_invoice(client)
    client.v1.invoices.finalize_invoice(inv.id)
    voided = client.v1.invoices.void_invoice(inv.id)
    assert voided.status == "void" and voided.status_transitions.voided_at
    with pytest.raises(stripe.InvalidRequestError) as exc:
        client.v1.invoices.pay(inv.id)
    assert exc.value.http_status == 400 and exc.value.user_message == "Voided invoices cannot be paid."
    after = client.v1.invoices.retrieve(inv.id)
    assert (after.status, after.amount_paid, after.attempt_count) == ("void", 0, 0)
    with pytest.raises(stripe.InvalidRequestError):
        client.v1.invoices.void_invoice(inv.id)


def test_declined_invoice_payment_and_uncollectible(client: stripe.StripeClient) -> None:
    cus, inv = _open_invoice(client, 1000)
    client.v1.invoices.finalize_invoice(inv.id)
    with pytest.raises(stripe.CardError) as exc:
        client.v1.invoices.pay(inv.id, params={"payment_method": "pm_card_chargeDeclinedInsufficientFunds"})
    assert (exc.value.code, exc.value.error.decline_code) == ("card_declined", "insufficient_funds")
    inv = client.v1.invoices.retrieve(inv.id)
    assert (inv.status, inv.attempt_count, inv.attempted) == ("open", 1, True)
    inv = client.v1.invoices.mark_uncollectible(inv.id)
    assert inv.status == "uncollectible"
    paid = client.v1.invoices.pay(inv.id, params={"paid_out_of_band": True})
    assert (paid.status, paid.amount_paid) == ("paid", 1000)


def test_draft_only_operations(client: stripe.StripeClient) -> None:
    cus, inv = _open_invoice(client, 700)
    ii = client.v1.invoice_items.create(params={"customer": cus.id, "invoice": inv.id, "amount": 300, "currency": "usd"})
    assert client.v1.invoices.retrieve(inv.id).total == 1000
    client.v1.invoice_items.delete(ii.id)
    assert client.v1.invoices.retrieve(inv.id).total == 700
    client.v1.invoices.finalize_invoice(inv.id)
    with pytest.raises(stripe.InvalidRequestError) as exc:
        client.v1.invoice_items.create(params={"customer": cus.id, "invoice": inv.id, "amount": 1, "currency": "usd"})
    assert exc.value.code == "invoice_not_editable"
    with pytest.raises(stripe.InvalidRequestError):
        client.v1.invoices.delete(inv.id)
    draft = client.v1.invoices.create(params={"customer": cus.id})
    assert client.v1.invoices.delete(draft.id).deleted is True


def _parse_pdf(data: bytes) -> str:
    """Check the PDF's structure like a viewer would and return the text drawn on its pages."""
    assert data.startswith(b"%PDF-1.")
    assert data.rstrip().endswith(b"%%EOF")
    startxref = int(re.search(rb"startxref\s+(\d+)\s+%%EOF", data).group(1))
    assert data[startxref:startxref + 4] == b"xref"
    header = re.match(rb"xref\s+0 (\d+)\s+", data[startxref:])
    count = int(header.group(1))
    table = data[startxref + header.end():]
    offsets = [int(table[i * 20:i * 20 + 10]) for i in range(1, count)]
    for n, off in enumerate(offsets, start=1):
        assert data[off:].startswith(b"%d 0 obj" % n), f"xref entry {n} does not point at its object"
    trailer = data[data.rindex(b"trailer"):]
    assert re.search(rb"/Size %d\b" % count, trailer) and b"/Root" in trailer
    text = []
    for m in re.finditer(rb"stream\n(.*?)\nendstream", data, re.S):
        body = zlib.decompress(m.group(1))
        text += [t.decode("cp1252") for t in re.findall(rb"\((.*?)\) Tj", body)]
    return "\n".join(text)


def test_invoice_pdf_is_a_real_pdf_and_hosted_page_shows_the_invoice(client: stripe.StripeClient) -> None:
    _, inv = _open_invoice(client, 4200)
    inv = client.v1.invoices.pay(inv.id)
    status, headers, body = http("GET", inv.invoice_pdf)
    assert status == 200 and headers["content-type"] == "application/pdf"
    text = _parse_pdf(body)
    assert f"Invoice {inv.number}" in text and "Consulting – 2 h" in text and "$42.00" in text
    status, _, page = http("GET", inv.hosted_invoice_url)
    assert status == 200
    assert inv.number in page.decode() and "Paid" in page.decode() and "$42.00" in page.decode()


def test_metered_usage_is_deduplicated_summarised_and_billed_at_renewal(client: stripe.StripeClient) -> None:
    name = f"api_calls_{time.time_ns()}"
    meter = client.v1.billing.meters.create(params={"display_name": "API calls", "event_name": name,
                                                    "default_aggregation": {"formula": "sum"}})
    assert meter.customer_mapping.event_payload_key == "stripe_customer_id" and meter.status == "active"
    metered = client.v1.prices.create(params={
                         "currency": "usd", "unit_amount": 3, "product_data": {"name": "API calls"},
                         "recurring": {"interval": "month", "usage_type": "metered", "meter": meter.id}})
    clock = client.v1.test_helpers.test_clocks.create(params={"frozen_time": T0})
    cus = client.v1.customers.create(params={"test_clock": clock.id})
    pm = client.v1.payment_methods.attach("pm_card_visa", params={"customer": cus.id})
    client.v1.customers.update(cus.id, params={"invoice_settings": {"default_payment_method": pm.id}})
    sub = client.v1.subscriptions.create(params={"customer": cus.id, "items": [{"price": metered.id}]})
    assert sub.status == "active" and client.v1.invoices.retrieve(sub.latest_invoice).total == 0

    def report(value: str, ident: str, at: int) -> Any:
        return client.v1.billing.meter_events.create(params={
            "event_name": name, "payload": {"stripe_customer_id": cus.id, "value": value},
            "identifier": ident, "timestamp": at})

    client.v1.test_helpers.test_clocks.advance(clock.id, params={"frozen_time": T0 + 120})
    report("100", "evt-1", T0 + 60)
    again = report("100", "evt-1", T0 + 60)  # a retried request: counted once
    assert again.identifier == "evt-1"
    client.v1.test_helpers.test_clocks.advance(clock.id, params={"frozen_time": T0 + DAY + 300})
    report("250", "evt-2", T0 + DAY + 60)
    report("7", "evt-3", T0 + DAY + 120)
    client.v1.billing.meter_event_adjustments.create(params={"event_name": name, "type": "cancel",
                                                             "cancel": {"identifier": "evt-3"}})
    summary = client.v1.billing.meters.event_summaries.list(meter.id, params={
        "customer": cus.id, "start_time": T0, "end_time": T0 + 2 * DAY})
    assert [s.aggregated_value for s in summary.data] == [350]
    daily = client.v1.billing.meters.event_summaries.list(meter.id, params={
        "customer": cus.id, "start_time": T0 - T0 % DAY, "end_time": T0 - T0 % DAY + 2 * DAY,
        "value_grouping_window": "day"})
    assert [s.aggregated_value for s in daily.data] == [250, 100]  # newest window first

    end = sub["items"].data[0].current_period_end
    client.v1.test_helpers.test_clocks.advance(clock.id, params={"frozen_time": end + 2 * 3600})
    inv = client.v1.invoices.retrieve(client.v1.subscriptions.retrieve(sub.id).latest_invoice)
    usage = [ln for ln in inv.lines.data if ln.pricing.price_details.price == metered.id]
    assert [(ln.quantity, ln.amount, ln.period.start, ln.period.end) for ln in usage] == [(350, 1050, T0, end)]
    assert (inv.status, inv.amount_paid) == ("paid", 1050)

    with pytest.raises(stripe.InvalidRequestError) as exc:
        client.v1.billing.meter_events.create(params={"event_name": "no_such_meter_event",
                                                      "payload": {"stripe_customer_id": cus.id, "value": "1"}})
    assert exc.value.param == "event_name"
    client.v1.billing.meters.deactivate(meter.id)
    with pytest.raises(stripe.InvalidRequestError):
        report("1", "evt-4", end + 3 * 3600)


def test_open_invoice_is_paid_from_its_hosted_page(client: stripe.StripeClient) -> None:
    cus = client.v1.customers.create(params={"email": "payer@example.com"})
    client.v1.invoice_items.create(params={"customer": cus.id, "amount": 3300, "currency": "usd"})
    inv = client.v1.invoices.create(params={"customer": cus.id, "collection_method": "send_invoice",
                                            "days_until_due": 30, "pending_invoice_items_behavior": "include"})
    inv = client.v1.invoices.send_invoice(inv.id)
    assert inv.status == "open" and inv.due_date == inv.created + 30 * DAY
    status, _, page = http("GET", inv.hosted_invoice_url)
    assert status == 200 and "id='pay-form'" in page.decode() and "Pay $33.00" in page.decode()
    status, _, page = http("POST", f"{inv.hosted_invoice_url}/pay", b"card_number=4000000000000002")
    assert status == 402 and "Your card was declined." in page.decode()
    assert client.v1.invoices.retrieve(inv.id).status == "open"
    status, headers, _ = http("POST", f"{inv.hosted_invoice_url}/pay", b"card_number=4242424242424242&card_expiry=11/31")
    assert status == 303 and headers["location"] == inv.hosted_invoice_url
    paid = client.v1.invoices.retrieve(inv.id)
    assert (paid.status, paid.amount_paid) == ("paid", 3300)
    status, _, page = http("GET", inv.hosted_invoice_url)
    assert "pay-form" not in page.decode() and "Paid" in page.decode()
