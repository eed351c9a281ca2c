"""
The one writer into dj-stripe's mirror tables (the project's code never calls `sync_from_stripe_data` or edits a
dj-stripe row anywhere else; dj-stripe's own event handlers, run by the webhook pipeline, are the other writer).

Two kinds of writes: `mirror_store` stores an object we just got from Stripe through the gateway (an API answer or
a fresh retrieve) and marks the object's watermark "read from Stripe now"; `mirror_apply_event_payload` stores an
event's own snapshot, which the webhook pipeline only does after `mirror_watermark_lock` showed the event is newer
than anything the mirror holds (`billing.services.webhooks` owns that decision and sets the event's mark). The
gateway's dicts and stored payloads are JSON-safe, which dj-stripe's JSON columns need.
"""
import logging
import time
from dataclasses import dataclass

from ..stripe_gateway import configure_module_sdk
from ..stripe_gateway.deferred_reads import atomic_with_stripe_reads
from ..stripe_gateway.sync import list_remaining, object_retrieve, stripe_object_customer_id

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


def _customer_ensure(*, customer_id: str | None) -> None:
    """
    Mirror the object's customer first from our own retrieve, so dj-stripe never fetches it on its own. Two events
    of one new customer's objects applied at once would both insert it (dj-stripe's get-or-create is not atomic):
    the customer's watermark row is locked first, so the second waits and then finds the row.
    """
    from djstripe.models import Customer

    if customer_id and not Customer.objects.filter(id=customer_id).exists():
        mirror_watermark_lock(object_id=customer_id, object_type="customer")  # waits for a concurrent insert
        if not Customer.objects.filter(id=customer_id).exists():
            mirror_store(kind="customer", data=object_retrieve(object_type="customer", object_id=customer_id))


def _sync(*, kind: str, data: dict, customer_mirrored: bool = False):
    if data.get("object", kind) != kind:
        raise ValueError(f"mirror of kind={kind!r} was given a {data.get('object')!r} object")
    model = _model_for(kind)
    configure_module_sdk()  # dj-stripe fetches related objects (prices, payment methods) with the module-level SDK
    data = dict(data)
    if kind != "customer" and not data.get("deleted") and not customer_mirrored:
        _customer_ensure(customer_id=stripe_object_customer_id(data) or None)
    for key in _EMBEDDED_LISTS:
        if isinstance(data.get(key), dict) and data[key].get("object") == "list":
            data[key] = _EmbeddedList(data[key])
    return model.sync_from_stripe_data(data)


def mirror_store(*, kind: str, data: dict):
    """
    Write one Stripe object we hold (a gateway answer, JSON-safe) into dj-stripe's tables; returns the row.
    `kind` is the object's Stripe type (`data["object"]`), named by the caller so a wrong object fails loudly.
    The object's watermark becomes "read from Stripe now": events created before now (minus a margin) are older.
    """
    # dj-stripe may fetch related objects while it syncs, inside its own transaction: fetch those first.
    row = atomic_with_stripe_reads(lambda: _sync(kind=kind, data=data))
    if data.get("id"):
        _watermark_set(object_id=data["id"], object_type=kind, state_at=int(time.time()), stripe_event_id="",
                       deleted=bool(data.get("deleted")))
    return row


def mirror_apply_event_payload(*, kind: str, data: dict, customer_mirrored: bool = False):
    """
    Write an event's own snapshot of an object (`event.data.object`) through dj-stripe's `sync_from_stripe_data`.
    Only the webhook pipeline calls this, holding the object's watermark lock, once it knows the event is the newest
    state seen for the object; it sets the watermark itself (`mirror_watermark_set`).
    """
    return _sync(kind=kind, data=data, customer_mirrored=customer_mirrored)


@dataclass(frozen=True)
class LockedMark:
    """The object's watermark as locked, plus what the same round trip learnt about the mirror."""

    mark: object  # MirrorWatermark (unsaved copy of the locked row)
    row_updated_at: int | None  # the mirrored row's `djstripe_updated` (Unix s), None when not mirrored
    customer_mirrored: bool | None  # whether `customer_id` is mirrored (None when no customer was asked about)


def mirror_watermark_lock(*, object_id: str, object_type: str, customer_id: str | None = None) -> LockedMark:
    """
    The object's watermark row, created if missing and locked until the transaction ends (PostgreSQL; SQLite
    serialises writers anyway). Lock order, everywhere: the webhook event row, then the object's watermark, then
    its customer's watermark (`_customer_ensure`), so two applies never wait on each other in a cycle.

    On a machine where every round trip to PostgreSQL waits in a run queue, round trips are what an event costs: the
    same statement also reads the mirrored row's `djstripe_updated` and whether the customer is mirrored.
    """
    from django.db import connection

    from ..models import MirrorWatermark

    model = _model_for(object_type)
    customer_table = _model_for("customer")._meta.db_table
    if connection.vendor == "postgresql":
        # Insert-or-touch takes the row lock (a concurrent caller waits here) and returns the locked row.
        with connection.cursor() as cursor:
            cursor.execute(
                "INSERT INTO billing_mirrorwatermark (stripe_object_id, object_type, state_at, stripe_event_id, "
                "deleted, updated_at) VALUES (%s, %s, -1, '', false, now()) ON CONFLICT (stripe_object_id) DO UPDATE "
                "SET object_type = EXCLUDED.object_type RETURNING state_at, stripe_event_id, deleted, "
                f"(SELECT extract(epoch FROM djstripe_updated)::bigint FROM {model._meta.db_table} WHERE id = %s), "
                f"EXISTS (SELECT 1 FROM {customer_table} WHERE id = %s)",
                [object_id, object_type, object_id, customer_id or ""])
            state_at, stripe_event_id, deleted, row_updated_at, customer_mirrored = cursor.fetchone()
        mark = MirrorWatermark(stripe_object_id=object_id, object_type=object_type, state_at=state_at,
                               stripe_event_id=stripe_event_id, deleted=deleted)
    else:
        MirrorWatermark.objects.bulk_create([MirrorWatermark(stripe_object_id=object_id, object_type=object_type)],
                                            ignore_conflicts=True)
        mark = MirrorWatermark.objects.select_for_update().get(stripe_object_id=object_id)
        updated = model.objects.filter(id=object_id).values_list("djstripe_updated", flat=True).first()
        row_updated_at = int(updated.timestamp()) if updated is not None else None
        customer_mirrored = _model_for("customer").objects.filter(id=customer_id or "").exists()
    return LockedMark(mark=mark, row_updated_at=row_updated_at,
                      customer_mirrored=customer_mirrored if customer_id else None)


def _watermark_set(*, object_id: str, object_type: str, state_at: int, stripe_event_id: str, deleted: bool) -> None:
    from ..models import MirrorWatermark

    MirrorWatermark.objects.bulk_create(
        [MirrorWatermark(stripe_object_id=object_id, object_type=object_type, state_at=state_at,
                         stripe_event_id=stripe_event_id, deleted=deleted)],
        update_conflicts=True, unique_fields=["stripe_object_id"],
        update_fields=["state_at", "stripe_event_id", "deleted", "updated_at"],
    )


def mirror_watermark_set(*, object_id: str, object_type: str, state_at: int, stripe_event_id: str,
                         deleted: bool = False) -> None:
    """Record that the mirror now holds the object as of event `stripe_event_id` (created at `state_at`)."""
    _watermark_set(object_id=object_id, object_type=object_type, state_at=state_at, stripe_event_id=stripe_event_id,
                   deleted=deleted)


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
    _PRODUCT_FEATURES_SYNCED.clear()


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
    _product_features_memo_install()


# dj-stripe lists a product's entitlement features (`GET /v1/products/<id>/features`) on EVERY product sync, including
# each product.updated event and each price whose product it meets. The project does not sell by entitlement
# features, and they change only when staff edit the product: one listing per product per process every few minutes
# is enough. Skipping a listing keeps the rows from the previous one (no deletes), so a stale answer is at worst
# PRODUCT_FEATURES_MEMO_SECONDS old and never wrong in a way that loses data.
PRODUCT_FEATURES_MEMO_SECONDS = 300.0
_PRODUCT_FEATURES_SYNCED: dict[str, float] = {}


def _product_features_memo_install() -> None:
    from django.db import transaction
    from djstripe.models import Product

    sync_features = Product._sync_product_features

    def _sync_product_features(self, *args, **kwargs):
        if _PRODUCT_FEATURES_SYNCED.get(self.id, 0.0) > time.monotonic():
            return None
        result = sync_features(self, *args, **kwargs)
        product_id = self.id
        transaction.on_commit(lambda: _PRODUCT_FEATURES_SYNCED.__setitem__(
            product_id, time.monotonic() + PRODUCT_FEATURES_MEMO_SECONDS))
        return result

    Product._sync_product_features = _sync_product_features
