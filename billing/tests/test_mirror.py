"""The one writer into dj-stripe's mirror: gateway answers stored as they are, embedded lists complete."""
import pytest

from billing.services.mirror import mirror_refresh, mirror_store
from billing.stripe_gateway._core import client, write_options

from .conftest import emulator_requests


@pytest.mark.django_db
def test_an_invoice_with_more_lines_than_stripe_embeds_is_mirrored_with_all_of_them(stripe_emulator, team):
    from djstripe.models import Customer, Invoice, LineItem

    from billing.services import customer_get_or_create

    customer_id = customer_get_or_create(team=team)
    sdk = client().v1
    for n in range(12):  # Stripe (and the emulator) embed the first 10 lines only
        sdk.invoice_items.create(params={"customer": customer_id, "amount": 100 + n, "currency": "usd",
                                         "description": f"line {n}"}, options=write_options(f"test_item:{n}"))
    invoice = sdk.invoices.create(params={"customer": customer_id, "pending_invoice_items_behavior": "include"},
                                  options=write_options("test_invoice"))
    assert len(invoice.lines.data) == 10 and invoice.lines.has_more

    mirrored = mirror_refresh(kind="invoice", object_id=invoice.id)

    assert isinstance(mirrored, Invoice)
    lines = LineItem.objects.filter(stripe_data__invoice=invoice.id)
    assert sorted(line.stripe_data["amount"] for line in lines) == [100 + n for n in range(12)]
    # The two missing lines came from one page of the invoice's own list, through the gateway.
    assert len(emulator_requests(stripe_emulator, "GET", f"/v1/invoices/{invoice.id}/lines")) == 1
    assert Customer.objects.get(id=customer_id).subscriber_id == team.pk


@pytest.mark.django_db
def test_a_price_with_a_decimal_amount_is_stored_as_the_strings_stripe_sent(stripe_emulator):
    from djstripe.models import Price

    from billing.stripe_gateway.products import price_retrieve

    sdk = client().v1
    product = sdk.products.create(params={"name": "Overage"}, options=write_options("test_product"))
    created = sdk.prices.create(params={
        "product": product.id, "currency": "usd", "unit_amount_decimal": "0.2", "recurring": {"interval": "month"},
    }, options=write_options("test_price"))

    price = price_retrieve(price_id=created.id)  # the gateway's dict: JSON-safe, no Decimal left
    assert price["unit_amount_decimal"] == "0.2"
    mirror_store(kind="price", data=price)
    assert Price.objects.get(id=created.id).stripe_data["unit_amount_decimal"] == "0.2"


@pytest.mark.django_db
def test_an_object_of_another_kind_is_refused(stripe_emulator):
    with pytest.raises(ValueError):
        mirror_store(kind="charge", data={"id": "re_1", "object": "refund"})
