"""Subscriptions and invoices (including the proration preview shown before a plan change)."""
from ._core import client, stripe_operation, to_dict, write_options


@stripe_operation("subscription_retrieve")
def subscription_retrieve(*, subscription_id: str) -> dict:
    return to_dict(client().v1.subscriptions.retrieve(subscription_id))


@stripe_operation("subscription_update")
def subscription_update(*, subscription_id: str, params: dict, idempotency_key: str) -> dict:
    return to_dict(client().v1.subscriptions.update(subscription_id, params=params, options=write_options(idempotency_key)))


@stripe_operation("subscription_cancel")
def subscription_cancel(*, subscription_id: str, idempotency_key: str, prorate: bool = False) -> dict:
    return to_dict(
        client().v1.subscriptions.cancel(subscription_id, params={"prorate": prorate},
                                         options=write_options(idempotency_key))
    )


@stripe_operation("invoice_create_preview")
def invoice_create_preview(*, params: dict) -> dict:
    # A preview writes nothing on Stripe's side: no idempotency key needed (it is a read in all but verb).
    return to_dict(client().v1.invoices.create_preview(params=params))
