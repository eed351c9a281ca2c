"""
Adding a card through Stripe's hosted page (Checkout in `setup` mode), in test and live mode alike: the start view,
the success and cancel returns, ownership checks, the webhook for a setup session. Against the emulator over HTTP.
"""
import pytest
import requests
from django.test import Client
from django.urls import reverse

from accounts.models import Membership
from accounts.tests.factories import MembershipFactory, make_team_with_owner
from billing.extensions import credit_ledger

from .conftest import complete_checkout, deliver, emulator_requests, stripe_events
from .test_flows import owner_client  # noqa: F401  (fixture)

pytestmark = pytest.mark.django_db


def _messages(response) -> list[str]:
    """The messages this response added (earlier ones stay queued until a page shows them)."""
    return [str(m) for m in response.wsgi_request._messages._queued_messages]


def _start(client, token: str = "tok-1"):
    return client.post(reverse("billing:card_checkout"), {"form_token": token})


def _session_id(response) -> str:
    assert response.status_code == 302 and "/_emulator/checkout/cs_" in response["Location"], response
    return response["Location"].rstrip("/").split("/")[-1]


def _success_path(session_id: str) -> str:
    return reverse("billing:card_checkout_success") + f"?session_id={session_id}"


def _saved_cards(team) -> list[dict]:
    from billing.selectors import team_saved_cards

    return team_saved_cards(team=team)


def test_add_card_opens_a_setup_session_with_an_idempotency_key(billing_world, owner_client, team, stripe_emulator):  # noqa: F811
    from billing.stripe_gateway.checkout import checkout_session_retrieve

    before = len(emulator_requests(stripe_emulator, "POST", "/v1/checkout/sessions"))
    response = _start(owner_client, "form-A")
    session_id = _session_id(response)
    creates = emulator_requests(stripe_emulator, "POST", "/v1/checkout/sessions")[before:]
    assert len(creates) == 1 and creates[0]["idempotency_key"] == f"card_setup:{team.pk}:form-A"
    # A double submit of the same form opens the same page (Stripe replays the key).
    assert _session_id(_start(owner_client, "form-A")) == session_id
    session = checkout_session_retrieve(session_id=session_id)
    assert (session["mode"], session["status"], session["payment_status"]) == ("setup", "open", "no_payment_required")
    assert session["customer"] == team.billing_profile.stripe_customer_id
    assert session["success_url"] == "http://127.0.0.1:9/billing/cards/checkout/success/?session_id={CHECKOUT_SESSION_ID}"
    assert session["cancel_url"] == "http://127.0.0.1:9/billing/cards/checkout/cancel/"
    assert session["metadata"] == {"team_id": str(team.pk), "kind": "card_setup"}
    assert session["setup_intent"]["metadata"] == {"team_id": str(team.pk), "kind": "card_setup"}
    assert session["payment_method_types"] == ["card"]


def test_hosted_page_return_saves_the_card_as_first_default_and_counts_stripe_calls(
        billing_world, owner_client, team, stripe_emulator):  # noqa: F811
    from djstripe.models import PaymentMethod

    from billing.services.payment_methods import team_default_payment_method_id

    session_id = _session_id(_start(owner_client))
    paid = complete_checkout(stripe_emulator, session_id, card="5555555555554444")
    assert paid.status_code == 303 and paid.headers["Location"] == "http://127.0.0.1:9" + _success_path(session_id)

    reads_before = len(emulator_requests(stripe_emulator, "GET"))
    writes_before = emulator_requests(stripe_emulator, "POST")
    done = owner_client.get(_success_path(session_id))
    assert done.status_code == 302 and done["Location"].endswith("#cards")
    assert _messages(done) == ["Your card was saved."]
    writes = emulator_requests(stripe_emulator, "POST")[len(writes_before):]
    # The only write: the team had no default, so the new card becomes it (with an idempotency key).
    assert [(w["path"], bool(w["idempotency_key"])) for w in writes] == [
        (f"/v1/customers/{team.billing_profile.stripe_customer_id}", True)]
    reads = emulator_requests(stripe_emulator, "GET")[reads_before:]
    assert len([r for r in reads if r["path"].startswith("/v1/checkout/sessions/")]) == 1

    cards = _saved_cards(team)
    assert [(c["brand"], c["last4"]) for c in cards] == [("mastercard", "4444")]
    assert team_default_payment_method_id(team=team) == cards[0]["id"]
    assert PaymentMethod.objects.filter(id=cards[0]["id"], customer_id=team.billing_profile.stripe_customer_id).exists()

    # A second card is saved but the default stays.
    second = _session_id(_start(owner_client, "tok-2"))
    complete_checkout(stripe_emulator, second)
    owner_client.get(_success_path(second))
    assert team_default_payment_method_id(team=team) == cards[0]["id"]
    assert sorted(c["last4"] for c in _saved_cards(team)) == ["4242", "4444"]
    page = owner_client.get(reverse("billing:overview")).content.decode()
    assert "4444" in page and "4242" in page and 'id="add-card"' in page


def test_success_page_in_portuguese(billing_world, owner_client, team, stripe_emulator):  # noqa: F811
    session_id = _session_id(_start(owner_client))
    complete_checkout(stripe_emulator, session_id)
    done = owner_client.get(_success_path(session_id), HTTP_ACCEPT_LANGUAGE="pt-br")
    assert _messages(done) == ["Seu cartão foi salvo."]
    cancel = owner_client.get(reverse("billing:card_checkout_cancel"), HTTP_ACCEPT_LANGUAGE="pt-br")
    assert cancel.status_code == 302 and _messages(cancel) == ["Nenhum cartão foi adicionado."]


def test_cancel_returns_to_billing_with_a_neutral_message(billing_world, owner_client, team, stripe_emulator):  # noqa: F811
    session_id = _session_id(_start(owner_client))
    response = owner_client.get(reverse("billing:card_checkout_cancel"))
    assert response.status_code == 302 and response["Location"].endswith("/billing/#cards")
    assert _messages(response) == ["No card was added."]
    assert _saved_cards(team) == []
    # Visiting the success URL of a session that was never completed saves nothing and says so.
    unfinished = owner_client.get(_success_path(session_id))
    assert unfinished.status_code == 302 and "The card was not saved" in _messages(unfinished)[0]
    assert _saved_cards(team) == []


def test_another_teams_session_or_a_malformed_id_answers_404(billing_world, owner_client, team, stripe_emulator):  # noqa: F811
    _session_id(_start(owner_client))  # the team has a customer
    other_team, other_owner = make_team_with_owner()
    other = Client()
    other.force_login(other_owner)
    theirs = _session_id(_start(other, "theirs"))
    complete_checkout(stripe_emulator, theirs)
    before = len(emulator_requests(stripe_emulator, "POST"))
    for value in (theirs, "cs_test_doesnotexist", "cs_../../v1/customers", "pi_123", "", "x" * 300):
        response = owner_client.get(reverse("billing:card_checkout_success"), {"session_id": value})
        assert response.status_code == 404, value
    assert len(emulator_requests(stripe_emulator, "POST")) == before  # nothing written
    assert _saved_cards(team) == []
    # A purchase session of the team's own is not a card setup either.
    purchase = owner_client.post(reverse("billing:checkout", args=["credits_10"]), {"form_token": "buy"})
    purchase_id = purchase["Location"].rstrip("/").split("/")[-1]
    assert owner_client.get(_success_path(purchase_id)).status_code == 404


def test_members_without_billing_rights_cannot_add_cards(billing_world, team, stripe_emulator):
    member = MembershipFactory(team=team, role=Membership.Role.MEMBER).user
    client = Client()
    client.force_login(member)
    before = len(emulator_requests(stripe_emulator, "POST"))
    assert _start(client).status_code == 403
    assert client.get(reverse("billing:card_add")).status_code == 403
    assert client.get(_success_path("cs_test_abc")).status_code == 403
    assert len(emulator_requests(stripe_emulator, "POST")) == before
    page = client.get(reverse("billing:overview")).content.decode()
    assert 'id="add-card"' not in page


def test_live_mode_offers_the_hosted_page_and_no_test_cards(billing_world, owner_client, team, stripe_emulator, settings):  # noqa: F811
    settings.STRIPE_LIVE_MODE = True
    page = owner_client.get(reverse("billing:overview")).content.decode()
    assert 'id="add-card"' in page and 'id="add-test-card"' not in page
    add = owner_client.get(reverse("billing:card_add")).content.decode()
    assert 'id="add-card-checkout"' in add and "pm_card_visa" not in add
    assert owner_client.post(reverse("billing:card_add"), {"card": "pm_card_visa"}).status_code == 404
    session_id = _session_id(_start(owner_client))
    complete_checkout(stripe_emulator, session_id)
    assert _messages(owner_client.get(_success_path(session_id))) == ["Your card was saved."]
    assert [c["last4"] for c in _saved_cards(team)] == ["4242"]
    page = owner_client.get(reverse("billing:overview")).content.decode()
    assert "4242" in page and "customer portal" in page  # the portal stays, as an extra


def test_webhook_mirrors_the_card_of_a_setup_session_once_and_grants_nothing(
        billing_world, owner_client, team, stripe_emulator):  # noqa: F811
    from djstripe.models import PaymentMethod

    from billing.models import WebhookEvent

    session_id = _session_id(_start(owner_client))
    assert complete_checkout(stripe_emulator, session_id, card="4000002500003155").status_code == 303  # to 3-D Secure
    seti = [e for e in stripe_events({"setup_intent.created"})][-1]["data"]["object"]["id"]
    bank = requests.post(f"{stripe_emulator.url}/_emulator/3ds/{seti}", data={"action": "approve"},
                         allow_redirects=False, timeout=10)
    assert bank.status_code == 303
    completed = [e for e in stripe_events({"checkout.session.completed"})
                 if e["data"]["object"]["id"] == session_id]
    assert len(completed) == 1
    assert not PaymentMethod.objects.exists()  # the webhook is what mirrors it here
    balance_before = credit_ledger().balance(team=team)
    events_before = WebhookEvent.objects.count()
    for _ in range(2):  # a duplicate delivery changes nothing more
        assert deliver(owner_client, billing_world, completed[0]).status_code == 200
    assert WebhookEvent.objects.count() == events_before + 1
    card = PaymentMethod.objects.get(customer_id=team.billing_profile.stripe_customer_id)
    assert card.stripe_data["card"]["last4"] == "3155"
    assert credit_ledger().balance(team=team) == balance_before
    from django.core import mail

    assert mail.outbox == []  # no receipt, no purchase email
    # The team had no card: the webhook's task made this one the default, once (the duplicate found it set), even
    # though the customer has not come back to the return page yet.
    customer_id = team.billing_profile.stripe_customer_id
    customer = requests.get(f"{stripe_emulator.url}/v1/customers/{customer_id}",
                            headers={"Authorization": "Bearer sk_test_emulator"}, timeout=10).json()
    assert customer["invoice_settings"]["default_payment_method"] == card.id
    updates = [r for r in emulator_requests(stripe_emulator, "POST", f"/v1/customers/{customer_id}")
               if r["path"] == f"/v1/customers/{customer_id}"]
    assert len(updates) == 1
    # The page the customer comes back to agrees with the webhook (same row, now also the default).
    assert _messages(owner_client.get(_success_path(session_id))) == ["Your card was saved."]
    assert PaymentMethod.objects.filter(customer_id=team.billing_profile.stripe_customer_id).count() == 1
