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

from django.utils.translation import gettext, gettext as _
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
        raise NotFoundError("no_subscription", _("Your team has no active subscription."))
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
        raise ApplicationError("no_plan_item", _("This subscription has no plan item to change."))
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
            "seat_limit", _("Your team has %(used)s members but this plan allows %(seats)s. Remove members first.")
            % {"used": used, "seats": seats}
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
        raise NotFoundError("unknown_lookup_key", _("There is no plan price with the lookup key “%(lookup_key)s”.") % {"lookup_key": lookup_key})
    return found


def subscription_change_preview(*, team: Team, lookup_key: str, proration_date: int | None = None) -> ChangePreview:
    plan, price = _target(lookup_key)
    subscription = _require_subscription(team)
    current = subscription_plan_and_price(subscription)
    if current and current[1].get("lookup_key") == lookup_key:
        raise ApplicationError("same_plan", _("Your team is already on this plan and interval."))
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
    """
    Change the plan now, charged as previewed (same proration_date). With `pending_if_incomplete` Stripe applies the
    change only once the proration invoice is paid: a declined card or a 3-D Secure challenge leaves the
    subscription on its plan, active (never past_due), with `pending_update` set and the invoice open until it is
    paid (the change then applies) or the pending update expires (about 23 hours; the invoice is voided).
    Returns the subscription as Stripe answered it: callers look at `pending_update`.
    """
    plan, price = _target(lookup_key)
    subscription = _require_subscription(team)
    _seats_check(team=team, seats=plan.seats)
    # A preview older than an hour no longer describes what would be charged.
    if not (time.time() - 3600 <= int(proration_date) <= time.time() + 60):
        raise ApplicationError("preview_expired", _("This price preview has expired. Please review the change again."))
    updated = subscriptions_gateway.subscription_update(
        subscription_id=subscription.id,
        params={
            # Only pending-update parameters are allowed here (Stripe refuses cancel_at_period_end and the like);
            # metadata is kept in pending_update.metadata and merged when the change applies (2026-05-27.dahlia+).
            "items": _change_items(subscription, plan=plan, price=price),
            "proration_behavior": PRORATION_BEHAVIOR,
            "proration_date": int(proration_date),
            "metadata": {"plan_key": plan.key},
            "payment_behavior": "pending_if_incomplete",
        },
        idempotency_key=_state_key("change", subscription, f"{lookup_key}:{proration_date}"),
    )
    data = subscription.stripe_data or {}
    if not updated.get("pending_update") and (data.get("cancel_at_period_end") or data.get("cancel_at")):
        # Changing plan means staying: a scheduled cancellation is undone once the change has applied.
        updated = subscriptions_gateway.subscription_update(
            subscription_id=subscription.id, params={"cancel_at_period_end": False},
            idempotency_key=_state_key("change_keeps", subscription, f"{lookup_key}:{proration_date}"),
        )
    _mirror(updated, team)
    if updated.get("latest_invoice"):
        # /billing/ lists the proration invoice at once (paid, or open while the change waits for payment).
        mirror_store(kind="invoice", data=subscriptions_gateway.invoice_retrieve(invoice_id=updated["latest_invoice"]))
    logger.info("team %s changed subscription %s to %s%s", team.pk, subscription.id, lookup_key,
                " (pending payment)" if updated.get("pending_update") else "")
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
        raise ApplicationError("not_canceling", _("This subscription is not scheduled to end."))
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
    error_code: str = ""  # Stripe's last_payment_error.code


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
        raise NotFoundError("unknown_lookup_key", _("There is no credit pack with the lookup key “%(lookup_key)s”.") % {"lookup_key": lookup_key})
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
    last_error = intent.get("last_payment_error") or {}
    # Stripe words card messages for the card holder, in English: the common ones have our translation.
    error = gettext(last_error["message"]) if last_error.get("message") else ""
    return PaymentOutcome(payment_intent_id=intent["id"], status=intent.get("status") or "", redirect_url=redirect,
                          error=error, error_code=last_error.get("code") or "")


def payment_intent_status(*, team: Team, payment_intent_id: str) -> PaymentOutcome:
    if not stripe_id_shaped(payment_intent_id, prefix="pi_") or not team_stripe_customer_id(team=team):
        raise NotFoundError("not_found", _("Payment not found."))
    try:
        intent = payments_gateway.payment_intent_retrieve(payment_intent_id=payment_intent_id)
    except BillingError as error:
        if error.code == "stripe_resource_missing":
            raise NotFoundError("not_found", _("Payment not found.")) from error
        raise
    if not team_owns_stripe_object(team=team, stripe_object=intent):
        raise NotFoundError("not_found", _("Payment not found."))
    return _outcome(intent)


# -- plan changes from the page: 3-D Secure, downgrades at period end (issue 13) ----------------------------------
@dataclass(frozen=True)
class PlanChangeOutcome:
    status: str  # changed | requires_action | declined | scheduled
    redirect_url: str = ""
    error: str = ""


def plan_change_is_downgrade(*, team: Team, lookup_key: str) -> bool:
    """
    A lower plan (catalog order: free, pro, team, ...) or the same plan from yearly to monthly: these take effect
    at the end of the paid period (nothing to refund), everything else at once with proration.
    """
    plan, price = _target(lookup_key)
    subscription = _require_subscription(team)
    current = subscription_plan_and_price(subscription)
    if current is None:
        return False
    current_plan, current_price = current
    order = [p.key for p in load_catalog().plans]
    if order.index(plan.key) != order.index(current_plan.key):
        return order.index(plan.key) < order.index(current_plan.key)
    return ((current_price.get("recurring") or {}).get("interval") == "year") and price.interval == "month"


def _invoice_payment_intent_id(invoice_id: str) -> str:
    invoice = subscriptions_gateway.invoice_retrieve(invoice_id=invoice_id)
    for payment in ((invoice.get("payments") or {}).get("data")) or []:
        intent = (payment.get("payment") or {}).get("payment_intent")
        if intent:
            return intent["id"] if isinstance(intent, dict) else intent
    return ""


def subscription_change_on_session(*, team: Team, lookup_key: str, proration_date: int) -> PlanChangeOutcome:
    """
    The page's plan change, with the customer present. The change is a pending update (see `subscription_change`):
    paid at once, it is made; when the bank asks for 3-D Secure, the invoice's PaymentIntent is confirmed with a
    return URL and the customer authenticates on the bank's page, then comes back to `plan_change_return`; a decline
    changes nothing and says so (the change waits for payment until it expires).
    """
    updated = subscription_change(team=team, lookup_key=lookup_key, proration_date=proration_date)
    if not updated.get("pending_update"):
        return PlanChangeOutcome(status="changed")
    intent_id = _invoice_payment_intent_id(updated.get("latest_invoice") or "")
    intent = payments_gateway.payment_intent_retrieve(payment_intent_id=intent_id) if intent_id else {}
    if intent.get("status") != "requires_action":
        error = _outcome(intent).error if intent else ""
        error = error or _("Your card was declined.")
        logger.info("team %s plan change to %s declined (%s)", team.pk, lookup_key, intent_id or "no payment")
        return PlanChangeOutcome(status="declined", error=error)
    confirmed = payments_gateway.payment_intent_confirm(
        payment_intent_id=intent_id,
        params={"return_url": settings.SITE_URL + reverse("billing:plan_change_return"),
                "payment_method": intent.get("payment_method"), "off_session": False},
        idempotency_key=f"payment_intent:{intent_id}:confirm_on_session",
    )
    redirect = ((confirmed.get("next_action") or {}).get("redirect_to_url") or {}).get("url") or ""
    logger.info("team %s plan change to %s needs authentication (%s)", team.pk, lookup_key, intent_id)
    return PlanChangeOutcome(status="requires_action", redirect_url=redirect)


def plan_change_authentication_result(*, team: Team, payment_intent_id: str) -> PlanChangeOutcome:
    """
    Back from 3-D Secure: re-read the PaymentIntent and the subscription. Paid, Stripe has applied the pending
    update; not paid, the subscription is still on its plan (nothing to put back) and the change waits.
    """
    outcome = payment_intent_status(team=team, payment_intent_id=payment_intent_id)
    subscription = _require_subscription(team)
    updated = subscriptions_gateway.subscription_retrieve(subscription_id=subscription.id)
    _mirror(updated, team)
    if updated.get("latest_invoice"):
        # The page the customer lands on lists it as paid at once, not "due" until invoice.paid arrives.
        mirror_store(kind="invoice", data=subscriptions_gateway.invoice_retrieve(invoice_id=updated["latest_invoice"]))
    if outcome.status == "succeeded":
        # Paid: Stripe applies the pending update (at once in the emulator; it may trail the redirect by a moment
        # on Stripe, and customer.subscription.pending_update_applied then brings it to the mirror).
        if updated.get("pending_update"):
            logger.info("team %s: plan change paid (%s), pending update not applied yet", team.pk, payment_intent_id)
        return PlanChangeOutcome(status="changed")
    if outcome.error_code in ("", "payment_intent_authentication_failure", "authentication_required"):
        # Stripe's sentence for this one ends "choose a different payment method and try again", which the page
        # says anyway.
        return PlanChangeOutcome(status="declined", error=_("The card's bank did not confirm the payment."))
    return PlanChangeOutcome(status="declined", error=outcome.error)


def subscription_pending_change(*, team: Team) -> dict | None:
    """
    A plan change waiting for its payment (Stripe's `pending_update` on the mirrored subscription):
    {"plan", "expires_at", "invoice_url"} or None. `invoice_url` is Stripe's hosted page to pay with another card.
    """
    from datetime import datetime, timezone as dt_timezone

    from djstripe.models import Invoice, Price

    from ..selectors import plan_of_items

    subscription = team_subscription(team=team)
    pending = ((subscription.stripe_data or {}) if subscription else {}).get("pending_update")
    if not pending or (pending.get("expires_at") or 0) <= time.time():
        return None
    prices = []
    for item in pending.get("subscription_items") or []:
        price = item.get("price") or {}
        price_id = price.get("id") if isinstance(price, dict) else price
        row = Price.objects.filter(id=price_id).first()
        prices.append({"price": row.stripe_data if row else (price if isinstance(price, dict) else {"id": price_id})})
    found = plan_of_items(prices)
    invoice_id = (subscription.stripe_data or {}).get("latest_invoice") or ""
    invoice = Invoice.objects.filter(id=invoice_id).first() if invoice_id else None
    if invoice is not None and (invoice.stripe_data or {}).get("status") in ("paid", "void"):
        return None  # paid: Stripe is applying it; void: dropped (the subscription's events follow)
    return {"plan": found[0] if found else None,
            "expires_at": datetime.fromtimestamp(pending["expires_at"], tz=dt_timezone.utc),
            "invoice_url": ((invoice.stripe_data or {}).get("hosted_invoice_url") if invoice else "") or ""}


def _phase_items(items: list[dict]) -> list[dict]:
    out = []
    for item in items:
        price = item.get("price")
        price_id = price["id"] if isinstance(price, dict) else price
        out.append({"price": price_id, "quantity": item["quantity"]} if item.get("quantity") is not None
                   else {"price": price_id})
    return out


def subscription_downgrade_at_period_end(*, team: Team, lookup_key: str) -> dict:
    """
    A downgrade through a subscription schedule: the current phase runs to the end of the paid period, the next
    one carries the new flat price and its overage price, with no proration; then the schedule releases the
    subscription. Shown on /billing/ as "Changes to Team on 14 Jan"; `subscription_downgrade_cancel` releases it.
    """
    plan, price = _target(lookup_key)
    subscription = _require_subscription(team)
    _seats_check(team=team, seats=plan.seats)
    schedule_id = (subscription.stripe_data or {}).get("schedule")
    if schedule_id:
        schedule = subscriptions_gateway.subscription_schedule_retrieve(schedule_id=schedule_id)
    else:
        schedule = subscriptions_gateway.subscription_schedule_create(
            params={"from_subscription": subscription.id},
            idempotency_key=_state_key("schedule_create", subscription),
        )
    current = schedule["phases"][0] if len(schedule["phases"]) == 1 else next(
        phase for phase in schedule["phases"] if phase["start_date"] <= time.time() < phase["end_date"])
    new_items = [{"price": price_id_for_lookup_key(price.lookup_key), "quantity": 1}] + [
        {"price": price_id} for price_id in overage_price_ids(plan=plan, interval=price.interval).values()]
    schedule = subscriptions_gateway.subscription_schedule_update(
        schedule_id=schedule["id"],
        params={
            "end_behavior": "release",
            "phases": [
                {"items": _phase_items(current["items"]), "start_date": current["start_date"],
                 "end_date": current["end_date"]},
                {"items": new_items, "proration_behavior": "none", "metadata": {"plan_key": plan.key}},
            ],
        },
        idempotency_key=f"subscription_schedule:{schedule['id']}:downgrade:{lookup_key}:{current['end_date']}",
    )
    _mirror(subscriptions_gateway.subscription_retrieve(subscription_id=subscription.id), team)
    logger.info("team %s scheduled a change of %s to %s on %s", team.pk, subscription.id, lookup_key,
                current["end_date"])
    return schedule


def subscription_downgrade_cancel(*, team: Team) -> None:
    """Keep the current plan: release the schedule (the subscription runs on as it is)."""
    subscription = _require_subscription(team)
    schedule_id = (subscription.stripe_data or {}).get("schedule")
    if not schedule_id:
        raise ApplicationError("no_scheduled_change", _("No plan change is scheduled."))
    subscriptions_gateway.subscription_schedule_release(
        schedule_id=schedule_id, idempotency_key=f"subscription_schedule:{schedule_id}:release")
    _mirror(subscriptions_gateway.subscription_retrieve(subscription_id=subscription.id), team)
    logger.info("team %s canceled the scheduled change of %s", team.pk, subscription.id)


def subscription_scheduled_change(*, team: Team) -> dict | None:
    """The plan the team moves to at the end of the period, and when: {"plan", "lookup_key", "date"}, or None."""
    from datetime import datetime, timezone as dt_timezone

    subscription = team_subscription(team=team)
    schedule_id = ((subscription.stripe_data or {}) if subscription else {}).get("schedule")
    if not schedule_id:
        return None
    schedule = subscriptions_gateway.subscription_schedule_retrieve(schedule_id=schedule_id)
    if schedule.get("status") not in ("active", "not_started"):
        return None
    now = time.time()
    for phase in schedule.get("phases") or []:
        if phase["start_date"] <= now:
            continue
        from ..selectors import plan_of_items

        prices = []
        for item in phase["items"]:
            price = item.get("price")
            price_id = price["id"] if isinstance(price, dict) else price
            from djstripe.models import Price

            row = Price.objects.filter(id=price_id).first()
            prices.append({"price": (row.stripe_data if row else {"id": price_id})})
        found = plan_of_items(prices)
        if found:
            return {"plan": found[0], "lookup_key": (found[1] or {}).get("lookup_key") or "",
                    "date": datetime.fromtimestamp(phase["start_date"], tz=dt_timezone.utc)}
    return None
