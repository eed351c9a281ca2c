"""
Customer self-service on /billing/ (issue 13, part two) against the emulator over HTTP: saved cards, 3-D Secure on
plan changes, the signed preview, downgrades at period end through a schedule, Pix/Boleto credit packs, words.
"""
import re

import pytest
import requests
from django.core import mail
from django.urls import reverse

from accounts.tests.factories import make_team_with_owner
from billing.selectors import team_plan, team_subscription
from billing.extensions import credit_ledger

from .conftest import complete_checkout, deliver, emulator_requests, stripe_events
from .test_flows import deliver_new, owner_client, subscribe  # noqa: F401  (fixture)

pytestmark = pytest.mark.django_db


def _messages(response) -> list[str]:
    return [str(m) for m in response.wsgi_request._messages]


def _add_card(client, card: str, token: str):
    return client.post(reverse("billing:card_add"), {"card": card, "form_token": token})


def _saved_cards(team) -> list[dict]:
    from billing.selectors import team_saved_cards

    return team_saved_cards(team=team)


def _paying_subscriber(owner_client, stripe_emulator, billing_world, settings, lookup_key="pro_monthly"):  # noqa: F811
    settings.TRIAL_PERIOD_DAYS = 0
    seen: set[str] = set()
    subscribe(owner_client, stripe_emulator, lookup_key)
    deliver_new(owner_client, billing_world, seen)
    return seen


# -- saved cards ---------------------------------------------------------------------------------------------------
def test_cards_added_made_default_and_removed_with_idempotency_keys(
        billing_world, owner_client, team, stripe_emulator):  # noqa: F811
    first = _add_card(owner_client, "pm_card_visa", "a")
    assert first.status_code == 302 and first["Location"].endswith("#cards")
    cards = _saved_cards(team)
    assert [c["last4"] for c in cards] == ["4242"]
    page = owner_client.get(reverse("billing:overview")).content.decode()
    assert "Default" in page and "4242" in page  # the first card becomes the default

    _add_card(owner_client, "pm_card_mastercard", "b")
    by_last4 = {c["last4"]: c["id"] for c in _saved_cards(team)}
    assert set(by_last4) == {"4242", "4444"}
    # The default card cannot be removed while it is the default of a subscription-less team? It can: no subscription.
    made = owner_client.post(reverse("billing:card_default", args=[by_last4["4444"]]))
    assert made.status_code == 302
    from billing.services.payment_methods import team_default_payment_method_id

    assert team_default_payment_method_id(team=team) == by_last4["4444"]
    removed = owner_client.post(reverse("billing:card_remove", args=[by_last4["4242"]]))
    assert removed.status_code == 302
    assert [c["last4"] for c in _saved_cards(team)] == ["4444"]
    writes = emulator_requests(stripe_emulator, "POST", "/v1/")
    assert writes and all(r["idempotency_key"] for r in writes)
    assert len([r for r in writes if r["path"].endswith("/detach")]) == 1


def test_another_teams_card_answers_404_and_changes_nothing(billing_world, owner_client, team, stripe_emulator):  # noqa: F811
    _add_card(owner_client, "pm_card_visa", "mine")
    other_team, other_owner = make_team_with_owner()
    from django.test import Client

    other = Client()
    other.force_login(other_owner)
    _add_card(other, "pm_card_mastercard", "theirs")
    theirs = _saved_cards(other_team)[0]["id"]
    before = len(emulator_requests(stripe_emulator, "POST"))
    for url in (reverse("billing:card_default", args=[theirs]), reverse("billing:card_remove", args=[theirs]),
                reverse("billing:card_remove", args=["pm_nonexistent"]), reverse("billing:card_default", args=["x" * 40])):
        assert owner_client.post(url).status_code == 404, url
    assert len(emulator_requests(stripe_emulator, "POST")) == before  # no write reached Stripe
    assert [c["id"] for c in _saved_cards(other_team)] == [theirs]


def test_card_needing_3d_secure_is_saved_after_the_challenge(billing_world, owner_client, team, stripe_emulator):  # noqa: F811
    response = _add_card(owner_client, "pm_card_authenticationRequiredOnSetup", "3ds")
    assert response.status_code == 302 and "/_emulator/3ds/seti_" in response["Location"]
    bank = requests.post(response["Location"], data={"action": "approve"}, allow_redirects=False, timeout=10)
    assert bank.status_code in (302, 303)
    back = bank.headers["Location"]
    assert back.startswith("http://127.0.0.1:9/billing/cards/return/")
    done = owner_client.get(back.split("127.0.0.1:9", 1)[1])
    assert done.status_code == 302 and "Your card was saved." in _messages(done)
    assert [c["last4"] for c in _saved_cards(team)] == ["3155"]


def test_declined_card_is_not_saved(billing_world, owner_client, team, stripe_emulator):  # noqa: F811
    response = _add_card(owner_client, "pm_card_chargeDeclined", "d")
    assert response.status_code == 302 and any("not saved" in m for m in _messages(response))
    assert _saved_cards(team) == []


def test_removing_the_card_that_pays_the_subscription_is_refused(
        billing_world, owner_client, team, stripe_emulator, settings):  # noqa: F811
    _paying_subscriber(owner_client, stripe_emulator, billing_world, settings)
    paying = team_subscription(team=team).stripe_data["default_payment_method"]
    response = owner_client.post(reverse("billing:card_remove", args=[paying]))
    assert response.status_code == 400
    assert [c["id"] for c in _saved_cards(team)] == [paying]


# -- plan changes --------------------------------------------------------------------------------------------------
def _change_form(owner_client, lookup_key: str) -> dict:
    page = owner_client.get(reverse("billing:change_plan", args=[lookup_key]))
    assert page.status_code == 200
    html = page.content.decode()
    return {name: re.search(rf'name="{name}" value="([^"]+)"', html).group(1)
            for name in ("proration_date", "signature")}


def _set_default_card(owner_client, team, card: str) -> str:
    _add_card(owner_client, card, card)
    new = [c for c in _saved_cards(team) if not c.get("is_default")][0]["id"]
    owner_client.post(reverse("billing:card_default", args=[new]))
    return new


def test_upgrade_with_a_3d_secure_card_authenticates_and_charges_the_preview(
        billing_world, owner_client, team, stripe_emulator, settings):  # noqa: F811
    seen = _paying_subscriber(owner_client, stripe_emulator, billing_world, settings)
    _set_default_card(owner_client, team, "pm_card_authenticationRequiredOnSetup")
    # Saved through a SetupIntent with the challenge passed: a card that asks again on every charge instead.
    from billing.stripe_gateway._core import client

    sdk = client()
    customer = team_subscription(team=team).customer_id
    pm = sdk.v1.payment_methods.create(params={"type": "card", "card": {"token": "tok_threeDSecure2Required"}})
    sdk.v1.payment_methods.attach(pm.id, params={"customer": customer})
    owner_client.post(reverse("billing:card_default", args=[pm.id]))
    preview_html = owner_client.get(reverse("billing:change_plan", args=["team_monthly"])).content.decode()
    form = {name: re.search(rf'name="{name}" value="([^"]+)"', preview_html).group(1)
            for name in ("proration_date", "signature")}
    assert "Charged now" in preview_html and "Next renewal" in preview_html and "$499.00 per month" in preview_html
    response = owner_client.post(reverse("billing:change_plan", args=["team_monthly"]), form)
    assert response.status_code == 302 and "/_emulator/3ds/pi_" in response["Location"], response.get("Location")
    bank = requests.post(response["Location"], data={"action": "approve"}, allow_redirects=False, timeout=10)
    back = bank.headers["Location"].split("127.0.0.1:9", 1)[1]
    assert back.startswith("/billing/change-return/")
    done = owner_client.get(back)
    assert done.status_code == 302 and "Your plan was changed." in _messages(done)
    new_events = deliver_new(owner_client, billing_world, seen)
    paid = [e["data"]["object"] for e in new_events if e["type"] == "invoice.paid"]
    assert paid and paid[-1]["billing_reason"] == "subscription_update"
    promised = re.search(r'class="proration-amount">\$([\d,.]+)<', preview_html).group(1)
    assert paid[-1]["amount_paid"] == int(promised.replace(",", "").replace(".", ""))  # preview == charge
    assert team_plan(team=team).key == "team"


def test_failed_authentication_puts_the_old_plan_back_and_offers_another_card(
        billing_world, owner_client, team, stripe_emulator, settings):  # noqa: F811
    _paying_subscriber(owner_client, stripe_emulator, billing_world, settings)
    from billing.stripe_gateway._core import client

    sdk = client()
    customer = team_subscription(team=team).customer_id
    pm = sdk.v1.payment_methods.create(params={"type": "card", "card": {"token": "tok_threeDSecure2Required"}})
    sdk.v1.payment_methods.attach(pm.id, params={"customer": customer})
    owner_client.post(reverse("billing:card_default", args=[pm.id]))
    response = owner_client.post(reverse("billing:change_plan", args=["team_monthly"]),
                                 _change_form(owner_client, "team_monthly"))
    bank = requests.post(response["Location"], data={"action": "fail"}, allow_redirects=False, timeout=10)
    done = owner_client.get(bank.headers["Location"].split("127.0.0.1:9", 1)[1])
    assert done.status_code == 302 and done["Location"].endswith("#cards")
    assert any("was not changed" in m for m in _messages(done))
    subscription = team_subscription(team=team)
    prices = [(i.get("price") or {}).get("lookup_key") for i in subscription.stripe_data["items"]["data"]]
    assert "pro_monthly" in prices and "team_monthly" not in prices
    # Stripe kept the change pending: the subscription stays active (not past_due) and /billing/ says so.
    assert subscription.stripe_data["status"] == "active" and subscription.stripe_data["pending_update"]
    assert team_plan(team=team).key == "pro"
    overview = owner_client.get(reverse("billing:overview")).content.decode()
    assert "Change to Team is waiting for your payment" in overview and 'href="#cards"' in overview
    # no revert call: nothing was changed, so nothing is put back
    updates = emulator_requests(stripe_emulator, "POST", f"/v1/subscriptions/{subscription.id}")
    assert not [r for r in updates if ":revert:" in r["idempotency_key"]], updates


def test_declined_card_on_plan_change_says_so_and_changes_nothing(
        billing_world, owner_client, team, stripe_emulator, settings):  # noqa: F811
    _paying_subscriber(owner_client, stripe_emulator, billing_world, settings)
    from billing.stripe_gateway._core import client

    sdk = client()
    customer = team_subscription(team=team).customer_id
    pm = sdk.v1.payment_methods.create(params={"type": "card", "card": {"token": "tok_chargeCustomerFail"}})
    sdk.v1.payment_methods.attach(pm.id, params={"customer": customer})
    owner_client.post(reverse("billing:card_default", args=[pm.id]))
    invoices_before = len(sdk.v1.invoices.list(params={"customer": customer}).data)
    response = owner_client.post(reverse("billing:change_plan", args=["team_monthly"]),
                                 _change_form(owner_client, "team_monthly"))
    assert response.status_code == 302 and response["Location"].endswith("#cards")
    assert any("declined" in m.lower() for m in _messages(response))
    # The proration invoice stays open for the pending change; the subscription itself is untouched and active.
    invoices = sdk.v1.invoices.list(params={"customer": customer}).data
    assert len(invoices) == invoices_before + 1 and invoices[0].status == "open"
    assert team_plan(team=team).key == "pro"
    subscription = sdk.v1.subscriptions.retrieve(team_subscription(team=team).id)
    assert subscription.status == "active" and subscription.pending_update is not None
    assert mail.outbox == [] or not any("payment" in m.subject.lower() and "failed" in m.subject.lower()
                                        for m in mail.outbox)


def test_api_plan_change_with_a_declined_card_answers_402_and_keeps_the_plan(
        billing_world, owner_client, team, stripe_emulator, settings):  # noqa: F811
    seen = _paying_subscriber(owner_client, stripe_emulator, billing_world, settings)
    from billing.stripe_gateway._core import client

    sdk = client()
    customer = team_subscription(team=team).customer_id
    pm = sdk.v1.payment_methods.create(params={"type": "card", "card": {"token": "tok_chargeCustomerFail"}})
    sdk.v1.payment_methods.attach(pm.id, params={"customer": customer})
    owner_client.post(reverse("billing:card_default", args=[pm.id]))
    preview = owner_client.patch("/api/v1/subscription/", {"lookup_key": "team_monthly"},
                                 content_type="application/json").json()["preview"]
    mail.outbox.clear()
    answer = owner_client.patch("/api/v1/subscription/", {"lookup_key": "team_monthly",
                                                           "proration_date": preview["proration_date"]},
                                content_type="application/json")
    assert answer.status_code == 402 and answer.json()["error"]["code"] == "payment_incomplete"
    new_events = deliver_new(owner_client, billing_world, seen)
    assert "invoice.payment_failed" in [e["type"] for e in new_events]
    assert not [m for m in mail.outbox if "payment" in m.subject.lower() and "fail" in m.subject.lower()]
    current = owner_client.get("/api/v1/subscription/").json()
    assert current["status"] == "active" and current["plan"]["lookup_key"] == "pro_monthly"
    assert team_plan(team=team).key == "pro"


@pytest.mark.parametrize("field, value", [("proration_date", "soon"), ("proration_date", ""), ("signature", "forged")])
def test_tampered_or_non_numeric_preview_answers_400(billing_world, owner_client, team, stripe_emulator, settings,
                                                     field, value):  # noqa: F811
    _paying_subscriber(owner_client, stripe_emulator, billing_world, settings)
    form = _change_form(owner_client, "team_monthly")
    form[field] = value
    before = len(emulator_requests(stripe_emulator, "POST", "/v1/subscriptions"))
    response = owner_client.post(reverse("billing:change_plan", args=["team_monthly"]), form)
    assert response.status_code == 400
    assert len(emulator_requests(stripe_emulator, "POST", "/v1/subscriptions")) == before


def test_non_numeric_quantity_answers_400(billing_world, owner_client):  # noqa: F811
    response = owner_client.post(reverse("billing:checkout", args=["credits_10"]), {"quantity": "many"})
    assert response.status_code == 400


def test_downgrade_waits_for_the_period_end_and_can_be_cancelled(
        billing_world, owner_client, team, stripe_emulator, settings):  # noqa: F811
    _paying_subscriber(owner_client, stripe_emulator, billing_world, settings, "team_monthly")
    page = owner_client.get(reverse("billing:change_plan", args=["pro_monthly"])).content.decode()
    assert "Takes effect on" in page and "Nothing" in page
    scheduled = owner_client.post(reverse("billing:change_plan", args=["pro_monthly"]))
    assert scheduled.status_code == 302
    assert team_plan(team=team).key == "team"  # nothing changes before the period ends
    subscription = team_subscription(team=team)
    assert subscription.stripe_data["schedule"]
    from billing.services.subscriptions import subscription_scheduled_change
    from billing.selectors import subscription_period_end

    change = subscription_scheduled_change(team=team)
    assert change["plan"].key == "pro" and change["date"] == subscription_period_end(subscription)
    overview = owner_client.get(reverse("billing:overview")).content.decode()
    assert re.search(r"Changes to Pro on \d{1,2} \w{3} \d{4}", overview)
    schedule_posts = emulator_requests(stripe_emulator, "POST", "/v1/subscription_schedules")
    assert len(schedule_posts) == 2 and all(r["idempotency_key"] for r in schedule_posts)  # create + phases
    kept = owner_client.post(reverse("billing:scheduled_change_cancel"))
    assert kept.status_code == 302
    assert subscription_scheduled_change(team=team) is None
    assert "Changes to Pro" not in owner_client.get(reverse("billing:overview")).content.decode()
    assert team_plan(team=team).key == "team"


# -- pricing and Checkout ------------------------------------------------------------------------------------------
def test_pricing_knows_the_current_plan_and_success_page_counts_one_plan(
        billing_world, owner_client, team, stripe_emulator, settings):  # noqa: F811
    session_id = subscribe(owner_client, stripe_emulator)
    success = owner_client.get(reverse("billing:checkout_success") + f"?session_id={session_id}").content.decode()
    assert "1 × Pro" in success and "None" not in success
    pricing = owner_client.get("/pricing/?currency=usd").content.decode()
    assert "Current plan" in pricing and "Switch to Team monthly" in pricing
    assert "Subscribe to Pro monthly" not in pricing
    assert "then $0.002 per API call" in pricing
    assert "staff attach" not in pricing and 'id="credit-packs"' in pricing


def _pix_purchase(owner_client, stripe_emulator, method="pix"):  # noqa: F811
    response = owner_client.post(reverse("billing:checkout", args=["credits_10"]),
                                 {"currency": "brl", "form_token": f"pix-{method}"})
    session_id = response["Location"].rstrip("/").split("/")[-1]
    form = {"payment_method_type": method}
    if method == "boleto":
        form.update(tax_id="123.456.789-09", name="Ana Souza", address_line1="Rua A 1", address_city="São Paulo",
                    address_state="SP", address_postal_code="01000-000")
    page = requests.post(f"{stripe_emulator.url}/_emulator/checkout_sessions/{session_id}/complete", data=form,
                         allow_redirects=False, timeout=10)
    assert page.status_code == 200, page.text[:500]
    from billing.stripe_gateway.checkout import checkout_session_retrieve

    session = checkout_session_retrieve(session_id=session_id)
    assert session["payment_method_types"] == ["card", "boleto", "pix"]
    intent = session["payment_intent"]
    return session_id, intent["id"] if isinstance(intent, dict) else intent


def test_pix_credit_pack_is_granted_once_when_paid(billing_world, owner_client, team, stripe_emulator):  # noqa: F811
    seen: set[str] = set()
    _session_id, intent_id = _pix_purchase(owner_client, stripe_emulator)
    deliver_new(owner_client, billing_world, seen)
    waiting = owner_client.get(reverse("billing:overview"), HTTP_ACCEPT_LANGUAGE="pt-br").content.decode()
    assert "Um pagamento Pix de R$ 45,00 está aguardando pagamento." in waiting
    purchases = credit_ledger().ledger(team=team).filter(reason="purchase")
    assert purchases.count() == 0  # completed (unpaid) is not paid
    requests.post(f"{stripe_emulator.url}/_emulator/payment_intents/{intent_id}/pay", timeout=10)
    events = deliver_new(owner_client, billing_world, seen)
    succeeded = [e for e in events if e["type"] == "checkout.session.async_payment_succeeded"]
    assert len(succeeded) == 1
    assert deliver(owner_client, billing_world, succeeded[0]).status_code == 200  # delivered twice
    assert list(purchases.values_list("delta", flat=True)) == [10]


def test_unpaid_boleto_is_reported_by_email_and_on_the_billing_page(billing_world, owner_client, team, stripe_emulator):  # noqa: F811
    seen: set[str] = set()
    _session_id, intent_id = _pix_purchase(owner_client, stripe_emulator, "boleto")
    deliver_new(owner_client, billing_world, seen)
    mail.outbox.clear()
    requests.post(f"{stripe_emulator.url}/_emulator/payment_intents/{intent_id}/expire", timeout=10)
    events = deliver_new(owner_client, billing_world, seen)
    assert [e for e in events if e["type"] == "checkout.session.async_payment_failed"]
    assert [m.subject for m in mail.outbox] == ["Your payment of R$ 45,00 was not completed"]
    page = owner_client.get(reverse("billing:overview")).content.decode()
    assert "Your Boleto of R$45.00 was not paid before it expired." in page
    assert not credit_ledger().ledger(team=team).filter(reason="purchase").exists()


# -- words -----------------------------------------------------------------------------------------------------------
def test_billing_page_speaks_portuguese_without_internal_terms(
        billing_world, owner_client, team, stripe_emulator):  # noqa: F811
    seen: set[str] = set()
    subscribe(owner_client, stripe_emulator)  # starts with the 14-day trial
    deliver_new(owner_client, billing_world, seen)
    english = owner_client.get(reverse("billing:overview")).content.decode()
    assert re.search(r"Trial until \d{1,2} \w{3} \d{4}", english)
    assert ">trialing<" not in english and "api_call" not in english and f"(#{team.pk})" not in english
    portuguese = owner_client.get(reverse("billing:overview"), HTTP_ACCEPT_LANGUAGE="pt-br").content.decode()
    assert re.search(r"Teste grátis até \d{1,2} \w{3} \d{4}", portuguese)
    assert "Cobrança" in portuguese and "0 de 10.000 chamadas de API incluídas" in portuguese and "Cartões" in portuguese
    usage = owner_client.get("/usage/", HTTP_ACCEPT_LANGUAGE="pt-br").content.decode()
    assert "api_call" not in usage and "Uso" in usage


def test_api_errors_follow_accept_language(billing_world, owner_client):  # noqa: F811
    english = owner_client.patch("/api/v1/subscription/", {"lookup_key": "team_monthly"},
                                 content_type="application/json")
    portuguese = owner_client.patch("/api/v1/subscription/", {"lookup_key": "team_monthly"},
                                    content_type="application/json", HTTP_ACCEPT_LANGUAGE="pt-br")
    assert english.status_code == portuguese.status_code == 404
    assert english.json()["error"]["message"] == "Your team has no active subscription."
    assert portuguese.json()["error"]["message"] == "Sua equipe não tem uma assinatura ativa."


def test_choosing_portuguese_keeps_the_chosen_currency(client):
    assert "R$ 499,00" in client.get("/pricing/", HTTP_ACCEPT_LANGUAGE="pt-br").content.decode()  # no choice yet
    assert "$99.00" in client.get("/pricing/?currency=usd").content.decode()
    portuguese = client.get("/pricing/", HTTP_ACCEPT_LANGUAGE="pt-br").content.decode()
    assert "US$ 99,00" in portuguese and "R$ 499,00" not in portuguese
