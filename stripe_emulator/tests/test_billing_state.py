"""Billing state (subscriptions, invoices, test clocks, meter ledger, sessions) survives a restart with --state."""
from __future__ import annotations

from pathlib import Path

from stripe_emulator.testing import start_emulator

from .conftest import make_client

T0 = 1_800_000_000


def test_billing_state_survives_a_restart(tmp_path: Path) -> None:
    state = str(tmp_path / "stripe.json")
    emu = start_emulator(state_file=state)
    try:
        client = make_client(emu)
        clock = client.v1.test_helpers.test_clocks.create(params={"frozen_time": T0})
        cus = client.v1.customers.create(params={"test_clock": clock.id})
        pm = client.v1.payment_methods.attach("pm_card_visa", params={"customer": cus.id})
        client.v1.customers.update(cus.id, params={"invoice_settings": {"default_payment_method": pm.id}})
        meter = client.v1.billing.meters.create(params={"display_name": "calls", "event_name": "calls",
                                                        "default_aggregation": {"formula": "sum"}})
        price = client.v1.prices.create(params={"currency": "usd", "unit_amount": 2, "product_data": {"name": "Calls"},
                                                "recurring": {"interval": "month", "usage_type": "metered",
                                                              "meter": meter.id}})
        sub = client.v1.subscriptions.create(params={"customer": cus.id, "items": [{"price": price.id}]})
        client.v1.billing.meter_events.create(params={"event_name": "calls", "identifier": "e1", "timestamp": T0,
                                                      "payload": {"stripe_customer_id": cus.id, "value": "40"}})
        session = client.v1.checkout.sessions.create(params={
            "mode": "subscription", "line_items": [{"price": price.id}], "success_url": "https://x.example"})
    finally:
        emu.stop()

    emu = start_emulator(state_file=state)
    try:
        client = make_client(emu)
        assert client.v1.subscriptions.retrieve(sub.id).status == "active"
        assert client.v1.checkout.sessions.line_items.list(session.id).data[0].price.id == price.id
        # the identifier ledger was kept: a replay still does not count twice
        client.v1.billing.meter_events.create(params={"event_name": "calls", "identifier": "e1", "timestamp": T0,
                                                      "payload": {"stripe_customer_id": cus.id, "value": "40"}})
        end = sub["items"].data[0].current_period_end
        client.v1.test_helpers.test_clocks.advance(clock.id, params={"frozen_time": end + 7200})
        inv = client.v1.invoices.retrieve(client.v1.subscriptions.retrieve(sub.id).latest_invoice)
        assert (inv.status, inv.amount_paid, inv.lines.data[0].quantity) == ("paid", 80, 40)
    finally:
        emu.stop()
