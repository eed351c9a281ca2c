"""billing_setup pushes the catalog once; a second run writes nothing; a changed amount moves the lookup key."""
import dataclasses
from io import StringIO

import pytest
from django.core.management import call_command

from billing.catalog import load_catalog
from billing.services.setup import catalog_push

from .conftest import emulator_requests


@pytest.mark.django_db
def test_setup_twice_writes_nothing_the_second_time(stripe_emulator):
    from djstripe.models import Price, Product, WebhookEndpoint

    out = StringIO()
    call_command("billing_setup", stdout=out)
    assert "Done:" in out.getvalue()
    first_writes = len(emulator_requests(stripe_emulator, "POST"))
    assert first_writes > 0
    assert Product.objects.count() == 5  # pro, team, enterprise, two credit packs
    usd = Price.objects.get(lookup_key="pro_monthly")
    assert usd.unit_amount == 9900 and usd.currency == "usd"
    assert usd.stripe_data["currency_options"]["brl"]["unit_amount"] == 49900
    endpoint = WebhookEndpoint.objects.get()
    assert endpoint.secret.startswith("whsec_") and str(endpoint.djstripe_uuid) in endpoint.url

    stripe_emulator.control("DELETE", "/_emulator/requests")
    report = catalog_push(out=lambda line: None)
    assert report.writes == 0
    assert emulator_requests(stripe_emulator, "POST") == []
    assert WebhookEndpoint.objects.count() == 1


@pytest.mark.django_db
def test_changed_amount_creates_new_price_and_transfers_lookup_key(stripe_emulator):
    catalog_push(out=lambda line: None)
    catalog = load_catalog()
    from billing.stripe_gateway.products import price_list

    old = price_list(lookup_keys=["pro_monthly"])[0]
    pro = catalog.plan("pro")
    new_prices = (dataclasses.replace(pro.prices[0], amounts={"usd": 10900, "brl": 54900}),) + pro.prices[1:]
    changed = dataclasses.replace(
        catalog, plans=tuple(dataclasses.replace(p, prices=new_prices) if p.key == "pro" else p for p in catalog.plans)
    )
    report = catalog_push(catalog=changed, out=lambda line: None)
    # Only the new price: the portal configuration names no price (plan switches happen on our page).
    assert report.writes == 1
    assert any("price pro_monthly: changed" in line for line in report.lines)
    current = price_list(lookup_keys=["pro_monthly"])
    assert len(current) == 1 and current[0]["id"] != old["id"] and current[0]["unit_amount"] == 10900
    from billing.stripe_gateway.products import price_retrieve

    assert price_retrieve(price_id=old["id"])["active"] is False
    assert catalog_push(catalog=changed, out=lambda line: None).writes == 0
