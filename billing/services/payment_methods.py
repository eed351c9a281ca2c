"""
The team's saved cards on /billing/: add one, make one the default, remove one.

Adding a card goes through Stripe's hosted page in every mode: a Checkout Session in `setup` mode (Stripe collects
the card, runs 3-D Secure and attaches it to the team's customer); its return URL re-reads the session and mirrors the
card. In test mode a shortcut also confirms a SetupIntent with one of Stripe's test payment-method ids.

Every payment-method id a customer posts is checked against the team's own Stripe customer by retrieving it from
Stripe (never trusting a hidden field): another customer's id, or one attached to nobody, answers 404 as if it did not
exist, so a probe learns nothing. Writes carry idempotency keys derived from the card and the customer's state.
"""
import logging
import uuid
from dataclasses import dataclass

from django.conf import settings
from django.urls import reverse
from django.utils.translation import gettext as _

from accounts.models import Team, User
from billing_site.errors import ApplicationError, BillingError, NotFoundError

from ..selectors import (
    stripe_id_shaped,
    team_owns_stripe_object,
    team_payment_method,
    team_stripe_customer_id,
    team_subscription,
)
from ..stripe_gateway import checkout as checkout_gateway
from ..stripe_gateway import customers as customers_gateway
from ..stripe_gateway import subscriptions as subscriptions_gateway
from .checkout import CheckoutStart, checkout_locale, request_token_safe, team_checkout_session_read
from .customers import customer_get_or_create
from .mirror import mirror_store

logger = logging.getLogger(__name__)

# `metadata.kind` of a card-setup Checkout Session (the webhook handler tells it from purchases by its mode).
CARD_SETUP_KIND = "card_setup"

# The test payment methods the emulator (and Stripe's test mode) accept by id, offered in test mode as a shortcut
# beside the hosted page (`card_setup_session_start`, how every mode adds a card). Either way the project never sees
# a card number (DESIGN invariant 5).
TEST_CARDS: dict[str, str] = {
    "pm_card_visa": "Visa •••• 4242",
    "pm_card_mastercard": "Mastercard •••• 4444",
    "pm_card_authenticationRequiredOnSetup": "Visa •••• 3155 (3-D Secure)",
    "pm_card_chargeDeclined": "Visa •••• 0002 (declined)",
}


def _customer_id(team: Team) -> str:
    customer_id = team_stripe_customer_id(team=team)
    if not customer_id:
        raise NotFoundError("not_found", _("Payment method not found."))
    return customer_id


def payment_method_of_team(*, team: Team, payment_method_id: str) -> dict:
    """The payment method, re-read from Stripe, if it is attached to this team's customer; else 404."""
    payment_method = team_payment_method(team=team, payment_method_id=payment_method_id)
    if payment_method is None:
        logger.warning("team %s posted payment method %r that is not its customer's", team.pk, payment_method_id[:64])
        raise NotFoundError("not_found", _("Payment method not found."))
    return payment_method


def team_default_payment_method_id(*, team: Team) -> str | None:
    """The card Stripe charges: the subscription's own default, else the customer's invoice default."""
    subscription = team_subscription(team=team)
    if subscription is not None and (subscription.stripe_data or {}).get("default_payment_method"):
        return subscription.stripe_data["default_payment_method"]
    customer_id = team_stripe_customer_id(team=team)
    if not customer_id:
        return None
    customer = customers_gateway.customer_retrieve(customer_id=customer_id)
    return (customer.get("invoice_settings") or {}).get("default_payment_method")


def payment_method_set_default(*, team: Team, payment_method_id: str) -> None:
    """The customer's invoice default and, when it has its own, the subscription's default: renewals use it."""
    payment_method_of_team(team=team, payment_method_id=payment_method_id)
    customer_id = _customer_id(team)
    previous = team_default_payment_method_id(team=team) or "none"
    customers_gateway.customer_update(
        customer_id=customer_id,
        params={"invoice_settings": {"default_payment_method": payment_method_id}},
        idempotency_key=f"customer:{customer_id}:default_payment_method:{previous}:{payment_method_id}",
    )
    subscription = team_subscription(team=team)
    if subscription is not None and (subscription.stripe_data or {}).get("status") != "canceled":
        updated = subscriptions_gateway.subscription_update(
            subscription_id=subscription.id, params={"default_payment_method": payment_method_id},
            idempotency_key=f"subscription:{subscription.id}:default_payment_method:{previous}:{payment_method_id}",
        )
        mirror_store(kind="subscription", data=updated)
    logger.info("team %s made %s its default payment method", team.pk, payment_method_id)


def payment_method_remove(*, team: Team, payment_method_id: str) -> None:
    """Detach a card. The card renewals are charged to stays while a subscription runs (make another the default)."""
    payment_method_of_team(team=team, payment_method_id=payment_method_id)
    subscription = team_subscription(team=team)
    if subscription is not None and payment_method_id == team_default_payment_method_id(team=team):
        raise ApplicationError("default_payment_method", _(
            "This card pays your subscription. Make another card the default before removing it."))
    customers_gateway.payment_method_detach(
        payment_method_id=payment_method_id, idempotency_key=f"payment_method:{payment_method_id}:detach")
    logger.info("team %s removed payment method %s", team.pk, payment_method_id)


@dataclass(frozen=True)
class SetupOutcome:
    setup_intent_id: str
    status: str  # succeeded | requires_action | requires_payment_method
    redirect_url: str = ""
    error: str = ""
    payment_method_id: str = ""


def _setup_outcome(intent: dict) -> SetupOutcome:
    redirect = ((intent.get("next_action") or {}).get("redirect_to_url") or {}).get("url") or ""
    payment_method = intent.get("payment_method")
    return SetupOutcome(
        setup_intent_id=intent["id"], status=intent.get("status") or "", redirect_url=redirect,
        error=(intent.get("last_setup_error") or {}).get("message") or "",
        payment_method_id=payment_method["id"] if isinstance(payment_method, dict) else payment_method or "",
    )


def card_test_shortcut_offered() -> bool:
    """The test-card shortcut exists with test keys only (the emulator's or Stripe's test mode)."""
    return not getattr(settings, "STRIPE_LIVE_MODE", False)


def card_setup_session_start(*, team: Team, user: User | None = None, request_token: str) -> CheckoutStart:
    """
    A Checkout Session in `setup` mode for the team's customer: Stripe's hosted page collects the card (3-D Secure
    included) and attaches it. The idempotency key carries the form's one-time token, so a double submit opens the
    same page; no database transaction is open around either Stripe call.
    """
    customer_id = customer_get_or_create(team=team)
    success_url = (settings.SITE_URL + reverse("billing:card_checkout_success")
                   + "?session_id={CHECKOUT_SESSION_ID}")  # Stripe fills the placeholder in
    session = checkout_gateway.checkout_session_create(
        params={
            "mode": "setup", "customer": customer_id, "payment_method_types": ["card"],
            "success_url": success_url, "cancel_url": settings.SITE_URL + reverse("billing:card_checkout_cancel"),
            "client_reference_id": str(team.pk), "locale": checkout_locale(user=user),
            "metadata": {"team_id": str(team.pk), "kind": CARD_SETUP_KIND},
            "setup_intent_data": {"metadata": {"team_id": str(team.pk), "kind": CARD_SETUP_KIND}},
        },
        idempotency_key=f"card_setup:{team.pk}:{request_token_safe(request_token) or uuid.uuid4().hex}",
    )
    logger.info("card setup session %s for team %s", session["id"], team.pk)
    return CheckoutStart(id=session["id"], url=session["url"])


def card_setup_session_result(*, team: Team, session_id: str) -> SetupOutcome:
    """
    Where the hosted page returns: re-read the session (never the query string's word), check it is this team's
    setup session, mirror the card and make it the default when the team has none. Another team's session, a
    payment session or a malformed id answers 404.
    """
    not_found = NotFoundError("not_found", _("Card setup not found."))
    session = team_checkout_session_read(team=team, session_id=session_id, not_found=not_found)
    if session.get("mode") != "setup":
        logger.warning("team %s returned from checkout session %s that is not its card setup", team.pk, session_id)
        raise not_found
    intent = session.get("setup_intent") if isinstance(session.get("setup_intent"), dict) else {}
    if session.get("status") != "complete" or intent.get("status") != "succeeded":
        return SetupOutcome(setup_intent_id=intent.get("id") or "", status=intent.get("status") or "open",
                            error=_("The card form was not completed."))
    outcome = _setup_outcome(intent)
    card_setup_mirror(team=team, payment_method=intent.get("payment_method"))
    _default_if_first(team=team, payment_method_id=outcome.payment_method_id)
    return outcome


def card_setup_mirror(*, team: Team, payment_method) -> None:
    """Store the saved card in the mirror (an upsert: the return page and the webhook may both do it)."""
    if not isinstance(payment_method, dict):
        return
    if not team_owns_stripe_object(team=team, stripe_object=payment_method):
        # Checkout attaches the card to the session's customer; anything else is not this team's card.
        logger.warning("card setup for team %s produced payment method %s of another customer",
                       team.pk, payment_method.get("id"))
        return
    mirror_store(kind="payment_method", data=payment_method)


def setup_intent_start(*, team: Team, test_card: str, request_token: str) -> SetupOutcome:
    """
    Save a card for later (off-session) payments through a SetupIntent confirmed with a test card id, with the
    return URL of the 3-D Secure challenge. The card is attached to the customer when the intent succeeds.
    """
    if not card_test_shortcut_offered():
        # Test payment-method ids do not exist with live keys: live cards come through the hosted page only.
        raise NotFoundError("not_found", _("Not found."))
    if test_card not in TEST_CARDS:
        raise ApplicationError("invalid_card", _("Choose one of the cards offered."))
    customer_id = customer_get_or_create(team=team)
    try:
        intent = customers_gateway.setup_intent_create(
            params={
                "customer": customer_id, "usage": "off_session", "payment_method_types": ["card"],
                "payment_method": test_card, "confirm": True,
                "return_url": settings.SITE_URL + reverse("billing:card_return"),
                "metadata": {"team_id": str(team.pk)},
            },
            idempotency_key=f"setup:{team.pk}:{request_token_safe(request_token) or uuid.uuid4().hex}",
        )
    except BillingError as error:
        if error.http_status == 402:
            return SetupOutcome(setup_intent_id="", status="requires_payment_method", error=error.user_message)
        raise
    outcome = _setup_outcome(intent)
    if outcome.status == "succeeded":
        _default_if_first(team=team, payment_method_id=outcome.payment_method_id)
    return outcome


def setup_intent_result(*, team: Team, setup_intent_id: str) -> SetupOutcome:
    """Where the 3-D Secure challenge returns: re-read the intent (never the query string's status)."""
    not_found = NotFoundError("not_found", _("Card setup not found."))
    if not stripe_id_shaped(setup_intent_id, prefix="seti_"):
        raise not_found
    try:
        intent = customers_gateway.setup_intent_retrieve(setup_intent_id=setup_intent_id)
    except BillingError as error:
        if error.code == "stripe_resource_missing":
            raise not_found from error
        raise
    if not team_owns_stripe_object(team=team, stripe_object=intent):
        raise not_found
    outcome = _setup_outcome(intent)
    if outcome.status == "succeeded":
        _default_if_first(team=team, payment_method_id=outcome.payment_method_id)
    return outcome


def card_default_if_first_enqueue(*, team_id: int, payment_method_id: str) -> None:
    """After commit, make the card the team's default if it has none (`card_default_if_first_task`). Never raises:
    with the broker down the card stays saved, not default, and the return page or the customer can set it."""
    from django.db import transaction

    from billing_site.celery import task_send

    from ..tasks import card_default_if_first_task

    transaction.on_commit(lambda: task_send(card_default_if_first_task, (team_id, payment_method_id),
                                            what=f"default card {payment_method_id} for team {team_id}"))


def card_default_if_first(*, team: Team, payment_method_id: str) -> None:
    """The task's work: the card must be this team's (re-read from Stripe), then it becomes the default if none is."""
    payment_method_of_team(team=team, payment_method_id=payment_method_id)  # NotFoundError for another's card
    _default_if_first(team=team, payment_method_id=payment_method_id)


def _default_if_first(*, team: Team, payment_method_id: str) -> None:
    """A team's first card becomes its default, so the next renewal has something to charge."""
    if payment_method_id and not team_default_payment_method_id(team=team):
        payment_method_set_default(team=team, payment_method_id=payment_method_id)
