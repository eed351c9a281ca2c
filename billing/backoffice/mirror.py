"""
Keep dj-stripe's mirror fresh for the objects the back office touches: fetch through our gateway, store with dj-stripe's
`sync_from_stripe_data`. The customer is synced first from its own payload, so dj-stripe never has to fetch it itself.
"""
import logging

from djstripe import models as djstripe_models

from billing.stripe_gateway import backoffice as gateway

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
    return djstripe_models.Customer.sync_from_stripe_data(gateway.customer_retrieve(customer_id=customer_id))


def mirror_store(*, kind: str, data: dict):
    """Store a Stripe object we already hold (an API answer or a webhook's re-retrieved object)."""
    if kind == "customer":
        return djstripe_models.Customer.sync_from_stripe_data(data)
    mirror_customer_ensure(customer_id=_customer_id(data))
    return MODELS[kind].sync_from_stripe_data(data)


def mirror_refresh(*, kind: str, object_id: str):
    """Re-retrieve one object from Stripe and store it. Returns the dj-stripe row."""
    return mirror_store(kind=kind, data=gateway.object_retrieve(kind=kind, object_id=object_id))
