"""Customer flows end to end against the emulator: pages, API, plan change, cancel/resume, 3-D Secure, renewals."""

import pytest
from django.core import mail
from django.urls import reverse

from billing.models import WebhookEvent
from billing.selectors import team_plan, team_subscription

from .conftest import advance_clock, clock_customer, complete_checkout, deliver, stripe_events


@pytest.fixture
def owner_client(client, team):
    owner = team.memberships.get(role="owner").user
    client.force_login(owner)
    return client


def deliver_new(client, endpoint, seen: set[str]) -> list[dict]:
    """Deliver every emulator event not delivered yet, in order; returns them."""
    new = [e for e in stripe_events() if e["id"] not in seen]
    for event in new:
        seen.add(event["id"])
        assert deliver(client, endpoint, event).status_code == 200
    return new


def subscribe(owner_client, emulator, lookup_key="pro_monthly", currency="usd"):
    response = owner_client.post(reverse("billing:checkout", args=[lookup_key]),
                                 {"currency": currency, "form_token": f"t-{lookup_key}"})
    assert response.status_code == 302 and "/_emulator/checkout/" in response["Location"]
    session_id = response["Location"].rstrip("/").split("/")[-1].split("?")[0]
    assert complete_checkout(emulator, session_id).status_code == 303
    return session_id


@pytest.mark.django_db
def test_pricing_page_in_both_currencies_and_languages(billing_world, client):
    usd = client.get("/pricing/?currency=usd").content.decode()
    assert "$99.00" in usd and "$9.00" in usd
    brl = client.get("/pricing/?currency=brl", HTTP_ACCEPT_LANGUAGE="pt-br").content.decode()
    assert "R$ 499,00" in brl and "R$ 45,00" in brl
    assert "Preços" in brl and "por mês" in brl and "Assinar Pro mensal" in brl


@pytest.mark.django_db
def test_checkout_success_page_confirms_from_the_session_and_billing_page_shows_the_plan(
        billing_world, owner_client, team, stripe_emulator):
    session_id = subscribe(owner_client, stripe_emulator)
    success = owner_client.get(reverse("billing:checkout_success") + f"?session_id={session_id}")
    assert success.status_code == 200 and "Thank you" in success.content.decode()
    deliver_new(owner_client, billing_world, set())
    page = owner_client.get(reverse("billing:overview")).content.decode()
    assert "Pro plan" in page and "trialing" in page  # first subscription starts with the 14-day trial
    assert team_plan(team=team).key == "pro"
    # A second checkout for a plan is sent to plan change, never a second subscription.
    again = owner_client.post(reverse("billing:checkout", args=["team_monthly"]), {"form_token": "x"})
    assert again.status_code == 302 and again["Location"] == reverse("billing:change_plan", args=["team_monthly"])


@pytest.mark.django_db
def test_unknown_lookup_key_is_404_on_the_page_and_400_in_the_api(billing_world, owner_client):
    page = owner_client.post(reverse("billing:checkout", args=["gold_monthly"]), {"form_token": "x"})
    assert page.status_code == 404
    api = owner_client.post("/api/v1/checkout-sessions/", {"lookup_key": "gold_monthly"}, content_type="application/json")
    assert api.status_code == 400 and "gold_monthly" in api.json()["error"]["message"]


@pytest.mark.django_db
def test_upgrade_previewed_proration_equals_the_invoiced_amount(billing_world, owner_client, team, stripe_emulator, settings):
    settings.TRIAL_PERIOD_DAYS = 0  # a paying subscriber, so the upgrade is prorated against a paid period
    seen: set[str] = set()
    subscribe(owner_client, stripe_emulator)
    deliver_new(owner_client, billing_world, seen)
    preview = owner_client.patch("/api/v1/subscription/", {"lookup_key": "team_monthly"},
                                 content_type="application/json").json()["preview"]
    assert preview["amount_due"] > 0 and preview["currency"] == "usd"
    changed = owner_client.patch("/api/v1/subscription/", {"lookup_key": "team_monthly",
                                                            "proration_date": preview["proration_date"]},
                                 content_type="application/json")
    assert changed.status_code == 200 and changed.json()["plan"]["lookup_key"] == "team_monthly"
    new_events = deliver_new(owner_client, billing_world, seen)
    paid = [e["data"]["object"] for e in new_events if e["type"] == "invoice.paid"]
    assert paid and paid[-1]["amount_paid"] == preview["amount_due"]
    assert team_plan(team=team).key == "team"


@pytest.mark.django_db
def test_cancel_at_period_end_then_resume_through_the_api(billing_world, owner_client, team, stripe_emulator):
    seen: set[str] = set()
    subscribe(owner_client, stripe_emulator)
    deliver_new(owner_client, billing_world, seen)
    canceled = owner_client.delete("/api/v1/subscription/")
    assert canceled.status_code == 200 and canceled.json()["cancel_at_period_end"] is True
    deliver_new(owner_client, billing_world, seen)
    assert team_plan(team=team).key == "pro"  # paid until the period ends
    resumed = owner_client.post("/api/v1/subscription/resume/")
    assert resumed.status_code == 200 and resumed.json()["cancel_at_period_end"] is False
    deliver_new(owner_client, billing_world, seen)
    assert team_subscription(team=team).stripe_data["cancel_at_period_end"] is False
    assert owner_client.post("/api/v1/subscription/resume/").status_code == 400  # nothing to resume


@pytest.mark.django_db
def test_declined_card_stays_on_checkout_and_changes_nothing(billing_world, owner_client, team, stripe_emulator):
    response = owner_client.post(reverse("billing:checkout", args=["credits_10"]), {"form_token": "d"})
    session_id = response["Location"].rstrip("/").split("/")[-1]
    declined = complete_checkout(stripe_emulator, session_id, card="4000000000000002")
    assert declined.status_code == 402 and "declined" in declined.text.lower()
    assert not [e for e in stripe_events() if e["type"] == "checkout.session.completed"]


@pytest.mark.django_db
def test_credit_pack_with_saved_3ds_card_requires_action_then_grants_once(billing_world, owner_client, team, stripe_emulator):
    from billing.extensions import credit_ledger
    from billing.services import customer_get_or_create
    from billing.stripe_gateway.customers import payment_method_attach

    customer_id = customer_get_or_create(team=team)
    payment_method_attach(payment_method_id="pm_card_threeDSecure2Required", customer_id=customer_id,
                          idempotency_key="test-attach-3ds")
    before = credit_ledger().balance(team=team)
    page = owner_client.get(reverse("billing:pay_credit_pack", args=["credits_10"]))
    assert page.status_code == 200
    card = [c for c in __import__("billing.selectors", fromlist=["x"]).team_saved_cards(team=team)][0]["id"]
    response = owner_client.post(reverse("billing:pay_credit_pack", args=["credits_10"]),
                                 {"payment_method": card, "form_token": "pay-1"})
    assert response.status_code == 302 and "/_emulator/3ds/" in response["Location"]
    import requests

    challenge = requests.post(response["Location"].split("?")[0], data={"action": "approve"}, allow_redirects=False,
                              timeout=10)
    assert challenge.status_code in (302, 303)
    back = challenge.headers["Location"]
    assert back.startswith("http://127.0.0.1:9/billing/pay/return/")
    returned = owner_client.get("/billing/pay/return/?" + back.split("?", 1)[1])
    assert returned.status_code == 302
    for _ in range(2):  # delivered twice: credited once
        for event in stripe_events({"payment_intent.succeeded"}):
            deliver(owner_client, billing_world, event)
    assert credit_ledger().balance(team=team) == before + 10


@pytest.mark.django_db
def test_renewal_through_a_test_clock_pays_and_emails_a_receipt(billing_world, owner_client, team, stripe_emulator, settings):
    settings.TRIAL_PERIOD_DAYS = 0
    sdk, clock, now = clock_customer(team)
    seen: set[str] = set()
    subscribe(owner_client, stripe_emulator)
    deliver_new(owner_client, billing_world, seen)
    mail.outbox.clear()
    advance_clock(sdk, clock, now + 32 * 86400)
    new = deliver_new(owner_client, billing_world, seen)
    paid = [e["data"]["object"] for e in new if e["type"] == "invoice.paid"]
    assert paid and paid[-1]["amount_paid"] == 9900 and paid[-1]["billing_reason"] == "subscription_cycle"
    assert any("Receipt" in m.subject and "$99.00" in m.subject for m in mail.outbox)
    assert team_plan(team=team).key == "pro"
    assert not WebhookEvent.objects.exclude(status=WebhookEvent.Status.PROCESSED).exists()


@pytest.mark.django_db
def test_subscription_api_404_without_one_and_invoices_api_lists_pdf_links(billing_world, owner_client, team, stripe_emulator, settings):
    assert owner_client.get("/api/v1/subscription/").status_code == 404
    settings.TRIAL_PERIOD_DAYS = 0
    subscribe(owner_client, stripe_emulator)
    deliver_new(owner_client, billing_world, set())
    body = owner_client.get("/api/v1/subscription/").json()
    assert body["status"] == "active" and body["plan"]["lookup_key"] == "pro_monthly"
    invoices = owner_client.get("/api/v1/invoices/").json()
    assert invoices["count"] == 1
    first = invoices["results"][0]
    assert first["total"] == 9900 and first["status"] == "paid" and first["invoice_pdf"] and first["hosted_invoice_url"]
    page = owner_client.get(reverse("billing:overview")).content.decode()
    assert first["invoice_pdf"] in page and "$99.00" in page
    plans = owner_client.get("/api/v1/plans/?currency=brl").json()
    pro = next(p for p in plans["results"] if p["key"] == "pro")
    assert {"lookup_key": "pro_monthly", "interval": "month", "amount": 49900, "currency": "brl"} in pro["prices"]


@pytest.mark.django_db
def test_webhook_event_admin_lists_and_replays(billing_world, client, team):
    from accounts.tests.factories import UserFactory

    from .test_webhooks import _event

    admin_user = UserFactory(is_staff=True, is_superuser=True)
    client.force_login(admin_user)
    deliver(client, billing_world, _event("evt_admin_1", "radar.early_fraud_warning.created",
                                          {"id": "x", "object": "radar.early_fraud_warning"}))
    assert client.get("/admin/billing/webhookevent/").status_code == 200
    assert client.get("/admin/billing/webhookevent/?q=evt_admin_1").status_code == 200
    stored = WebhookEvent.objects.get(stripe_event_id="evt_admin_1")
    response = client.post("/admin/billing/webhookevent/", {"action": "replay_selected", "_selected_action": [stored.pk]})
    assert response.status_code == 302
    stored.refresh_from_db()
    assert stored.status == WebhookEvent.Status.PROCESSED and stored.attempts == 1
