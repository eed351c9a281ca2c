"""Cross-cutting API behaviour: idempotency, pagination, expansion, search, auth, headers, bad input, faults."""
from __future__ import annotations

import json
from typing import Any

import pytest
import stripe

from .conftest import API_KEY, http, make_client


# ------------------------------------------------------------------ idempotency

def test_idempotent_replay_returns_first_response(client: stripe.StripeClient, emulator: Any) -> None:
    opts = {"idempotency_key": "cus-create-replay-1"}
    first = client.v1.customers.create(params={"email": "idem@example.com"}, options=opts)
    again = client.v1.customers.create(params={"email": "idem@example.com"}, options=opts)
    assert again.id == first.id
    assert again.last_response.headers.get("idempotent-replayed") == "true"
    assert first.last_response.headers.get("idempotent-replayed") is None
    matches = client.v1.customers.list(params={"email": "idem@example.com", "limit": 100}).data
    assert [c.id for c in matches] == [first.id]


def test_idempotent_replay_of_a_decline_does_not_charge_again(client: stripe.StripeClient) -> None:
    opts = {"idempotency_key": "pi-decline-replay"}
    body = {"amount": 1000, "currency": "usd", "payment_method": "pm_card_chargeDeclined", "confirm": True}
    with pytest.raises(stripe.CardError) as first:
        client.v1.payment_intents.create(params=body, options=opts)
    with pytest.raises(stripe.CardError) as second:
        client.v1.payment_intents.create(params=body, options=opts)
    assert first.value.error.payment_intent.id == second.value.error.payment_intent.id


def test_same_key_other_params_is_idempotency_error(client: stripe.StripeClient) -> None:
    opts = {"idempotency_key": "refund-key-reused"}
    client.v1.customers.create(params={"email": "a@example.com"}, options=opts)
    with pytest.raises(stripe.IdempotencyError) as exc:
        client.v1.customers.create(params={"email": "b@example.com"}, options=opts)
    assert exc.value.http_status == 400
    assert "refund-key-reused" in exc.value.user_message


def test_validation_errors_are_not_stored_under_the_key(client: stripe.StripeClient) -> None:
    opts = {"idempotency_key": "fix-and-retry"}
    with pytest.raises(stripe.InvalidRequestError):
        client.raw_request("post", "/v1/customers", email="x@example.com", bogus="1", options=opts)  # type: ignore[arg-type]
    cus = client.v1.customers.create(params={"email": "x@example.com"}, options=opts)
    assert cus.id.startswith("cus_")


# ------------------------------------------------------------------ pagination

def test_pagination_both_directions(fresh_client: stripe.StripeClient) -> None:
    created = [fresh_client.v1.customers.create(params={"name": f"c{i}"}).id for i in range(25)]
    newest_first = list(reversed(created))
    page1 = fresh_client.v1.customers.list(params={"limit": 10})
    assert [c.id for c in page1.data] == newest_first[:10] and page1.has_more and page1.url == "/v1/customers"
    page2 = fresh_client.v1.customers.list(params={"limit": 10, "starting_after": page1.data[-1].id})
    page3 = fresh_client.v1.customers.list(params={"limit": 10, "starting_after": page2.data[-1].id})
    assert [c.id for c in page2.data] == newest_first[10:20] and page2.has_more
    assert [c.id for c in page3.data] == newest_first[20:] and not page3.has_more
    back = fresh_client.v1.customers.list(params={"limit": 10, "ending_before": page3.data[0].id})
    assert [c.id for c in back.data] == newest_first[10:20] and back.has_more
    first = fresh_client.v1.customers.list(params={"limit": 10, "ending_before": page2.data[0].id})
    assert [c.id for c in first.data] == newest_first[:10] and not first.has_more
    assert [c.id for c in fresh_client.v1.customers.list(params={"limit": 7}).auto_paging_iter()] == newest_first
    assert len(fresh_client.v1.customers.list().data) == 10
    with pytest.raises(stripe.InvalidRequestError) as exc:
        fresh_client.v1.customers.list(params={"limit": 101})
    assert exc.value.param == "limit"
    with pytest.raises(stripe.InvalidRequestError) as exc:
        fresh_client.v1.customers.list(params={"starting_after": "cus_missing"})
    assert exc.value.code == "resource_missing"


# ------------------------------------------------------------------ expansion

def test_expand_nested_and_on_lists(client: stripe.StripeClient) -> None:
    cus = client.v1.customers.create(params={"email": "expand@example.com"})
    pi = client.v1.payment_intents.create(params={"amount": 1200, "currency": "usd", "customer": cus.id,
                                                  "payment_method": "pm_card_visa", "confirm": True})
    assert isinstance(pi.latest_charge, str)
    got = client.v1.payment_intents.retrieve(pi.id, params={"expand": ["latest_charge.balance_transaction", "customer", "payment_method"]})
    assert got.latest_charge.balance_transaction.amount == 1200
    assert got.customer.email == "expand@example.com" and got.payment_method.card.last4 == "4242"
    listed = client.v1.payment_intents.list(params={"customer": cus.id, "expand": ["data.customer", "data.latest_charge"]})
    assert listed.data[0].customer.id == cus.id and listed.data[0].latest_charge.id == pi.latest_charge
    # the stored object is untouched by expansion
    assert isinstance(client.v1.payment_intents.retrieve(pi.id).customer, str)
    with pytest.raises(stripe.InvalidRequestError) as exc:
        client.v1.payment_intents.retrieve(pi.id, params={"expand": ["amount"]})
    assert exc.value.param == "expand" and "cannot be expanded (amount)" in exc.value.user_message
    with pytest.raises(stripe.InvalidRequestError) as exc:
        client.v1.payment_intents.list(params={"expand": ["customer"]})
    assert "data.customer" in exc.value.user_message


# ------------------------------------------------------------------ search

def test_search_query_syntax(fresh_client: stripe.StripeClient) -> None:
    c = fresh_client
    a = c.v1.customers.create(params={"email": "ann@example.com", "name": "Ann", "metadata": {"team_id": "42"}})
    b = c.v1.customers.create(params={"email": "bob@example.com", "name": "Bob", "metadata": {"team_id": "42"}})
    c.v1.customers.create(params={"email": "cid@example.com", "metadata": {"team_id": "7"}})
    res = c.v1.customers.search(params={"query": "metadata['team_id']:'42'"})
    assert res.object == "search_result" and {x.id for x in res.data} == {a.id, b.id} and res.next_page is None
    res = c.v1.customers.search(params={"query": 'metadata["team_id"]:"42" AND -email:"ann@example.com"'})
    assert [x.id for x in res.data] == [b.id]
    res = c.v1.customers.search(params={"query": "metadata['team_id']:'42' AND email:'bob@example.com'"})
    assert [x.id for x in res.data] == [b.id]
    res = c.v1.customers.search(params={"query": "email:'ann@example.com' OR email:'bob@example.com'"})
    assert {x.id for x in res.data} == {a.id, b.id}
    res = c.v1.customers.search(params={"query": "metadata['team_id']:'42'", "limit": 1})
    assert res.has_more and res.next_page
    res2 = c.v1.customers.search(params={"query": "metadata['team_id']:'42'", "limit": 1, "page": res.next_page})
    assert not res2.has_more and res2.data[0].id != res.data[0].id
    with pytest.raises(stripe.InvalidRequestError):
        c.v1.customers.search(params={"query": "email:'a' AND name:'b' OR name:'c'"})
    with pytest.raises(stripe.InvalidRequestError):
        c.v1.customers.search(params={"query": "status:'active'"})  # not a customer search field
    pi = c.v1.payment_intents.create(params={"amount": 1000, "currency": "usd", "customer": a.id,
                                             "payment_method": "pm_card_visa", "confirm": True})
    c.v1.payment_intents.create(params={"amount": 1000, "currency": "usd", "customer": b.id})
    res = c.v1.payment_intents.search(params={"query": f"status:'succeeded' AND customer:'{a.id}'"})
    assert [x.id for x in res.data] == [pi.id]


# ------------------------------------------------------------------ auth, headers, bad input

def test_request_id_and_version_headers(client: stripe.StripeClient) -> None:
    cus = client.v1.customers.create()
    assert cus.last_response.request_id.startswith("req_")
    assert cus.last_response.headers["stripe-version"] == stripe.api_version
    assert cus.livemode is False
    with pytest.raises(stripe.InvalidRequestError) as exc:
        client.v1.customers.retrieve("cus_unknown")
    assert exc.value.request_id.startswith("req_")
    assert (exc.value.http_status, exc.value.code, exc.value.param) == (404, "resource_missing", "id")
    assert exc.value.user_message == "No such customer: 'cus_unknown'"


def test_auth_errors(emulator: Any) -> None:
    bad = make_client(emulator, api_key="pk_test_publishable")
    with pytest.raises(stripe.AuthenticationError) as exc:
        bad.v1.customers.list()
    assert exc.value.http_status == 401 and "Invalid API Key provided" in exc.value.user_message
    status, headers, body = http("GET", emulator.url + "/v1/customers")
    assert status == 401 and headers["request-id"].startswith("req_")
    assert "You did not provide an API key" in json.loads(body)["error"]["message"]
    status, _, _ = http("GET", emulator.url + "/v1/customers", headers={"Authorization": "Bearer rk_test_restricted"})
    assert status == 200


def test_malformed_bodies(emulator: Any) -> None:
    auth = {"Authorization": f"Bearer {API_KEY}", "Content-Type": "application/x-www-form-urlencoded"}
    status, headers, body = http("POST", emulator.url + "/v1/customers", data=b"email=\xff\xfe", headers=auth)
    assert status == 400 and json.loads(body)["error"]["type"] == "invalid_request_error"
    assert headers["request-id"].startswith("req_")
    status, _, body = http("POST", emulator.url + "/v1/customers", data=b"metadata=x&metadata[a]=b", headers=auth)
    assert status == 400
    status, _, body = http("POST", emulator.url + "/v1/customers", data=b'{"email": "a@b.c"}',
                           headers={**auth, "Content-Type": "application/json"})
    assert status == 400
    status, _, body = http("GET", emulator.url + "/v1/nothing_here", headers=auth)
    assert status == 404 and "Unrecognized request URL" in json.loads(body)["error"]["message"]
    status, _, body = http("PUT", emulator.url + "/v1/customers", data=b"", headers=auth)
    assert status == 404 and "does not accept PUT" in json.loads(body)["error"]["message"]


def test_metadata_unset_semantics(client: stripe.StripeClient) -> None:
    cus = client.v1.customers.create(params={"metadata": {"a": "1", "b": "2"}})
    cus = client.v1.customers.update(cus.id, params={"metadata": {"a": ""}})
    assert cus.metadata.to_dict() == {"b": "2"}
    cus = client.v1.customers.update(cus.id, params={"metadata": ""})
    assert cus.metadata.to_dict() == {}


def test_customer_delete_and_events(client: stripe.StripeClient) -> None:
    cus = client.v1.customers.create(params={"email": "gone@example.com"})
    client.v1.customers.update(cus.id, params={"name": "Gone"})
    deleted = client.v1.customers.delete(cus.id)
    assert deleted.deleted is True
    assert client.v1.customers.retrieve(cus.id).deleted is True
    types = [e.type for e in client.v1.events.list(params={"limit": 20}).data if e.data.object.id == cus.id]
    assert types == ["customer.deleted", "customer.updated", "customer.created"]
    upd = next(e for e in client.v1.events.list(params={"type": "customer.updated", "limit": 20}).data if e.data.object.id == cus.id)
    assert upd.data.previous_attributes.to_dict() == {"name": None}
    assert upd["request"]["id"].startswith("req_")
    with pytest.raises(stripe.InvalidRequestError):
        client.v1.customers.update(cus.id, params={"name": "again"})


def test_events_filters(client: stripe.StripeClient) -> None:
    client.v1.products.create(params={"name": "Filter me"})
    evs = client.v1.events.list(params={"types": ["product.created", "customer.created"], "limit": 50}).data
    assert evs and {e.type for e in evs} <= {"product.created", "customer.created"}
    assert all(e.type.startswith("product.") for e in client.v1.events.list(params={"type": "product.*"}).data)
    newest = evs[0]
    assert client.v1.events.retrieve(newest.id).id == newest.id
    assert all(e.created >= newest.created for e in client.v1.events.list(params={"created": {"gte": newest.created}}).data)


# ------------------------------------------------------------------ control API: faults and request log

def test_injected_faults_and_request_log(fresh_emulator: Any, fresh_client: stripe.StripeClient) -> None:
    emu = fresh_emulator
    emu.control("POST", "/_emulator/faults", {"path_prefix": "/v1/customers", "method": "POST", "status": 503, "count": 1})
    with pytest.raises(stripe.APIError) as exc:
        fresh_client.v1.customers.create()
    assert exc.value.http_status == 503
    assert fresh_client.v1.customers.create().id.startswith("cus_")
    emu.control("POST", "/_emulator/faults", {"path_prefix": "/v1/customers", "mode": "drop", "count": 1})
    with pytest.raises(stripe.APIConnectionError):
        fresh_client.v1.customers.create()
    fresh_client.v1.products.create(params={"name": "p"})
    log = emu.control("GET", "/_emulator/requests?path_prefix=/v1/customers")
    assert [r["status"] for r in log["data"]] == [503, 200, 0]
    assert all(r["request_id"].startswith("req_") for r in log["data"])
    emu.control("DELETE", "/_emulator/requests")
    assert emu.control("GET", "/_emulator/requests")["count"] == 0
    # SDK retries recover from an injected 500 with the same idempotency key: one customer is created.
    emu.control("POST", "/_emulator/faults", {"path_prefix": "/v1/customers", "method": "POST", "status": 500, "count": 1})
    retrying = stripe.StripeClient(API_KEY, base_addresses={"api": emu.url}, max_network_retries=2)
    before = len(fresh_client.v1.customers.list(params={"limit": 100}).data)
    retrying.v1.customers.create(params={"email": "retry@example.com"})
    assert len(fresh_client.v1.customers.list(params={"limit": 100}).data) == before + 1
    keys = {r["idempotency_key"] for r in emu.control("GET", "/_emulator/requests?path_prefix=/v1/customers&method=POST")["data"]}
    assert len(keys) == 1


def test_reset_wipes_state(fresh_emulator: Any, fresh_client: stripe.StripeClient) -> None:
    cus = fresh_client.v1.customers.create()
    fresh_emulator.control("POST", "/_emulator/reset")
    with pytest.raises(stripe.InvalidRequestError):
        fresh_client.v1.customers.retrieve(cus.id)
    assert fresh_client.v1.events.list().data == []


def test_triggers_create_objects_and_events(fresh_emulator: Any, fresh_client: stripe.StripeClient) -> None:
    out = fresh_emulator.control("POST", "/_emulator/trigger", {"type": "charge.refunded"})
    assert [e["type"] for e in out["events"]] == ["payment_intent.created", "charge.succeeded", "payment_intent.succeeded",
                                                  "charge.refunded", "refund.created"]
    assert fresh_client.v1.charges.retrieve(out["objects"]["charge"]).refunded is True
    for name, last in [("payment_intent.succeeded", "payment_intent.succeeded"),
                       ("payment_intent.payment_failed", "payment_intent.payment_failed"),
                       ("charge.dispute.created", "charge.updated"),
                       ("customer.created", "customer.created"),
                       ("customer.deleted", "customer.deleted")]:
        out = fresh_emulator.control("POST", "/_emulator/trigger", {"type": name})
        types = [e["type"] for e in out["events"]]
        assert name in types and types[-1] == last
    status, _, body = http("POST", fresh_emulator.url + "/_emulator/trigger", data=b"type=nope.nope")
    assert status == 400


# ------------------------------------------------------------------ time-based retention

def test_events_older_than_30_days_are_gone(fresh_emulator: Any, fresh_client: stripe.StripeClient) -> None:
    old = fresh_client.v1.customers.create()
    old_event = fresh_client.v1.events.list().data[0]
    fresh_emulator.control("POST", "/_emulator/clock", {"advance": 29 * 86400})
    assert fresh_client.v1.events.retrieve(old_event.id).id == old_event.id
    fresh_emulator.control("POST", "/_emulator/clock", {"advance": 2 * 86400})
    new = fresh_client.v1.customers.create()
    assert new.created - old.created >= 31 * 86400
    assert [e.data.object.id for e in fresh_client.v1.events.list().data] == [new.id]
    with pytest.raises(stripe.InvalidRequestError) as exc:
        fresh_client.v1.events.retrieve(old_event.id)
    assert exc.value.http_status == 404
    status, _, _ = http("POST", fresh_emulator.url + "/_emulator/clock", data=b"advance=-5")
    assert status == 400


def test_idempotency_keys_expire_after_24_hours(fresh_emulator: Any, fresh_client: stripe.StripeClient) -> None:
    opts = {"idempotency_key": "day-old-key"}
    first = fresh_client.v1.customers.create(params={"email": "day@example.com"}, options=opts)
    fresh_emulator.control("POST", "/_emulator/clock", {"advance": 23 * 3600})
    assert fresh_client.v1.customers.create(params={"email": "day@example.com"}, options=opts).id == first.id
    fresh_emulator.control("POST", "/_emulator/clock", {"advance": 3600 + 1})
    assert fresh_client.v1.customers.create(params={"email": "day@example.com"}, options=opts).id != first.id
