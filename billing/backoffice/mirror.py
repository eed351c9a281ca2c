"""
Keep dj-stripe's mirror fresh for the objects the back office touches: fetch through our gateway, store with dj-stripe's
`sync_from_stripe_data`. The customer is synced first from its own payload, so dj-stripe never has to fetch it itself.
"""
import json
import logging

from djstripe import models as djstripe_models

from billing.stripe_gateway.sync import object_retrieve

logger = logging.getLogger("billing.backoffice")

MODELS = {
    "customer": djstripe_models.Customer,
    "subscription": djstripe_models.Subscription,
    "invoice": djstripe_models.Invoice,
    "charge": djstripe_models.Charge,
    "payment_intent": djstripe_models.PaymentIntent,
    "refund": djstripe_models.Refund,
    "payment_method": djstripe_models.PaymentMethod,
}


def _customer_id(data: dict) -> str | None:
    customer = data.get("customer")
    if isinstance(customer, dict):
        return customer.get("id")
    return customer or None


def mirror_customer_ensure(*, customer_id: str | None) -> djstripe_models.Customer | None:
    if not customer_id:
        return None
    existing = djstripe_models.Customer.objects.filter(id=customer_id).first()
    if existing is not None:
        return existing
    data = object_retrieve(object_type="customer", object_id=customer_id)
    return djstripe_models.Customer.sync_from_stripe_data(_plain(data))


class _ItemList(dict):
    """
    An embedded list (a subscription's `items`, an invoice's `lines`) as dj-stripe 2.11 walks it: iterating or
    `auto_paging_iter()` yields the rows, like the SDK's ListObject, while it stays a JSON-storable dict. Embedded
    pages are complete for what this project sells (a few items or lines per object).
    """

    def auto_paging_iter(self):
        return iter(self.get("data") or [])

    def __iter__(self):
        return iter(self.get("data") or [])


def _plain(data: dict) -> dict:
    # The SDK's to_dict() turns `*_decimal` strings into Decimal, which the JSON column cannot store: put back the
    # strings Stripe sent.
    return json.loads(json.dumps(data, default=str))


def mirror_store(*, kind: str, data: dict):
    """Store a Stripe object we already hold (an API answer or a webhook's re-retrieved object)."""
    data = _plain(data)
    if kind == "customer":
        return djstripe_models.Customer.sync_from_stripe_data(data)
    mirror_customer_ensure(customer_id=_customer_id(data))
    for key in ("items", "lines"):
        if isinstance(data.get(key), dict) and data[key].get("object") == "list":
            data[key] = _ItemList(data[key])
    return MODELS[kind].sync_from_stripe_data(data)


def mirror_refresh(*, kind: str, object_id: str):
    """Re-retrieve one object from Stripe and store it. Returns the dj-stripe row."""
    return mirror_store(kind=kind, data=object_retrieve(object_type=kind, object_id=object_id))
