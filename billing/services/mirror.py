"""
The one writer into dj-stripe's mirror tables (the project's code never calls `sync_from_stripe_data` or edits a
dj-stripe row anywhere else; dj-stripe's own event handlers, run by the webhook pipeline, are the other writer).

Every write stores an object we just got from Stripe through the gateway (an API answer or a fresh retrieve), never
an event's possibly stale snapshot, so a mirrored row is always at least as new as the last event applied to it:
the webhook pipeline's watermark (`billing.services.webhooks`) relies on that. The gateway's dicts are already
JSON-safe (`stripe_gateway.to_dict`), which dj-stripe's JSON columns need.
"""
import logging
import time

from ..stripe_gateway import configure_module_sdk
from ..stripe_gateway.sync import list_remaining, object_retrieve

logger = logging.getLogger(__name__)


def _model_for(kind: str):
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
    }[kind]


class _EmbeddedList(dict):
    """
    An embedded list (a subscription's `items`, an invoice's `lines`, a session's `line_items`) as dj-stripe 2.11
    walks it: it calls `auto_paging_iter()` (or iterates) as on the SDK's ListObject, and silently skips an
    invoice's lines when that fails. It stays a dict, so the raw object is still JSON-storable. Stripe embeds the
    first page only (10 invoice lines, 20 items): when `has_more` says so, the rest is fetched through the gateway.
    """

    _all_rows: list | None = None

    def auto_paging_iter(self):
        if self._all_rows is None:  # dj-stripe walks an invoice's lines twice: fetch the rest once
            rows = list(self.get("data") or [])
            if self.get("has_more") and self.get("url") and rows:
                rows += list_remaining(url=self["url"], starting_after=rows[-1]["id"])
            self._all_rows = rows
        return iter(self._all_rows)

    def __iter__(self):
        return self.auto_paging_iter()


_EMBEDDED_LISTS = ("items", "lines", "line_items")


def _customer_id(data: dict) -> str | None:
    customer = data.get("customer")
    if isinstance(customer, dict):
        return customer.get("id")
    return customer or None


def _customer_ensure(*, customer_id: str | None) -> None:
    """Mirror the object's customer first from our own retrieve, so dj-stripe never fetches it on its own."""
    from djstripe.models import Customer

    if customer_id and not Customer.objects.filter(id=customer_id).exists():
        mirror_store(kind="customer", data=object_retrieve(object_type="customer", object_id=customer_id))


def mirror_store(*, kind: str, data: dict):
    """
    Write one Stripe object we hold (a gateway answer, JSON-safe) into dj-stripe's tables; returns the row.
    `kind` is the object's Stripe type (`data["object"]`), named by the caller so a wrong object fails loudly.
    """
    if data.get("object", kind) != kind:
        raise ValueError(f"mirror_store(kind={kind!r}) was given a {data.get('object')!r} object")
    model = _model_for(kind)
    configure_module_sdk()  # dj-stripe fetches related objects (prices, payment methods) with the module-level SDK
    data = dict(data)
    if kind != "customer" and not data.get("deleted"):
        _customer_ensure(customer_id=_customer_id(data))
    for key in _EMBEDDED_LISTS:
        if isinstance(data.get(key), dict) and data[key].get("object") == "list":
            data[key] = _EmbeddedList(data[key])
    return model.sync_from_stripe_data(data)


def mirror_refresh(*, kind: str, object_id: str):
    """Re-retrieve one object from Stripe and mirror its current state (out-of-order events converge on it)."""
    return mirror_store(kind=kind, data=object_retrieve(object_type=kind, object_id=object_id))


def mirror_customer_subscriber_set(*, stripe_customer_id: str, team_id: int | None) -> None:
    """
    Point dj-stripe's `Customer.subscriber` at the team (or at nobody): it mirrors `BillingProfile`, the one source
    of the team ↔ customer link, so dj-stripe's own views of a team agree with ours. Only
    `billing.services.customers` calls this, when it links or unlinks.
    """
    from djstripe.models import Customer

    if team_id is not None:
        # One subscriber row per team: an older customer of the team (deleted, replaced) stops pointing at it.
        Customer.objects.filter(subscriber_id=team_id).exclude(id=stripe_customer_id).update(subscriber_id=None)
    Customer.objects.filter(id=stripe_customer_id).update(subscriber_id=team_id)


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
