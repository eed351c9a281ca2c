"""State file: survives a restart, and never holds a card number or CVC."""
from __future__ import annotations

import json
from pathlib import Path

import pytest
import stripe

from stripe_emulator.testing import start_emulator

from .conftest import make_client


def test_state_survives_restart_without_card_numbers(tmp_path: Path) -> None:
    state = tmp_path / "stripe-state.json"
    with start_emulator(state_file=str(state)) as emu:
        client = make_client(emu)
        cus = client.v1.customers.create(params={"email": "persist@example.com", "metadata": {"team_id": "9"}})
        pm = client.v1.payment_methods.create(params={"type": "card", "card": {
            "number": "4000000000000259", "exp_month": 4, "exp_year": 2031, "cvc": "918"}},
            options={"idempotency_key": "pm-create-with-card-number"})
        client.v1.payment_methods.attach(pm.id, params={"customer": cus.id})
        pi = client.v1.payment_intents.create(params={"amount": 1000, "currency": "usd", "customer": cus.id,
                                                     "payment_method": pm.id, "confirm": True},
                                              options={"idempotency_key": "persisted-key"})
        ep = client.v1.webhook_endpoints.create(params={"url": "http://127.0.0.1:9/x", "enabled_events": ["charge.failed"]})
    text = state.read_text()
    assert "4000000000000259" not in text and '"cvc"' not in text and '"number"' not in text
    assert '"918"' not in text  # the CVC is not kept as any value
    assert json.loads(text)["objects"][cus.id]["email"] == "persist@example.com"

    with start_emulator(state_file=str(state)) as emu:
        client = make_client(emu)
        assert client.v1.customers.retrieve(cus.id).metadata["team_id"] == "9"
        assert client.v1.customers.search(params={"query": "metadata['team_id']:'9'"}).data[0].id == cus.id
        got = client.v1.payment_methods.retrieve(pm.id)
        assert (got.card.last4, got.customer) == ("0259", cus.id)
        # the test card's behaviour survived: it is still a dispute card
        assert client.v1.disputes.list(params={"payment_intent": pi.id}).data[0].charge == pi.latest_charge
        again = client.v1.payment_intents.create(params={"amount": 1000, "currency": "usd", "customer": cus.id,
                                                        "payment_method": pm.id, "confirm": True},
                                                 options={"idempotency_key": "persisted-key"})
        assert again.id == pi.id  # idempotency keys persist too
        assert client.v1.webhook_endpoints.retrieve(ep.id).url == "http://127.0.0.1:9/x"
        new = client.v1.customers.create()
        assert [c.id for c in client.v1.customers.list(params={"limit": 2}).data] == [new.id, cus.id]


def test_missing_state_file_starts_empty(tmp_path: Path) -> None:
    with start_emulator(state_file=str(tmp_path / "none.json")) as emu:
        assert make_client(emu).v1.customers.list().data == []
    assert (tmp_path / "none.json").exists()


def test_concurrent_creates_are_all_kept(tmp_path: Path) -> None:
    import threading

    with start_emulator() as emu:
        client = make_client(emu)
        errors: list[BaseException] = []

        def work() -> None:
            try:
                c = stripe.StripeClient("sk_test_threads", base_addresses={"api": emu.url}, max_network_retries=0)
                for _ in range(20):
                    c.v1.customers.create(params={"metadata": {"batch": "threads"}})
            except BaseException as exc:  # pragma: no cover - reported below
                errors.append(exc)

        threads = [threading.Thread(target=work) for _ in range(6)]
        for t in threads:
            t.start()
        for t in threads:
            t.join()
        assert errors == []
        ids = [c.id for c in client.v1.customers.list(params={"limit": 100}).auto_paging_iter()]
        assert len(ids) == len(set(ids)) == 120


@pytest.mark.parametrize("path", ["/v1/customers"])
def test_keep_alive_connection_reused(path: str) -> None:
    import http.client

    with start_emulator() as emu:
        conn = http.client.HTTPConnection("127.0.0.1", emu.port, timeout=5)
        for _ in range(3):
            conn.request("POST", path, body="email=k%40example.com",
                         headers={"Authorization": "Bearer sk_test_ka", "Content-Type": "application/x-www-form-urlencoded"})
            resp = conn.getresponse()
            assert resp.status == 200 and json.loads(resp.read())["email"] == "k@example.com"
        conn.close()


def test_stopped_emulator_stops_answering_keep_alive_clients() -> None:
    emu = start_emulator()
    client = make_client(emu)
    client.v1.customers.create()  # opens a pooled keep-alive connection
    emu.stop()
    with pytest.raises(stripe.APIConnectionError):
        client.v1.customers.create()
