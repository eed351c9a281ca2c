"""Customers. A team has one Stripe customer; its metadata carries `team_id` so it can be found again by search."""
from ._core import client, stripe_operation, to_dict, write_options


@stripe_operation("customer_create")
def customer_create(*, team_id: int, email: str, name: str, idempotency_key: str) -> dict:
    params = {"email": email, "name": name, "metadata": {"team_id": str(team_id)}}
    return to_dict(client().v1.customers.create(params=params, options=write_options(idempotency_key)))


@stripe_operation("customer_search_by_team")
def customer_search_by_team(*, team_id: int) -> list[dict]:
    """Customers tagged with this team id (recovery path when our link row was lost after Stripe created one)."""
    result = client().v1.customers.search(params={"query": f"metadata['team_id']:'{int(team_id)}'", "limit": 10})
    return [to_dict(c) for c in result.data]


@stripe_operation("customer_update")
def customer_update(*, customer_id: str, params: dict, idempotency_key: str) -> dict:
    return to_dict(client().v1.customers.update(customer_id, params=params, options=write_options(idempotency_key)))


@stripe_operation("customer_payment_methods")
def customer_payment_methods(*, customer_id: str) -> list[dict]:
    page = client().v1.customers.payment_methods.list(customer_id, params={"limit": 20})
    return [to_dict(pm) for pm in page.data]


@stripe_operation("payment_method_attach")
def payment_method_attach(*, payment_method_id: str, customer_id: str, idempotency_key: str) -> dict:
    return to_dict(client().v1.payment_methods.attach(
        payment_method_id, params={"customer": customer_id}, options=write_options(idempotency_key)))


@stripe_operation("payment_method_detach")
def payment_method_detach(*, payment_method_id: str, idempotency_key: str) -> dict:
    return to_dict(client().v1.payment_methods.detach(
        payment_method_id, params={}, options=write_options(idempotency_key)))


@stripe_operation("customer_retrieve")
def customer_retrieve(*, customer_id: str) -> dict:
    return to_dict(client().v1.customers.retrieve(customer_id))


@stripe_operation("setup_intent_create")
def setup_intent_create(*, params: dict, idempotency_key: str) -> dict:
    return to_dict(client().v1.setup_intents.create(params=params, options=write_options(idempotency_key)))


@stripe_operation("setup_intent_retrieve")
def setup_intent_retrieve(*, setup_intent_id: str) -> dict:
    return to_dict(client().v1.setup_intents.retrieve(setup_intent_id))
