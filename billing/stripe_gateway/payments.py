"""Payment intents (one-time payments outside Checkout, with 3-D Secure) and charges."""
from ._core import client, stripe_operation, to_dict, write_options


@stripe_operation("payment_intent_create")
def payment_intent_create(*, params: dict, idempotency_key: str) -> dict:
    return to_dict(client().v1.payment_intents.create(params=params, options=write_options(idempotency_key)))


@stripe_operation("payment_intent_retrieve")
def payment_intent_retrieve(*, payment_intent_id: str) -> dict:
    return to_dict(client().v1.payment_intents.retrieve(payment_intent_id, params={"expand": ["latest_charge"]}))


@stripe_operation("charge_retrieve")
def charge_retrieve(*, charge_id: str) -> dict:
    return to_dict(client().v1.charges.retrieve(charge_id))


@stripe_operation("payment_intent_confirm")
def payment_intent_confirm(*, payment_intent_id: str, params: dict, idempotency_key: str) -> dict:
    return to_dict(client().v1.payment_intents.confirm(
        payment_intent_id, params=params, options=write_options(idempotency_key)))
