"""
The local mirror of Stripe objects is dj-stripe's tables. Every write to it goes through here, from data we just
retrieved from Stripe (never from an event's possibly stale snapshot when the object's current state matters).
"""
import logging
from decimal import Decimal

from ..stripe_gateway import configure_module_sdk
from ..stripe_gateway.sync import object_retrieve, retrievable_types

logger = logging.getLogger(__name__)


def _model_for(object_type: str):
    from djstripe import models as dj

    return {
        "customer": dj.Customer,
        "subscription": dj.Subscription,
        "invoice": dj.Invoice,
        "payment_intent": dj.PaymentIntent,
        "charge": dj.Charge,
        "refund": dj.Refund,
        "dispute": dj.Dispute,
        "checkout.session": dj.Session,
        "product": dj.Product,
        "price": dj.Price,
        "payment_method": dj.PaymentMethod,
        "setup_intent": dj.SetupIntent,
        "account": dj.Account,
        "webhook_endpoint": dj.WebhookEndpoint,
        "balance_transaction": dj.BalanceTransaction,
    }.get(object_type)


def _jsonable(value):
    """The SDK (v15) turns decimal strings such as `unit_amount_decimal` into Decimal; JSON columns need strings."""
    if isinstance(value, Decimal):
        return str(value)
    if isinstance(value, dict):
        return {k: _jsonable(v) for k, v in value.items()}
    if isinstance(value, list):
        return [_jsonable(v) for v in value]
    return value


# Objects with nested lists (subscription items, invoice lines, session line items) must reach dj-stripe as SDK
# objects (it pages through them); they are re-retrieved through dj-stripe's own retrieve, with its expansions.
_RETRIEVE_FOR_SYNC = {"subscription", "invoice", "checkout.session", "customer", "charge", "payment_intent"}


def mirror_sync_object(*, data: dict):
    """Write one Stripe object (already fetched) into dj-stripe's tables. Returns the model instance or None."""
    object_type = data.get("object", "")
    model = _model_for(object_type)
    if model is None:
        return None
    configure_module_sdk()  # dj-stripe fetches related objects with the module-level SDK
    if object_type in _RETRIEVE_FOR_SYNC and not data.get("deleted"):
        return model.sync_from_stripe_data(model(id=data["id"]).api_retrieve())
    return model.sync_from_stripe_data(_jsonable(data))


def mirror_resync(*, object_type: str, object_id: str):
    """Re-retrieve an object from Stripe and mirror its current state (out-of-order events converge on it)."""
    if object_type in _RETRIEVE_FOR_SYNC:
        return mirror_sync_object(data={"object": object_type, "id": object_id})
    if object_type not in retrievable_types():
        return None
    return mirror_sync_object(data=object_retrieve(object_type=object_type, object_id=object_id))


# --- dj-stripe's owner-account lookups, memoised per process -------------------------------------------------------
# Profiling the webhook task showed a quarter of its time in two dj-stripe lookups that every synced object and every
# Event repeats: `Account.get_or_retrieve_for_api_key` (a savepoint, an APIKey get-or-create, the account) and
# `Account.get_default_api_key` (the APIKey row again). Both answer the same thing for as long as the API key and
# the account exist, so they are kept for a short while. An answer is only remembered once the transaction that
# produced it has committed (`on_commit`), so a rolled-back account row is never served from here.
_ACCOUNT_MEMO_SECONDS = 60.0
_ACCOUNT_FOR_KEY: dict[str, tuple[float, object]] = {}
_SECRET_FOR_ACCOUNT: dict[tuple[str, bool | None], tuple[float, str]] = {}


def djstripe_account_memo_clear() -> None:
    """Forget every remembered lookup (tests call it between tests; a key rotation would too)."""
    _ACCOUNT_FOR_KEY.clear()
    _SECRET_FOR_ACCOUNT.clear()


def djstripe_account_memo_install() -> None:
    import time

    from django.db import transaction
    from djstripe.models import Account

    if getattr(Account, "_billing_memo_installed", False):
        return
    for_key = Account.get_or_retrieve_for_api_key.__func__
    default_key = Account.get_default_api_key

    def get_or_retrieve_for_api_key(cls, api_key: str):
        hit = _ACCOUNT_FOR_KEY.get(api_key)
        if hit is not None and hit[0] > time.monotonic():
            return hit[1]
        account = for_key(cls, api_key)
        if account is not None:
            transaction.on_commit(lambda: _ACCOUNT_FOR_KEY.__setitem__(
                api_key, (time.monotonic() + _ACCOUNT_MEMO_SECONDS, account)))
        return account

    def get_default_api_key(self, livemode: bool | None = None) -> str:
        memo_key = (self.pk, livemode)
        hit = _SECRET_FOR_ACCOUNT.get(memo_key)
        if hit is not None and hit[0] > time.monotonic():
            return hit[1]
        secret = default_key(self, livemode)
        transaction.on_commit(lambda: _SECRET_FOR_ACCOUNT.__setitem__(
            memo_key, (time.monotonic() + _ACCOUNT_MEMO_SECONDS, secret)))
        return secret

    Account.get_or_retrieve_for_api_key = classmethod(get_or_retrieve_for_api_key)
    Account.get_default_api_key = get_default_api_key
    Account._billing_memo_installed = True
