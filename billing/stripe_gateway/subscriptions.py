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


@stripe_operation("invoice_retrieve")
def invoice_retrieve(*, invoice_id: str) -> dict:
    return to_dict(client().v1.invoices.retrieve(invoice_id, params={"expand": ["payments"]}))


@stripe_operation("subscription_schedule_create")
def subscription_schedule_create(*, params: dict, idempotency_key: str) -> dict:
    return to_dict(client().v1.subscription_schedules.create(params=params, options=write_options(idempotency_key)))


@stripe_operation("subscription_schedule_update")
def subscription_schedule_update(*, schedule_id: str, params: dict, idempotency_key: str) -> dict:
    return to_dict(client().v1.subscription_schedules.update(
        schedule_id, params=params, options=write_options(idempotency_key)))


@stripe_operation("subscription_schedule_retrieve")
def subscription_schedule_retrieve(*, schedule_id: str) -> dict:
    return to_dict(client().v1.subscription_schedules.retrieve(schedule_id))


@stripe_operation("subscription_schedule_release")
def subscription_schedule_release(*, schedule_id: str, idempotency_key: str) -> dict:
    return to_dict(client().v1.subscription_schedules.release(
        schedule_id, params={}, options=write_options(idempotency_key)))


@stripe_operation("invoice_void")
def invoice_void(*, invoice_id: str, idempotency_key: str) -> dict:
    return to_dict(client().v1.invoices.void_invoice(invoice_id, params={}, options=write_options(idempotency_key)))
