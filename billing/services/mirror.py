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
from contextvars import ContextVar
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
    if kind != "customer" and not data.get("deleted") and not customer_mirrored:
        _customer_ensure(customer_id=stripe_object_customer_id(data) or None)
    return model.sync_from_stripe_data(_prepared(data))


def _prepared(data: dict) -> dict:
    """A copy of `data` whose embedded lists dj-stripe can walk (`_EmbeddedList`)."""
    data = dict(data)
    for key in _EMBEDDED_LISTS:
        if isinstance(data.get(key), dict) and data[key].get("object") == "list":
            data[key] = _EmbeddedList(data[key])
    return data


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

    @property
    def state(self):
        """
        The mark to judge an event against; None when the object was never mirrored. Without a mark yet, a row
        mirrored before watermarks existed, or synced by dj-stripe as a related object, was read from Stripe when it
        was last updated, which is what a retrieve mark says.
        """
        from ..models import MirrorWatermark

        if self.mark.state_at >= 0:
            return self.mark
        if self.row_updated_at is None:
            return None
        return MirrorWatermark(stripe_object_id=self.mark.stripe_object_id, object_type=self.mark.object_type,
                               state_at=self.row_updated_at)


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

    mirror_watermarks_set(marks=[MirrorWatermark(stripe_object_id=object_id, object_type=object_type,
                                                 state_at=state_at, stripe_event_id=stripe_event_id, deleted=deleted)])


def mirror_watermarks_set(*, marks: list) -> None:
    """Record several objects' marks (unsaved `MirrorWatermark`s, one per object) in one statement."""
    from ..models import MirrorWatermark

    MirrorWatermark.objects.bulk_create(
        marks, update_conflicts=True, unique_fields=["stripe_object_id"],
        update_fields=["state_at", "stripe_event_id", "deleted", "updated_at"],
    )


def mirror_watermark_set(*, object_id: str, object_type: str, state_at: int, stripe_event_id: str,
                         deleted: bool = False) -> None:
    """Record that the mirror now holds the object as of event `stripe_event_id` (created at `state_at`)."""
    _watermark_set(object_id=object_id, object_type=object_type, state_at=state_at, stripe_event_id=stripe_event_id,
                   deleted=deleted)


def mirror_object_data(*, kind: str, object_id: str) -> dict | None:
    """The object as the mirror holds it (the Stripe data it was last written from), or None when not mirrored."""
    return _model_for(kind).objects.filter(id=object_id).values_list("stripe_data", flat=True).first()


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


# --- Batches: the webhook drain applies many events' payloads in one transaction -----------------------------------
# Per event, dj-stripe's sync is six statements (get, savepoint, the customer behind the foreign key, get again,
# insert or update, release) and the watermark two more: on two shared cores, round trips are what a renewal storm
# costs. A drain batch locks its objects' marks in one statement, resolves foreign keys from rows read once, and
# writes each object type's rows in one upsert, still built by dj-stripe (`_stripe_object_to_record` and its hooks).

# Rows a batch read up front, by (model, Stripe id): dj-stripe's foreign-key lookups are answered from here.
_BATCH_ROWS: ContextVar[dict | None] = ContextVar("billing_mirror_batch_rows", default=None)


def mirror_watermarks_lock(*, objects: dict[str, tuple[str, str]]) -> dict[str, LockedMark]:
    """
    `mirror_watermark_lock` for many objects at once: `objects` maps object id → (object type, customer id or "").
    Rows are created if missing and locked in object-id order, so two batches (or a batch and a single event, which
    locks one mark) never wait on each other in a cycle over marks.
    """
    from django.db import connection

    from ..models import MirrorWatermark

    ordered = sorted(objects)
    if connection.vendor == "postgresql":
        with connection.cursor() as cursor:
            cursor.execute(
                "INSERT INTO billing_mirrorwatermark (stripe_object_id, object_type, state_at, stripe_event_id, "
                "deleted, updated_at) SELECT u.id, u.kind, -1, '', false, now() "
                "FROM unnest(%s::varchar[], %s::varchar[]) WITH ORDINALITY AS u(id, kind, n) ORDER BY u.n "
                "ON CONFLICT (stripe_object_id) DO UPDATE SET object_type = EXCLUDED.object_type "
                "RETURNING stripe_object_id, state_at, stripe_event_id, deleted",
                [ordered, [objects[object_id][0] for object_id in ordered]])
            marks = {row[0]: MirrorWatermark(stripe_object_id=row[0], object_type=objects[row[0]][0],
                                             state_at=row[1], stripe_event_id=row[2], deleted=row[3])
                     for row in cursor.fetchall()}
    else:
        MirrorWatermark.objects.bulk_create(
            [MirrorWatermark(stripe_object_id=object_id, object_type=objects[object_id][0]) for object_id in ordered],
            ignore_conflicts=True)
        marks = {mark.stripe_object_id: mark for mark in
                 MirrorWatermark.objects.select_for_update().filter(stripe_object_id__in=ordered).order_by("pk")}
    updated_at: dict[str, int] = {}
    by_type: dict[str, list[str]] = {}
    for object_id, (object_type, _customer_id) in objects.items():
        by_type.setdefault(object_type, []).append(object_id)
    for object_type, ids in by_type.items():
        for object_id, updated in _model_for(object_type).objects.filter(id__in=ids).values_list(
                "id", "djstripe_updated"):
            updated_at[object_id] = int(updated.timestamp())
    customer_ids = {customer_id for _type, customer_id in objects.values() if customer_id}
    mirrored = set(_model_for("customer").objects.filter(id__in=customer_ids).values_list("id", flat=True))
    return {
        object_id: LockedMark(mark=marks[object_id], row_updated_at=updated_at.get(object_id),
                              customer_mirrored=(customer_id in mirrored) if customer_id else None)
        for object_id, (_type, customer_id) in objects.items()
    }


def _bulk_writable(model) -> bool:
    """
    dj-stripe types whose sync is "record, save, post-save hook" with nothing between: no own `save` or pre-save hook
    (Customer re-attaches its subscriber there, a payment method its customer). Those keep `sync_from_stripe_data`.
    """
    from djstripe.models.base import StripeModel

    return (model._attach_objects_hook is StripeModel._attach_objects_hook
            and model.save is StripeModel.save)


def mirror_apply_event_payloads(*, objects: list[dict]) -> None:
    """
    `mirror_apply_event_payload` for a batch of events' snapshots, one per object (the newest of the batch), whose
    customers are mirrored (the caller checked, under the marks' locks it holds). Same rows as dj-stripe's
    `sync_from_stripe_data` would write, fewer statements: each type's rows in one upsert, foreign keys to the
    batch's customers resolved from one read.
    """
    from djstripe.models import Customer

    configure_module_sdk()
    customer_ids = {stripe_object_customer_id(data) for data in objects} - {""}
    rows = {(Customer, customer.id): customer
            for customer in Customer.stripe_objects.filter(id__in=customer_ids)} if customer_ids else {}
    token = _BATCH_ROWS.set(rows)
    try:
        by_kind: dict[str, list[dict]] = {}
        for data in objects:
            by_kind.setdefault(data["object"], []).append(data)
        for kind, group in by_kind.items():
            model = _model_for(kind)
            if _bulk_writable(model):
                _bulk_upsert(model, [_prepared(data) for data in group])
            else:
                for data in group:
                    _sync(kind=kind, data=data, customer_mirrored=True)
    finally:
        _BATCH_ROWS.reset(token)



def _bulk_upsert(model, group: list[dict]) -> None:
    """What `sync_from_stripe_data` does per object (record, save, post-save hook; these types have no pre-save
    hook), with the saves in bulk."""
    from djstripe.settings import djstripe_settings

    api_key = djstripe_settings.STRIPE_SECRET_KEY
    built = []
    for data in group:
        pending: list = []
        record = model._stripe_object_to_record(data, current_ids={data["id"]}, pending_relations=pending,
                                                api_key=api_key)
        built.append((model(**record), data, pending, tuple(sorted(record))))
    # dj-stripe leaves out a foreign key the payload does not carry (the update keeps the stored value), so the
    # columns to update differ between objects: one upsert per distinct set.
    by_columns: dict[tuple, list] = {}
    for instance, _data, _pending, columns in built:
        by_columns.setdefault(columns, []).append(instance)
    for columns, instances in by_columns.items():
        # Only columns: a reverse one-to-one in the record is not saved by dj-stripe's `save()` either.
        model.objects.bulk_create(
            instances, update_conflicts=True, unique_fields=["id"],
            update_fields=[name for name in columns if name != "id" and model._meta.get_field(name).concrete]
            + ["djstripe_updated"])
    for instance, data, pending, _columns in built:
        instance._attach_objects_post_save_hook(model, data, api_key=api_key, pending_relations=pending)


def djstripe_batch_lookup_install() -> None:
    """dj-stripe's foreign-key lookups (`_get_or_create_from_stripe_object` on a nested field) read `_BATCH_ROWS`."""
    from djstripe.models.base import StripeModel
    from djstripe.utils import get_id_from_stripe_data

    if getattr(StripeModel, "_billing_batch_lookup_installed", False):
        return
    original = StripeModel._get_or_create_from_stripe_object.__func__

    def _get_or_create_from_stripe_object(cls, data, field_name="id", *args, **kwargs):
        rows = _BATCH_ROWS.get()
        if rows and field_name != "id":
            hit = rows.get((cls, get_id_from_stripe_data(data.get(field_name))))
            if hit is not None:
                return hit, False
        return original(cls, data, field_name, *args, **kwargs)

    StripeModel._get_or_create_from_stripe_object = classmethod(_get_or_create_from_stripe_object)
    StripeModel._billing_batch_lookup_installed = True
