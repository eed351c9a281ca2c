"""
`billing_setup`: push the catalog (billing/catalog.toml) to Stripe idempotently, register the webhook endpoint and
mirror everything back into dj-stripe's tables.

Idempotent by comparison, not by hope: every object is first read from Stripe and compared with the catalog; only a
difference causes a write, and each write's idempotency key is derived from what it writes (so a crashed run that
is re-run replays instead of duplicating). A second run with an unchanged catalog makes no write at all.

Currencies: one Stripe price per lookup key, in the catalog's default currency (USD), with every other currency
(BRL) as `currency_options` on the same price. Checkout and subscriptions pick the currency with `currency=`, so a
lookup key names one product offer in every currency and plan changes keep the team's currency.

Prices are never edited: a changed amount creates a new price and moves the lookup key to it
(`transfer_lookup_key`), then deactivates the old price (existing subscribers keep paying it until they change).
"""
import hashlib
import json
import logging
import uuid
from collections.abc import Callable
from dataclasses import dataclass, field
from decimal import Decimal

from django.conf import settings
from django.urls import reverse

from ..catalog import Catalog, load_catalog
from ..stripe_gateway import events as events_gateway
from ..stripe_gateway import products as products_gateway
from ..stripe_gateway.deferred_reads import atomic_with_stripe_reads
from .mirror import mirror_store

logger = logging.getLogger(__name__)

# Event types the webhook endpoint subscribes to: what the mirror and the project's handlers use.
WEBHOOK_EVENTS = sorted({
    "checkout.session.completed", "checkout.session.async_payment_succeeded",
    "checkout.session.async_payment_failed", "checkout.session.expired",
    "customer.created", "customer.updated", "customer.deleted",
    "customer.subscription.created", "customer.subscription.updated", "customer.subscription.deleted",
    "customer.subscription.trial_will_end", "customer.subscription.paused", "customer.subscription.resumed",
    # A plan change waiting for its payment (pending_if_incomplete): the mirror follows it applying or expiring.
    "customer.subscription.pending_update_applied", "customer.subscription.pending_update_expired",
    "invoice.created", "invoice.finalized", "invoice.paid", "invoice.payment_failed", "invoice.payment_succeeded",
    "invoice.updated", "invoice.voided", "invoice.marked_uncollectible",
    "invoice_payment.paid",
    "payment_intent.succeeded", "payment_intent.payment_failed", "payment_intent.requires_action",
    "payment_intent.canceled",
    "charge.succeeded", "charge.failed", "charge.refunded", "charge.updated",
    "charge.dispute.created", "charge.dispute.updated", "charge.dispute.closed", "charge.dispute.funds_withdrawn",
    "refund.created", "refund.updated", "refund.failed", "charge.refund.updated",
    "credit_note.created", "credit_note.updated", "credit_note.voided",
    "payment_method.attached", "payment_method.detached",
    "product.created", "product.updated", "price.created", "price.updated",
})
PORTAL_MARKER = "billing_setup"


def _digest(data) -> str:
    return hashlib.sha256(json.dumps(data, sort_keys=True, default=str).encode()).hexdigest()[:16]


@dataclass
class SetupReport:
    writes: int = 0
    lines: list[str] = field(default_factory=list)


class _Pusher:
    def __init__(self, catalog: Catalog, out: Callable[[str], None]):
        self.catalog = catalog
        self.out = out
        self.report = SetupReport()

    def say(self, line: str) -> None:
        self.report.lines.append(line)
        self.out(line)

    def wrote(self, line: str) -> None:
        self.report.writes += 1
        self.say(line)

    # -- meters ---------------------------------------------------------------------------------------------------
    def meters(self) -> dict[str, dict]:
        existing = {m["event_name"]: m for m in products_gateway.billing_meter_list() if m.get("status") == "active"}
        by_key: dict[str, dict] = {}
        for meter in self.catalog.meters:
            found = existing.get(meter.event_name)
            if found is None:
                found = products_gateway.billing_meter_create(
                    params={
                        "display_name": meter.display_name,
                        "event_name": meter.event_name,
                        "default_aggregation": {"formula": "sum"},
                        "customer_mapping": {"type": "by_id", "event_payload_key": "stripe_customer_id"},
                        "value_settings": {"event_payload_key": "value"},
                    },
                    idempotency_key=f"meter:{meter.event_name}",
                )
                self.wrote(f"  meter {meter.key}: created {found['id']}")
            else:
                self.say(f"  meter {meter.key}: up to date ({found['id']})")
            by_key[meter.key] = found
        return by_key

    # -- products -------------------------------------------------------------------------------------------------
    def products(self) -> dict[str, dict]:
        """Products by catalog key (`plan:pro`, `credit_pack:credits_10`), found by metadata `catalog_key`."""
        existing = {
            (p.get("metadata") or {}).get("catalog_key"): p
            for p in products_gateway.product_list()
            if (p.get("metadata") or {}).get("catalog_key")
        }
        wanted: list[tuple[str, dict]] = []
        for plan in self.catalog.plans:
            if plan.is_free:
                continue
            wanted.append((f"plan:{plan.key}", {
                "name": plan.name, "description": plan.description or None,
                "metadata": {"catalog_key": f"plan:{plan.key}", "plan_key": plan.key},
            }))
        for pack in self.catalog.credit_packs:
            wanted.append((f"credit_pack:{pack.key}", {
                "name": pack.name, "description": None,
                "metadata": {"catalog_key": f"credit_pack:{pack.key}", "credits": str(pack.credits)},
            }))
        products: dict[str, dict] = {}
        for key, desired in wanted:
            current = existing.get(key)
            params = {k: v for k, v in desired.items() if v is not None}
            if current is None:
                current = products_gateway.product_create(params=params, idempotency_key=f"product:{key}:{_digest(params)}")
                self.wrote(f"  product {key}: created {current['id']}")
            elif (current.get("name") != desired["name"] or (current.get("description") or None) != desired["description"]
                  or not current.get("active", True)
                  or any((current.get("metadata") or {}).get(k) != v for k, v in desired["metadata"].items())):
                params = {**params, "active": True}
                current = products_gateway.product_update(
                    product_id=current["id"], params=params, idempotency_key=f"product:{current['id']}:{_digest(params)}"
                )
                self.wrote(f"  product {key}: updated {current['id']}")
            else:
                self.say(f"  product {key}: up to date ({current['id']})")
            products[key] = current
        return products

    # -- prices ---------------------------------------------------------------------------------------------------
    def _desired_prices(self, products: dict[str, dict], meters: dict[str, dict]) -> list[tuple[str, dict]]:
        default = self.catalog.default_currency
        out: list[tuple[str, dict]] = []
        for plan in self.catalog.plans:
            product = products.get(f"plan:{plan.key}")
            for price in plan.prices:
                out.append((price.lookup_key, {
                    "product": product["id"], "currency": default, "unit_amount": price.amounts[default],
                    "currency_options": {c: {"unit_amount": a} for c, a in price.amounts.items() if c != default},
                    "recurring": {"interval": price.interval, "usage_type": "licensed"},
                    "metadata": {"plan_key": plan.key, "catalog_kind": "plan"},
                }))
            for overage in plan.overage_prices:
                out.append((overage.lookup_key, {
                    "product": product["id"], "currency": default,
                    "unit_amount_decimal": overage.unit_amount_decimal[default],
                    "currency_options": {
                        c: {"unit_amount_decimal": a} for c, a in overage.unit_amount_decimal.items() if c != default
                    },
                    "recurring": {"interval": overage.interval, "usage_type": "metered",
                                  "meter": meters[overage.meter]["id"]},
                    "metadata": {"plan_key": plan.key, "catalog_kind": "overage", "meter": overage.meter},
                }))
        for pack in self.catalog.credit_packs:
            product = products[f"credit_pack:{pack.key}"]
            out.append((pack.lookup_key, {
                "product": product["id"], "currency": default, "unit_amount": pack.amounts[default],
                "currency_options": {c: {"unit_amount": a} for c, a in pack.amounts.items() if c != default},
                "metadata": {"catalog_kind": "credit_pack", "credits": str(pack.credits)},
            }))
        return out

    @staticmethod
    def _matches(current: dict, desired: dict) -> bool:
        def dec(value) -> Decimal | None:
            return Decimal(str(value)) if value not in (None, "") else None

        if not current.get("active") or current.get("product") != desired["product"]:
            return False
        if current.get("currency") != desired["currency"]:
            return False
        if "unit_amount" in desired and current.get("unit_amount") != desired["unit_amount"]:
            return False
        if "unit_amount_decimal" in desired and dec(current.get("unit_amount_decimal")) != dec(desired["unit_amount_decimal"]):
            return False
        recurring = current.get("recurring") or {}
        want_recurring = desired.get("recurring")
        if bool(recurring) != bool(want_recurring):
            return False
        if want_recurring and any(recurring.get(k) != v for k, v in want_recurring.items()):
            return False
        options = current.get("currency_options") or {}
        for currency, want in desired["currency_options"].items():
            have = options.get(currency) or {}
            if "unit_amount" in want and have.get("unit_amount") != want["unit_amount"]:
                return False
            if "unit_amount_decimal" in want and dec(have.get("unit_amount_decimal")) != dec(want["unit_amount_decimal"]):
                return False
        return all((current.get("metadata") or {}).get(k) == v for k, v in desired["metadata"].items())

    def prices(self, products: dict[str, dict], meters: dict[str, dict]) -> dict[str, dict]:
        desired_all = self._desired_prices(products, meters)
        lookup_keys = [key for key, _ in desired_all]
        existing: dict[str, dict] = {}
        for start in range(0, len(lookup_keys), 10):  # Stripe caps lookup_keys[] at 10 per request
            for price in products_gateway.price_list(lookup_keys=lookup_keys[start:start + 10]):
                existing[price["lookup_key"]] = price
        prices: dict[str, dict] = {}
        for lookup_key, desired in desired_all:
            current = existing.get(lookup_key)
            if current is not None and self._matches(current, desired):
                self.say(f"  price {lookup_key}: up to date ({current['id']})")
                prices[lookup_key] = current
                continue
            params = {**desired, "lookup_key": lookup_key, "transfer_lookup_key": True}
            created = products_gateway.price_create(params=params, idempotency_key=f"price:{lookup_key}:{_digest(params)}")
            if current is not None:
                # Never edit a price's amount: the old one stays for its subscribers, inactive for new sales.
                products_gateway.price_update(price_id=current["id"], params={"active": False},
                                              idempotency_key=f"price:{current['id']}:deactivate")
                self.wrote(f"  price {lookup_key}: changed, new price {created['id']} (old {current['id']} deactivated)")
            else:
                self.wrote(f"  price {lookup_key}: created {created['id']}")
            prices[lookup_key] = created
        return prices

    # -- portal ---------------------------------------------------------------------------------------------------
    def portal(self) -> dict:
        features = {
            "customer_update": {"enabled": True, "allowed_updates": ["email", "address", "name"]},
            "invoice_history": {"enabled": True},
            "payment_method_update": {"enabled": True},
            "subscription_cancel": {"enabled": True, "mode": "at_period_end"},
            # No plan switch in the portal: it would move only the flat price and leave the old plan's metered
            # overage price on the subscription (and a yearly switch needs the yearly overage price). Plan changes
            # go through the billing page / API, which swaps both items in one update after a proration preview.
            "subscription_update": {"enabled": False},
        }
        digest = _digest(features)
        configurations = [
            c for c in products_gateway.portal_configuration_list()
            if (c.get("metadata") or {}).get("managed_by") == PORTAL_MARKER
        ]
        current = configurations[0] if configurations else None
        metadata = {"managed_by": PORTAL_MARKER, "config_hash": digest}
        if current is None:
            current = products_gateway.portal_configuration_create(
                params={"features": features, "metadata": metadata,
                        "default_return_url": settings.SITE_URL + reverse("billing:overview")},
                idempotency_key=f"portal_configuration:{digest}",
            )
            self.wrote(f"  portal configuration: created {current['id']}")
        elif (current.get("metadata") or {}).get("config_hash") != digest:
            current = products_gateway.portal_configuration_update(
                configuration_id=current["id"], params={"features": features, "metadata": metadata},
                idempotency_key=f"portal_configuration:{current['id']}:{digest}",
            )
            self.wrote(f"  portal configuration: updated {current['id']}")
        else:
            self.say(f"  portal configuration: up to date ({current['id']})")
        return current

    # -- webhook endpoint -----------------------------------------------------------------------------------------
    def webhook_endpoint(self):
        """One endpoint at SITE_URL, registered through dj-stripe's WebhookEndpoint model so its secret is stored."""
        from djstripe.models import WebhookEndpoint

        prefix = settings.SITE_URL + "/stripe/webhook/"
        remote = {e["id"]: e for e in events_gateway.webhook_endpoint_list()}
        for local in WebhookEndpoint.objects.filter(url__startswith=prefix):
            current = remote.get(local.id)
            if current is None or not local.secret:
                # Gone on Stripe's side (a reset emulator, a deleted endpoint): forget our copy and its secret.
                local.delete()
                continue
            if sorted(current.get("enabled_events") or []) != WEBHOOK_EVENTS or current.get("status") != "enabled":
                updated = events_gateway.webhook_endpoint_update(
                    endpoint_id=local.id, params={"enabled_events": WEBHOOK_EVENTS, "disabled": False},
                    idempotency_key=f"webhook_endpoint:{local.id}:{_digest(WEBHOOK_EVENTS)}",
                )
                mirror_store(kind="webhook_endpoint", data={**updated, "secret": local.secret})
                self.wrote(f"  webhook endpoint: events updated {local.id}")
            else:
                self.say(f"  webhook endpoint: up to date ({local.url})")
            return WebhookEndpoint.objects.get(id=local.id)
        endpoint_uuid = uuid.uuid4()
        url = settings.SITE_URL + reverse("billing:stripe_webhook", args=[endpoint_uuid])
        created = events_gateway.webhook_endpoint_create(
            params={
                "url": url, "enabled_events": WEBHOOK_EVENTS, "api_version": settings.STRIPE_API_VERSION,
                "description": "Billing back office (billing_setup)",
                "metadata": {"djstripe_uuid": str(endpoint_uuid)},
            },
            idempotency_key=f"webhook_endpoint:{endpoint_uuid}",
        )
        def store():
            stored = mirror_store(kind="webhook_endpoint", data=created)  # dj-stripe stores `secret` from the answer
            WebhookEndpoint.objects.filter(pk=stored.pk).update(
                secret=created["secret"], djstripe_uuid=endpoint_uuid,
                djstripe_tolerance=settings.BILLING_WEBHOOK_TOLERANCE_SECONDS,
            )
            return stored

        # One transaction for the row and its secret; dj-stripe's sync may read the account from Stripe first.
        endpoint = atomic_with_stripe_reads(store)
        self.wrote(f"  webhook endpoint: registered {created['id']} at {url}")
        return WebhookEndpoint.objects.get(pk=endpoint.pk)

    # -- mirror ---------------------------------------------------------------------------------------------------
    def mirror(self, products: dict[str, dict], prices: dict[str, dict]) -> None:
        account = products_gateway.account_retrieve()
        mirror_store(kind="account", data=account)
        for product in products.values():
            mirror_store(kind="product", data=product)
        for price in prices.values():
            if "currency_options" not in price:  # a create answer: read it back with the options expanded
                price = products_gateway.price_retrieve(price_id=price["id"])
            mirror_store(kind="price", data=price)
        self.say(f"  mirrored account {account['id']}, {len(products)} products, {len(prices)} prices into dj-stripe")


def catalog_push(*, catalog: Catalog | None = None, register_webhook: bool = True,
                 out: Callable[[str], None] = logger.info) -> SetupReport:
    pusher = _Pusher(catalog or load_catalog(), out)
    pusher.say("Meters")
    meters = pusher.meters()
    pusher.say("Products")
    products = pusher.products()
    pusher.say("Prices")
    prices = pusher.prices(products, meters)
    pusher.say("Customer portal")
    pusher.portal()
    if register_webhook:
        pusher.say("Webhook endpoint")
        pusher.webhook_endpoint()
    pusher.say("Mirror")
    pusher.mirror(products, prices)
    pusher.say(f"Done: {pusher.report.writes} change(s) written to Stripe.")
    return pusher.report
