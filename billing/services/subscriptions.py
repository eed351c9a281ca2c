"""
Plan changes (with the proration preview the user confirms), cancel at period end, resume, portal sessions and
one-time payments outside Checkout. Every write re-mirrors the subscription at once, so the page the user lands on
shows the new state without waiting for the webhook (which then converges on the same state).
"""
import hashlib
import json
import logging
import time
from dataclasses import dataclass

from django.conf import settings
from django.urls import reverse

from accounts.models import Membership, Team
from billing_site.errors import ApplicationError, BillingError, NotFoundError

from ..catalog import load_catalog
from ..selectors import (
    overage_price_ids,
    price_id_for_lookup_key,
    stripe_id_shaped,
    subscription_items,
    subscription_licensed_items,
    subscription_metered_items,
    subscription_plan_and_price,
    team_owns_payment_method,
    team_owns_stripe_object,
    team_plan_cache_clear,
    team_stripe_customer_id,
    team_subscription,
)
from ..stripe_gateway import checkout as checkout_gateway
from ..stripe_gateway import payments as payments_gateway
from ..stripe_gateway import subscriptions as subscriptions_gateway
from .customers import customer_get_or_create
from .mirror import mirror_store

logger = logging.getLogger(__name__)

# Upgrades and downgrades are invoiced at once for the prorated difference: the amount the preview shows is the
# amount charged (same proration_date in both calls).
PRORATION_BEHAVIOR = "always_invoice"


def _require_subscription(team: Team):
    subscription = team_subscription(team=team)
    if subscription is None:
        raise NotFoundError("no_subscription", "Your team has no active subscription.")
    return subscription


def _state_key(action: str, subscription, extra: str = "") -> str:
    """
    Idempotency key derived from the subscription's mirrored state: the same action on the same state is the same
    intent (a double click replays), while the next action after a change gets a new key.
    """
    data = subscription.stripe_data or {}
    state = {
        "status": data.get("status"), "cancel_at_period_end": data.get("cancel_at_period_end"),
        "cancel_at": data.get("cancel_at"), "prices": [(i.get("price") or {}).get("id") for i in subscription_items(subscription)],
        "updated": str(subscription.djstripe_updated),
    }
    digest = hashlib.sha256(json.dumps(state, sort_keys=True).encode()).hexdigest()[:16]
    return f"subscription:{subscription.id}:{action}:{extra}:{digest}"


def _mirror(subscription_data: dict, team: Team):
    mirror_store(kind="subscription", data=subscription_data)
    team_plan_cache_clear(team_id=team.pk)


def _plan_item(subscription) -> dict:
    licensed = subscription_licensed_items(subscription_items(subscription))
    if not licensed:
        raise ApplicationError("no_plan_item", "This subscription has no plan item to change.")
    return licensed[0]


def _change_items(subscription, *, plan, price) -> list[dict]:
    """
    The `items` of a plan change: the licensed item moves to the new flat price and, in the same update, each
    metered overage item moves to the new plan's overage price on the same meter (added when missing, deleted when
    the new plan has none). The preview and the update send exactly this list, so preview == invoiced still holds.
    """
    wanted = overage_price_ids(plan=plan, interval=price.interval)  # meter key -> price id
    items: list[dict] = [{"id": _plan_item(subscription)["id"], "price": price_id_for_lookup_key(price.lookup_key)}]
    for item in subscription_metered_items(subscription_items(subscription)):
        new_price = wanted.pop(_meter_key_of(item), None)
        if new_price is None:
            items.append({"id": item["id"], "deleted": True})
        elif new_price != (item.get("price") or {}).get("id"):
            items.append({"id": item["id"], "price": new_price})
    # Subscriptions started before overage items existed get them on their next plan change.
    items.extend({"price": price_id} for price_id in wanted.values())
    return items


def _meter_key_of(item: dict) -> str:
    """The catalog meter key an overage item bills: billing_setup writes it into the price's metadata."""
    return ((item.get("price") or {}).get("metadata") or {}).get("meter") or ""


def _seats_check(*, team: Team, seats: int | None) -> None:
    if seats is None:
        return
    used = Membership.objects.filter(team=team).count()
    if used > seats:
        raise ApplicationError(
            "seat_limit", f"Your team has {used} members but this plan allows {seats}. Remove members first."
        )


@dataclass(frozen=True)
class ChangePreview:
    lookup_key: str
    plan_name: str
    amount_due: int  # minor units, charged now (prorated difference)
    currency: str
    proration_date: int  # unix seconds; pass back on confirm so the charge equals the preview
    lines: list[dict]


def _target(lookup_key: str):
    found = load_catalog().plan_for_lookup_key(lookup_key)
    if found is None:
        raise NotFoundError("unknown_lookup_key", f"There is no plan price with the lookup key “{lookup_key}”.")
    return found


def subscription_change_preview(*, team: Team, lookup_key: str, proration_date: int | None = None) -> ChangePreview:
    plan, price = _target(lookup_key)
    subscription = _require_subscription(team)
    current = subscription_plan_and_price(subscription)
    if current and current[1].get("lookup_key") == lookup_key:
        raise ApplicationError("same_plan", "Your team is already on this plan and interval.")
    _seats_check(team=team, seats=plan.seats)
    proration_date = proration_date or int(time.time())
    preview = subscriptions_gateway.invoice_create_preview(params={
        "customer": subscription.customer_id,
        "subscription": subscription.id,
        "subscription_details": {
            "items": _change_items(subscription, plan=plan, price=price),
            "proration_behavior": PRORATION_BEHAVIOR,
            "proration_date": proration_date,
        },
    })
    lines = [
        {"description": line.get("description") or "", "amount": line.get("amount") or 0}
        for line in ((preview.get("lines") or {}).get("data") or [])
    ]
    return ChangePreview(lookup_key=lookup_key, plan_name=plan.name, amount_due=preview.get("amount_due") or 0,
                         currency=preview.get("currency") or "usd", proration_date=proration_date, lines=lines)


def subscription_change(*, team: Team, lookup_key: str, proration_date: int) -> dict:
    plan, price = _target(lookup_key)
    subscription = _require_subscription(team)
    _seats_check(team=team, seats=plan.seats)
    # A preview older than an hour no longer describes what would be charged.
    if not (time.time() - 3600 <= int(proration_date) <= time.time() + 60):
        raise ApplicationError("preview_expired", "This price preview has expired. Please review the change again.")
    updated = subscriptions_gateway.subscription_update(
        subscription_id=subscription.id,
        params={
            "items": _change_items(subscription, plan=plan, price=price),
            "proration_behavior": PRORATION_BEHAVIOR,
            "proration_date": int(proration_date),
            "cancel_at_period_end": False,
            "metadata": {"plan_key": plan.key},
            "payment_behavior": "error_if_incomplete",
        },
        idempotency_key=_state_key("change", subscription, f"{lookup_key}:{proration_date}"),
    )
    _mirror(updated, team)
    logger.info("team %s changed subscription %s to %s", team.pk, subscription.id, lookup_key)
    return updated


def subscription_cancel_at_period_end(*, team: Team) -> dict:
    subscription = _require_subscription(team)
    updated = subscriptions_gateway.subscription_update(
        subscription_id=subscription.id, params={"cancel_at_period_end": True},
        idempotency_key=_state_key("cancel_at_period_end", subscription),
    )
    _mirror(updated, team)
    logger.info("team %s scheduled cancellation of %s", team.pk, subscription.id)
    return updated


def subscription_resume(*, team: Team) -> dict:
    subscription = _require_subscription(team)
    data = subscription.stripe_data or {}
    if not (data.get("cancel_at_period_end") or data.get("cancel_at")):
        raise ApplicationError("not_canceling", "This subscription is not scheduled to end.")
    updated = subscriptions_gateway.subscription_update(
        subscription_id=subscription.id, params={"cancel_at_period_end": False},
        idempotency_key=_state_key("resume", subscription),
    )
    _mirror(updated, team)
    logger.info("team %s resumed %s", team.pk, subscription.id)
    return updated


def portal_session_start(*, team: Team) -> str:
    customer_id = team_stripe_customer_id(team=team) or customer_get_or_create(team=team)
    configuration_id = _portal_configuration_id()
    session = checkout_gateway.portal_session_create(
        customer_id=customer_id, return_url=settings.SITE_URL + reverse("billing:overview"),
        configuration_id=configuration_id,
        # Portal sessions are short-lived and harmless to duplicate; the key only dedupes a double click.
        idempotency_key=f"portal:{team.pk}:{int(time.time()) // 10}",
    )
    return session["url"]


def _portal_configuration_id() -> str | None:
    from ..stripe_gateway.products import portal_configuration_list
    from .setup import PORTAL_MARKER

    for configuration in portal_configuration_list():
        if (configuration.get("metadata") or {}).get("managed_by") == PORTAL_MARKER:
            return configuration["id"]
    return None


# -- one-time payments outside Checkout (3-D Secure aware) -------------------------------------------------------
@dataclass(frozen=True)
class PaymentOutcome:
    payment_intent_id: str
    status: str  # succeeded | requires_action | requires_payment_method | processing
    redirect_url: str = ""
    error: str = ""


def credit_pack_pay_with_card(*, team: Team, lookup_key: str, payment_method_id: str, currency: str | None,
                              request_token: str) -> PaymentOutcome:
    """
    Buy a credit pack with a card directly (no Checkout). A card that needs 3-D Secure answers `requires_action`
    with a URL the page sends the user to; after the challenge Stripe returns to our page, which re-reads the
    payment intent. Credits are granted by the payment_intent.succeeded webhook, keyed by the payment intent id.
    """
    from .checkout import currency_validate, request_token_safe

    pack = load_catalog().credit_pack_for_lookup_key(lookup_key)
    if pack is None:
        raise NotFoundError("unknown_lookup_key", f"There is no credit pack with the lookup key “{lookup_key}”.")
    currency = currency_validate(currency)
    # The card id comes from the form: another team's card must never reach the PaymentIntent (issue 10). Checked
    # before anything is written, here or at Stripe.
    if not team_owns_payment_method(team=team, payment_method_id=payment_method_id):
        raise NotFoundError("payment_method_not_found", "This card is not one of your team's saved cards.")
    customer_id = customer_get_or_create(team=team)
    try:
        intent = payments_gateway.payment_intent_create(
            params={
                "amount": pack.amounts[currency], "currency": currency, "customer": customer_id,
                "payment_method": payment_method_id, "confirm": True,
                "payment_method_types": ["card"],
                "return_url": settings.SITE_URL + reverse("billing:payment_return"),
                "description": f"{pack.name}",
                "metadata": {"team_id": str(team.pk), "kind": "credit_pack", "lookup_key": lookup_key,
                             "credits": str(pack.credits)},
            },
            idempotency_key=f"payment:{team.pk}:{request_token_safe(request_token)}",
        )
    except BillingError as error:
        return PaymentOutcome(payment_intent_id="", status="requires_payment_method", error=error.user_message)
    return _outcome(intent)


def _outcome(intent: dict) -> PaymentOutcome:
    redirect = ((intent.get("next_action") or {}).get("redirect_to_url") or {}).get("url") or ""
    error = (intent.get("last_payment_error") or {}).get("message") or ""
    return PaymentOutcome(payment_intent_id=intent["id"], status=intent.get("status") or "", redirect_url=redirect,
                          error=error)


def payment_intent_status(*, team: Team, payment_intent_id: str) -> PaymentOutcome:
    if not stripe_id_shaped(payment_intent_id, prefix="pi_") or not team_stripe_customer_id(team=team):
        raise NotFoundError("not_found", "Payment not found.")
    try:
        intent = payments_gateway.payment_intent_retrieve(payment_intent_id=payment_intent_id)
    except BillingError as error:
        if error.code == "stripe_resource_missing":
            raise NotFoundError("not_found", "Payment not found.") from error
        raise
    if not team_owns_stripe_object(team=team, stripe_object=intent):
        raise NotFoundError("not_found", "Payment not found.")
    return _outcome(intent)
