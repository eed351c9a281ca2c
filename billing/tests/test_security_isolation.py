"""
Issue 10, isolation: two teams, each with a Stripe customer, payments, a refund, an invoice, a subscription, a saved
card, a checkout session, API keys and an invitation. The attacker's team, a member removed from the victim's team,
and the victim's revoked and expired keys try every object and list endpoint and page, with the victim's ids and
with the victim's Stripe ids: every attempt is refused (404/403, or 401 for a dead key) and nothing is written,
counted in rows and in the Stripe writes the emulator received.

The keys of removed, lowered and deactivated members are covered in billing_site/tests/test_security_site.py; this module
reuses its list of API calls instead of repeating it.
"""
from datetime import timedelta

import pytest
from django.urls import reverse
from django.utils import timezone
from django.apps import apps
from rest_framework.test import APIClient

from accounts import services as account_services
from accounts.models import APIKey, Invitation, Membership
from accounts.tests.factories import MembershipFactory, make_team_with_owner
from billing_site.tests.test_security_site import API_CALLS, call, key_client
from billing import selectors
from billing.services.checkout import checkout_session_start
from billing.services.mirror import mirror_refresh, mirror_store
from billing.stripe_gateway.customers import payment_method_attach
from billing.stripe_gateway.refunds import refund_create

from .backoffice_fixtures import bo_stripe, emulator_get, make_customer, make_payment, make_subscription  # noqa: F401

pytestmark = pytest.mark.django_db

# `demo/ping/` answers {"ok": true} to anyone signed in: it reads and writes nothing of any team.
TEAMLESS_CALLS = {"api:demo-ping"}

# Sessions (a login, the current team) and django-axes' access log are written by any request; nothing else may be.
UNCOUNTED_TABLES = {"django_session", "axes_accesslog", "axes_accessattempt", "axes_accessfailurelog"}


def row_counts() -> dict[str, int]:
    """Rows of every table of every installed app (billing, accounts, usage, dj-stripe's mirror...)."""
    return {model._meta.label: model.objects.count() for model in apps.get_models()
            if model._meta.db_table not in UNCOUNTED_TABLES and model._meta.managed and not model._meta.proxy}


def stripe_writes(emulator) -> int:
    """Every POST/DELETE the emulator received on Stripe's API (idempotent replays included)."""
    count = 0
    for method in ("POST", "DELETE"):
        count += emulator_get(emulator, f"/_emulator/requests?path_prefix=/v1/&method={method}")["count"]
    return count


def snapshot(emulator) -> dict:
    return {"stripe_writes": stripe_writes(emulator), **row_counts()}


def _team_world(name: str, *, token: str) -> dict:
    team, owner = make_team_with_owner(name=name)
    customer = make_customer(team)
    charge = make_payment(customer.id)
    refund = refund_create(charge_id=charge.id, amount_minor=500, reason="requested_by_customer",
                           idempotency_key=f"isolation:{token}:refund")
    mirror_store(kind="refund", data=refund)
    mirror_refresh(kind="charge", object_id=charge.id)
    subscription, invoice = make_subscription(customer.id, trial_days=None)
    card = payment_method_attach(payment_method_id="pm_card_visa", customer_id=customer.id,
                                 idempotency_key=f"isolation:{token}:card")
    session = checkout_session_start(team=team, user=None, lookup_key="credits_10", currency="usd",
                                     request_token=f"isolation-{token}")
    key = account_services.api_key_create(team=team, name="full", created_by=owner, scope=APIKey.Scope.FULL)
    # Written directly: the free plan has no seat left to invite through the service.
    invitation = Invitation.objects.create(team=team, email=f"guest-{token}@example.com", invited_by=owner,
                                           token_hash=f"{token:0>64}")
    return {"team": team, "owner": owner, "customer": customer.id, "charge": charge.id,
            "payment_intent": charge.payment_intent_id, "refund": refund["id"], "invoice": invoice.id,
            "subscription_item": selectors.subscription_items(subscription)[0]["id"], "card": card["id"],
            "checkout_session": session.id, "key": key, "invitation": invitation}


@pytest.fixture
def world(bo_stripe, billing_world, settings):
    settings.SITE_URL = "http://testserver"
    victim = _team_world("Victim", token="v")
    attacker = _team_world("Attacker", token="a")
    return {"victim": victim, "attacker": attacker, "emulator": bo_stripe}


def victim_object_pages(v: dict) -> list[tuple[str, str, dict | None]]:
    """Every page that takes an object id or a Stripe id, with the victim's ids."""
    return [
        ("get", reverse("billing:payment_receipt", args=[v["charge"]]), None),
        ("get", reverse("billing:payment_receipt", args=[v["payment_intent"]]), None),
        ("get", reverse("billing:refund_receipt", args=[v["charge"], v["refund"]]), None),
        ("get", reverse("billing:checkout_success") + f"?session_id={v['checkout_session']}", None),
        ("get", reverse("billing:payment_return") + f"?payment_intent={v['payment_intent']}", None),
        ("post", reverse("billing:pay_credit_pack", args=["credits_10"]),
         {"payment_method": v["card"], "form_token": "steal-1"}),
        ("post", reverse("accounts:api_key_revoke", args=[v["key"].api_key.pk]), {}),
        ("post", reverse("accounts:member_remove", args=[v["owner"].pk]), {}),
        ("post", reverse("accounts:invitation_revoke", args=[v["invitation"].pk]), {}),
        ("post", reverse("accounts:switch_team", args=[v["team"].pk]), {}),
    ]


def assert_victim_untouched(world, before):
    assert snapshot(world["emulator"]) == before
    v = world["victim"]
    assert APIKey.objects.get(pk=v["key"].api_key.pk).revoked_at is None
    assert Membership.objects.filter(team=v["team"], user=v["owner"]).exists()
    assert Invitation.objects.filter(pk=v["invitation"].pk).exists()


def test_another_teams_object_pages_and_stripe_ids_answer_404_and_write_nothing(world, client):
    attacker, victim = world["attacker"], world["victim"]
    client.force_login(attacker["owner"])
    before = snapshot(world["emulator"])
    for method, url, data in victim_object_pages(victim):
        response = getattr(client, method)(url, data) if data is not None else getattr(client, method)(url)
        assert response.status_code in (403, 404), (url, response.status_code)
    assert_victim_untouched(world, before)
    # The attacker's session stays on the attacker's team (the switch was refused).
    assert client.get(reverse("billing:overview")).context["team"] == attacker["team"]


def test_the_saved_card_form_refuses_another_teams_card_before_any_stripe_write(world, client):
    """The defect of issue 10: the posted payment-method id went straight into the PaymentIntent."""
    attacker, victim = world["attacker"], world["victim"]
    client.force_login(attacker["owner"])
    before = snapshot(world["emulator"])
    url = reverse("billing:pay_credit_pack", args=["credits_10"])
    for stolen in (victim["card"], "pm_card_visa", "pm_does_not_exist", "../v1/customers", ""):
        response = client.post(url, {"payment_method": stolen, "form_token": f"steal-{stolen}"})
        assert response.status_code == 404, stolen
    assert snapshot(world["emulator"]) == before
    assert not [pi for pi in world["emulator"].store.all("payment_intent") if pi.get("customer") == attacker["customer"]
                and pi.get("payment_method") == victim["card"]]
    # The attacker's own card still pays (and that is a Stripe write).
    paid = client.post(url, {"payment_method": attacker["card"], "form_token": "own-card"})
    assert paid.status_code == 302
    assert stripe_writes(world["emulator"]) == before["stripe_writes"] + 1


def test_lists_and_pages_show_only_the_teams_own_objects(world, client):
    attacker, victim = world["attacker"], world["victim"]
    client.force_login(attacker["owner"])
    for url in (reverse("billing:overview"), reverse("billing:payments"), reverse("usage:overview"),
                reverse("accounts:api_keys"), reverse("accounts:members"),
                reverse("billing:pay_credit_pack", args=["credits_10"])):
        page = client.get(url)
        assert page.status_code == 200, url
        text = page.content.decode()
        for name in ("charge", "invoice", "card", "refund"):
            assert victim[name] not in text, (url, name)
        assert victim["key"].api_key.prefix not in text and victim["owner"].email not in text
    assert attacker["charge"] in client.get(reverse("billing:payments")).content.decode()


def test_an_api_key_sees_only_its_team_and_another_teams_ids_answer_404(world):
    attacker, victim = world["attacker"], world["victim"]
    program = key_client(attacker["key"].raw_key)
    before = snapshot(world["emulator"])
    for payment_id in (victim["charge"], victim["payment_intent"]):
        response = program.get(reverse("api:billing-payment-detail", args=[payment_id]))
        assert response.status_code == 404 and response.json()["error"]["code"] == "not_found"
    # A key acts for its own team: naming another team changes nothing but the answer (404).
    named = program.get(reverse("api:billing-payments"), HTTP_X_TEAM_ID=str(victim["team"].pk))
    assert named.status_code == 404 and named.json()["error"]["code"] == "not_found"
    payments = program.get(reverse("api:billing-payments")).json()["results"]
    assert {p["id"] for p in payments} == {attacker["charge"]}
    invoices = program.get(reverse("api:billing-invoices")).json()["results"]
    assert victim["invoice"] not in {i["id"] for i in invoices} and attacker["invoice"] in {i["id"] for i in invoices}
    for name in ("api:credits", "api:usage", "api:usage-spend-cap", "api:billing-subscription", "api:me"):
        body = program.get(reverse(name)).content.decode()
        assert victim["customer"] not in body and victim["charge"] not in body and str(victim["team"].name) not in body
    assert snapshot(world["emulator"]) == before


def test_a_session_naming_another_team_or_its_key_gets_404_and_writes_nothing(world):
    attacker, victim = world["attacker"], world["victim"]
    api = APIClient()
    api.force_login(attacker["owner"])
    before = snapshot(world["emulator"])
    for method, name, body in API_CALLS:
        if name in TEAMLESS_CALLS:
            continue
        response = getattr(api, method)(reverse(name), body, format="json", HTTP_X_TEAM_ID=str(victim["team"].pk),
                                        HTTP_IDEMPOTENCY_KEY="cross-team")
        assert response.status_code in (403, 404), (method, name, response.status_code)
        assert "error" in response.json()
    deleted = api.delete(reverse("api:api-key-detail", args=[victim["key"].api_key.pk]))
    assert deleted.status_code == 404 and deleted.json()["error"]["code"] == "not_found"
    assert_victim_untouched(world, before)


def test_a_removed_member_loses_the_teams_pages_and_api_at_once(world, client):
    victim = world["victim"]
    admin = MembershipFactory(team=victim["team"], role=Membership.Role.ADMIN).user
    client.force_login(admin)
    session = client.session
    session["team_id"] = victim["team"].pk
    session.save()
    assert client.get(reverse("billing:payments")).status_code == 200
    account_services.membership_remove(team=victim["team"], user_id=admin.pk, removed_by=victim["owner"])
    before = snapshot(world["emulator"])
    pages = [("get", reverse("billing:overview"), None), ("get", reverse("billing:payments"), None),
             ("get", reverse("usage:overview"), None), ("get", reverse("accounts:api_keys"), None),
             ("post", reverse("billing:checkout", args=["pro_monthly"]), {"form_token": "removed"}),
             ("post", reverse("billing:portal"), {}), ("post", reverse("billing:subscription_cancel"), {}),
             *victim_object_pages(victim)]
    for method, url, data in pages:
        response = getattr(client, method)(url, data) if data is not None else getattr(client, method)(url)
        assert response.status_code in (403, 404), (url, response.status_code)
    api = APIClient()
    api.force_login(admin)
    for method, name, body in API_CALLS:
        response = getattr(api, method)(reverse(name), body, format="json", HTTP_X_TEAM_ID=str(victim["team"].pk),
                                        HTTP_IDEMPOTENCY_KEY="removed")
        if name in TEAMLESS_CALLS:
            continue
        assert response.status_code in (403, 404), (method, name, response.status_code)
    assert_victim_untouched(world, before)


@pytest.mark.parametrize("dead", ["revoked", "expired"])
def test_revoked_and_expired_keys_are_refused_everywhere_and_write_nothing(world, dead):
    victim = world["victim"]
    created = account_services.api_key_create(team=victim["team"], name=dead, created_by=victim["owner"],
                                              scope=APIKey.Scope.FULL)
    program = key_client(created.raw_key)
    assert program.get(reverse("api:billing-payments")).status_code == 200
    if dead == "revoked":
        account_services.api_key_revoke(api_key=created.api_key, revoked_by=victim["owner"])
    else:
        APIKey.objects.filter(pk=created.api_key.pk).update(expires_at=timezone.now() - timedelta(seconds=1))
    before = snapshot(world["emulator"])
    for method, name, body in API_CALLS:
        response = call(program, method, name, body)
        assert response.status_code == 401, (method, name, response.status_code)
        assert response.json()["error"]["code"] == "invalid_api_key"
    detail = program.get(reverse("api:billing-payment-detail", args=[victim["charge"]]))
    assert detail.status_code == 401
    assert snapshot(world["emulator"]) == before


# --- the ownership checks themselves, one per kind of Stripe id ----------------------------------------------------
def test_each_kind_of_stripe_id_belongs_to_its_team_only(world):
    attacker, victim = world["attacker"], world["victim"]
    checks = [
        (selectors.team_owns_payment_method, "payment_method_id", "card"),
        (selectors.team_owns_invoice, "invoice_id", "invoice"),
        (selectors.team_owns_charge, "charge_id", "charge"),
        (selectors.team_owns_charge, "charge_id", "payment_intent"),
        (selectors.team_owns_subscription_item, "subscription_item_id", "subscription_item"),
    ]
    for check, argument, name in checks:
        assert check(team=victim["team"], **{argument: victim[name]}) is True, name
        assert check(team=attacker["team"], **{argument: victim[name]}) is False, name
        assert check(team=attacker["team"], **{argument: attacker[name]}) is True, name
    writes = stripe_writes(world["emulator"])
    reads = emulator_get(world["emulator"], "/_emulator/requests?path_prefix=/v1/&method=GET")["count"]
    # Ids not shaped like the kind's never reach Stripe.
    for bad in ("", "pm_", "pm_x/../../v1/customers", "in_1 OR 1=1", "cus_123", None, 12):
        assert selectors.team_owns_payment_method(team=victim["team"], payment_method_id=bad) is False
        assert selectors.team_owns_invoice(team=victim["team"], invoice_id=bad) is False
    assert emulator_get(world["emulator"], "/_emulator/requests?path_prefix=/v1/&method=GET")["count"] == reads
    assert stripe_writes(world["emulator"]) == writes
    assert selectors.price_lookup_key_offered(lookup_key="credits_10") is True
    assert selectors.price_lookup_key_offered(lookup_key="price_of_someone_else") is False


def test_a_team_without_a_customer_owns_no_customerless_stripe_object(world):
    loner, _owner = make_team_with_owner(name="No customer yet")
    assert selectors.team_owns_stripe_object(team=loner, stripe_object={"id": "pi_x", "customer": None}) is False
    assert selectors.team_owns_stripe_object(team=world["victim"]["team"],
                                             stripe_object={"id": "pi_x", "customer": world["victim"]["customer"]})
