"""Checkout: subscriptions for plan lookup keys, one-time payment for credit packs. Stripe hosts the card form."""
import hashlib
import logging
import re
from dataclasses import dataclass

from django.utils.translation import gettext as _
from django.conf import settings
from django.urls import reverse
from django.utils import translation

from accounts.models import Team, User
from billing_site.errors import ApplicationError, BillingError, NotFoundError

from ..catalog import load_catalog
from ..selectors import (
    overage_price_ids,
    price_id_for_lookup_key,
    stripe_id_shaped,
    team_has_had_subscription,
    team_owns_stripe_object,
    team_stripe_customer_id,
    team_subscription,
)
from ..stripe_gateway import checkout as checkout_gateway
from .customers import customer_get_or_create
from .mirror import mirror_store

logger = logging.getLogger(__name__)

STRIPE_LOCALES = {"pt-br": "pt-BR", "en": "en"}


def checkout_locale(*, user=None) -> str:
    """Stripe's page in the page's language (what the customer is reading now), else the user's saved preference."""
    language = (translation.get_language() or getattr(user, "language", "") or "en").lower()
    return STRIPE_LOCALES.get(language, "auto")


@dataclass(frozen=True)
class CheckoutStart:
    id: str
    url: str


def currency_validate(currency: str | None) -> str:
    catalog = load_catalog()
    currency = (currency or catalog.default_currency).lower()
    if currency not in catalog.currencies:
        raise ApplicationError("unknown_currency", _("Currency %(currency)s is not offered.") % {"currency": currency.upper()})
    return currency


_SAFE_TOKEN = re.compile(r"[A-Za-z0-9_.:-]{1,64}")


def request_token_safe(token: str) -> str:
    """
    A client's form token or Idempotency-Key header as it may go into a Stripe idempotency key: kept when short and
    ASCII, otherwise its digest. Stripe's key travels as an HTTP header (ASCII, at most 255 characters); a token like
    "٣" used to fail the request itself (a 503).
    """
    if not token or _SAFE_TOKEN.fullmatch(token):
        return token
    return "h" + hashlib.sha256(token.encode("utf-8", "surrogatepass")).hexdigest()[:32]


def checkout_request_key(*, team: Team, lookup_key: str, currency: str, quantity: int, token: str = "") -> str:
    """
    The idempotency key of a checkout: `checkout:<team>:<token>` with the form's one-time token (or the API's
    Idempotency-Key header), so a double submit or a retry after a timeout returns the same session.
    """
    token = request_token_safe(token) or hashlib.sha256(f"{lookup_key}:{currency}:{quantity}".encode()).hexdigest()[:16]
    return f"checkout:{team.pk}:{token}"


def checkout_session_start(
    *, team: Team, user: User | None, lookup_key: str, currency: str | None = None, quantity: int = 1,
    request_token: str = "",
) -> CheckoutStart:
    catalog = load_catalog()
    currency = currency_validate(currency)
    plan_and_price = catalog.plan_for_lookup_key(lookup_key)
    pack = catalog.credit_pack_for_lookup_key(lookup_key)
    if plan_and_price is None and pack is None:
        raise NotFoundError("unknown_lookup_key", _("There is no price with the lookup key “%(lookup_key)s”.") % {"lookup_key": lookup_key})
    if not 1 <= int(quantity) <= 100:
        raise ApplicationError("invalid_quantity", _("Quantity must be between 1 and 100."))
    price_id = price_id_for_lookup_key(lookup_key)
    success_url = settings.SITE_URL + reverse("billing:checkout_success") + "?session_id={CHECKOUT_SESSION_ID}"
    cancel_url = settings.SITE_URL + reverse("billing:checkout_cancel") + f"?lookup_key={lookup_key}"
    metadata = {"team_id": str(team.pk), "lookup_key": lookup_key, "quantity": str(quantity)}
    params: dict = {
        "success_url": success_url,
        "cancel_url": cancel_url,
        "client_reference_id": str(team.pk),
        "currency": currency,
        "allow_promotion_codes": True,
        "locale": checkout_locale(user=user),
    }
    if plan_and_price is not None:
        plan, _price = plan_and_price
        current = team_subscription(team=team)
        if current is not None:
            # One subscription per team: a second checkout would double-bill. Plan changes go through proration.
            raise ApplicationError(
                "already_subscribed",
                (_("Your team already has a subscription to %(plan)s. Change the plan from the billing page instead.")
                 % {"plan": plan.display_name} if _current_lookup(current) == lookup_key else
                 _("Your team already has a subscription. Change the plan from the billing page instead.")),
                http_status=409, extra={"change_url": reverse("billing:change_plan", args=[lookup_key])},
            )
        subscription_data: dict = {"metadata": {"team_id": str(team.pk), "plan_key": plan.key}}
        if settings.TRIAL_PERIOD_DAYS and not team_has_had_subscription(team=team):
            subscription_data["trial_period_days"] = settings.TRIAL_PERIOD_DAYS
        metadata["kind"] = "subscription"
        # The flat price, then the plan's metered overage price(s) for the same interval: without them Stripe would
        # never bill the overage usage reports as meter events. Metered prices take no quantity.
        overage = overage_price_ids(plan=plan, interval=_price.interval)
        params.update(mode="subscription",
                      line_items=[{"price": price_id, "quantity": 1}] + [{"price": p} for p in overage.values()],
                      subscription_data=subscription_data)
    else:
        metadata.update(kind="credit_pack", credits=str(pack.credits * int(quantity)))
        if currency == "brl":
            # Brazilian customers may pay a one-time purchase by card, Boleto (a voucher paid within 3 days) or
            # Pix (a QR code); both settle later: credits come with checkout.session.async_payment_succeeded.
            params.update(payment_method_types=["card", "boleto", "pix"],
                          payment_method_options={"boleto": {"expires_after_days": 3},
                                                  "pix": {"expires_after_seconds": 86400}})
        params.update(mode="payment", line_items=[{"price": price_id, "quantity": int(quantity)}],
                      # Not kind=credit_pack: Checkout grants by session id; only direct payments grant by intent.
                      payment_intent_data={"metadata": {"team_id": str(team.pk), "source": "checkout",
                                                        "lookup_key": lookup_key}})
    params["metadata"] = metadata
    params["customer"] = customer_get_or_create(team=team)
    session = checkout_gateway.checkout_session_create(
        params=params,
        idempotency_key=checkout_request_key(team=team, lookup_key=lookup_key, currency=currency,
                                             quantity=int(quantity), token=request_token),
    )
    logger.info("checkout session %s for team %s (%s, %s)", session["id"], team.pk, lookup_key, currency)
    return CheckoutStart(id=session["id"], url=session["url"])


def _current_lookup(subscription) -> str:
    from ..selectors import subscription_plan_and_price

    found = subscription_plan_and_price(subscription)
    return (found[1].get("lookup_key") or "") if found else ""


def _line_is_metered(item: dict) -> bool:
    """The overage line of a subscription Checkout: billed later from usage, it has no quantity to show."""
    return ((item.get("price") or {}).get("recurring") or {}).get("usage_type") == "metered"


def _line_description(item: dict) -> str:
    """ "1 × Pro", "2 × 10 credits": the catalog's name in the active language, else Stripe's description."""
    catalog = load_catalog()
    lookup_key = (item.get("price") or {}).get("lookup_key") or ""
    found = catalog.plan_for_lookup_key(lookup_key)
    pack = catalog.credit_pack_for_lookup_key(lookup_key)
    name = found[0].display_name if found else pack.display_name if pack else (item.get("description") or lookup_key)
    return f"{item.get('quantity') or 1} × {name}"


@dataclass(frozen=True)
class CheckoutResult:
    session_id: str
    status: str
    payment_status: str
    mode: str
    description: str
    amount_total: int
    currency: str


def team_checkout_session_read(*, team: Team, session_id: str, not_found: NotFoundError) -> dict:
    """
    A Checkout Session a return URL names, re-read from Stripe (never the query string's word): raises `not_found`
    unless the id is well formed and the session is this team's customer's (another team's, unknown, malformed).
    """
    if not stripe_id_shaped(session_id, prefix="cs_") or not team_stripe_customer_id(team=team):
        raise not_found
    try:
        session = checkout_gateway.checkout_session_retrieve(session_id=session_id)
    except BillingError as error:
        if error.code == "stripe_resource_missing":
            raise not_found from error
        raise
    if not team_owns_stripe_object(team=team, stripe_object=session):
        raise not_found
    return session


def checkout_session_confirm(*, team: Team, session_id: str) -> CheckoutResult:
    """What the success page shows: read from the session itself (not from the webhook, which may lag)."""
    not_found = NotFoundError("not_found", _("This checkout session does not belong to your team."))
    session = team_checkout_session_read(team=team, session_id=session_id, not_found=not_found)
    items = ((session.get("line_items") or {}).get("data")) or []
    description = ", ".join(_line_description(item) for item in items if not _line_is_metered(item))
    if session.get("status") == "complete" and session.get("mode") == "subscription" and session.get("subscription"):
        # Show the plan at once: mirror the subscription now rather than waiting for its webhook.
        subscription = session["subscription"]
        if isinstance(subscription, dict):
            mirror_store(kind="subscription", data=subscription)
    return CheckoutResult(
        session_id=session["id"], status=session.get("status") or "", payment_status=session.get("payment_status") or "",
        mode=session.get("mode") or "", description=description, amount_total=session.get("amount_total") or 0,
        currency=session.get("currency") or "usd",
    )
