"""More flows: dunning and recovery through the portal, payments API, seats, disputes, deleted customers,
Stripe unavailable, and dj-stripe syncing every object type the project relies on."""

import pytest
import requests
from django.core import mail

from accounts.models import Team
from billing.models import BillingProfile, WebhookEvent
from billing.selectors import team_plan, team_subscription

from .conftest import advance_clock, clock_customer, complete_checkout
from .test_flows import deliver_new, owner_client, subscribe  # noqa: F401  (fixture reuse)


@pytest.mark.django_db
def test_failed_renewal_goes_past_due_then_a_new_card_in_the_portal_makes_it_active(
        billing_world, owner_client, team, stripe_emulator):
    sdk, clock, now = clock_customer(team)
    seen: set[str] = set()
    response = owner_client.post("/billing/checkout/pro_monthly/", {"form_token": "dunning"})
    session_id = response["Location"].rstrip("/").split("/")[-1]
    assert complete_checkout(stripe_emulator, session_id).status_code == 303
    deliver_new(owner_client, billing_world, seen)
    subscription = team_subscription(team=team)
    assert subscription.stripe_data["status"] == "trialing"
    # The card on file is replaced by one that attaches fine and fails when the first renewal charges it.
    failing = sdk.v1.payment_methods.create(params={"type": "card", "card": {
        "number": "4000000000000341", "exp_month": 12, "exp_year": 2034, "cvc": "123"}})
    sdk.v1.payment_methods.attach(failing.id, params={"customer": subscription.customer_id})
    sdk.v1.subscriptions.update(subscription.id, params={"default_payment_method": failing.id})
    sdk.v1.customers.update(subscription.customer_id,
                            params={"invoice_settings": {"default_payment_method": failing.id}})
    mail.outbox.clear()
    advance_clock(sdk, clock, now + 15 * 86400)
    deliver_new(owner_client, billing_world, seen)
    assert team_subscription(team=team).stripe_data["status"] == "past_due"
    assert team_plan(team=team).key == "pro"  # grace while Stripe retries
    assert any("failed" in m.subject for m in mail.outbox)  # dunning notice with the link to fix the card

    portal = owner_client.post("/api/v1/portal-sessions/")
    assert portal.status_code == 201
    portal_id = portal.json()["url"].rstrip("/").split("/")[-1]
    updated = requests.post(f"{stripe_emulator.url}/_emulator/portal/{portal_id}/update_payment_method",
                            data={"card_number": "4242424242424242", "card_expiry": "12/34"}, timeout=10)
    assert updated.status_code in (200, 303)
    deliver_new(owner_client, billing_world, seen)
    assert team_subscription(team=team).stripe_data["status"] == "active"
    assert not WebhookEvent.objects.exclude(status=WebhookEvent.Status.PROCESSED).exists()


@pytest.mark.django_db
def test_payments_api_lists_the_teams_charges_with_filters_and_detail(billing_world, owner_client, team, stripe_emulator):
    from djstripe.models import Charge

    seen: set[str] = set()
    for key, token in (("credits_10", "a"), ("credits_50", "b")):
        response = owner_client.post(f"/billing/checkout/{key}/", {"form_token": token})
        complete_checkout(stripe_emulator, response["Location"].rstrip("/").split("/")[-1])
    deliver_new(owner_client, billing_world, seen)
    assert Charge.objects.count() == 2
    listed = owner_client.get("/api/v1/payments/?ordering=amount").json()
    assert listed["count"] == 2
    assert [p["amount"] for p in listed["results"]] == [900, 3900]
    assert all(p["status"] == "succeeded" and p["receipt_url"] for p in listed["results"])
    assert owner_client.get("/api/v1/payments/?status=failed").json()["count"] == 0
    detail = owner_client.get(f"/api/v1/payments/{listed['results'][0]['payment_intent']}/")
    assert detail.status_code == 200 and detail.json()["amount"] == 900
    # Another team sees none of it.
    from accounts.tests.factories import make_team_with_owner

    _other_team, other = make_team_with_owner()
    owner_client.force_login(other)
    assert owner_client.get("/api/v1/payments/").json()["count"] == 0
    assert owner_client.get(f"/api/v1/payments/{listed['results'][0]['id']}/").status_code == 404


@pytest.mark.django_db
def test_downgrade_refused_when_members_exceed_the_plans_seats(billing_world, owner_client, team, stripe_emulator):
    from accounts.tests.factories import MembershipFactory

    subscribe(owner_client, stripe_emulator, "team_monthly")
    deliver_new(owner_client, billing_world, set())
    MembershipFactory.create_batch(3, team=team)  # role: member
    response = owner_client.patch("/api/v1/subscription/", {"lookup_key": "pro_monthly"}, content_type="application/json")
    assert response.status_code == 400 and response.json()["error"]["code"] == "seat_limit"


@pytest.mark.django_db
def test_dispute_flags_the_team_and_tells_staff_and_deleted_customer_is_unlinked(
        billing_world, owner_client, team, stripe_emulator):
    from billing.services import customer_get_or_create
    from billing.stripe_gateway._core import client as stripe_client

    customer_id = customer_get_or_create(team=team)
    sdk = stripe_client()
    sdk.v1.payment_intents.create(params={"amount": 5000, "currency": "usd", "customer": customer_id,
                                          "payment_method": "pm_card_createDispute", "confirm": True,
                                          "payment_method_types": ["card"]})
    mail.outbox.clear()
    seen: set[str] = set()
    events = deliver_new(owner_client, billing_world, seen)
    assert any(e["type"] == "charge.dispute.created" for e in events)
    profile = BillingProfile.objects.get(team=team)
    assert profile.dispute_flagged_at is not None and "Dispute" in profile.dispute_note
    assert any(m.subject.startswith("Dispute opened") for m in mail.outbox)

    sdk.v1.customers.delete(customer_id)
    deliver_new(owner_client, billing_world, seen)
    profile.refresh_from_db()
    assert profile.stripe_customer_id is None and profile.customer_generation == 1


@pytest.mark.django_db
def test_stripe_down_shows_a_friendly_error_and_the_retry_reuses_the_same_session(
        billing_world, owner_client, team, stripe_emulator):
    from billing.services import customer_get_or_create

    customer_get_or_create(team=team)
    stripe_emulator.control("POST", "/_emulator/faults", {"path_prefix": "/v1/checkout/sessions", "method": "POST",
                                                          "status": "503", "count": "10"})
    failed = owner_client.post("/billing/checkout/credits_10/", {"form_token": "retry-me"})
    assert failed.status_code == 503 and "Nothing was charged" in failed.content.decode()
    stripe_emulator.control("DELETE", "/_emulator/faults")
    first = owner_client.post("/billing/checkout/credits_10/", {"form_token": "retry-me"})
    second = owner_client.post("/billing/checkout/credits_10/", {"form_token": "retry-me"})
    assert first.status_code == second.status_code == 302 and first["Location"] == second["Location"]


@pytest.mark.django_db
def test_dj_stripe_mirrors_every_object_type_the_project_relies_on(billing_world, owner_client, team, stripe_emulator):
    from djstripe import models as dj

    subscribe(owner_client, stripe_emulator)
    response = owner_client.post("/billing/checkout/credits_10/", {"form_token": "m"})
    complete_checkout(stripe_emulator, response["Location"].rstrip("/").split("/")[-1])
    deliver_new(owner_client, billing_world, set())
    assert not WebhookEvent.objects.exclude(status=WebhookEvent.Status.PROCESSED).exists()
    for model in (dj.Account, dj.Product, dj.Price, dj.Customer, dj.Subscription, dj.SubscriptionItem, dj.Invoice,
                  dj.PaymentIntent, dj.Charge, dj.Session, dj.PaymentMethod, dj.WebhookEndpoint, dj.Event):
        assert model.objects.exists(), model.__name__


@pytest.mark.django_db
def test_make_run_demo_saves_a_card_and_makes_four_refundable_payments_once(billing_world, stripe_emulator):
    from django.core.management import call_command
    from djstripe.models import Charge

    from billing.selectors import team_saved_cards

    quiet = __import__("io").StringIO
    call_command("demo_setup", stdout=quiet())
    for _ in range(2):  # make run is re-runnable: the second pass creates nothing
        call_command("billing_demo", stdout=quiet())
        call_command("demo_payments", stdout=quiet())
    team = Team.objects.get(memberships__user__email="demo@example.com")
    assert [card["last4"] for card in team_saved_cards(team=team)] == ["4242"]
    charges = Charge.objects.all()
    assert sorted((c.stripe_data["amount"], c.stripe_data["currency"]) for c in charges) == [
        (3900, "usd"), (4900, "usd"), (19900, "brl"), (79000, "usd")]
    assert all(c.stripe_data["status"] == "succeeded" and not c.stripe_data["refunded"] for c in charges)
    assert len(stripe_emulator.control("GET", "/_emulator/requests?path_prefix=/v1/payment_intents&method=POST")["data"]) == 4
