"""Checkout Sessions and Customer Portal sessions."""
from ._core import client, stripe_operation, to_dict, write_options


@stripe_operation("checkout_session_create")
def checkout_session_create(*, params: dict, idempotency_key: str) -> dict:
    return to_dict(client().v1.checkout.sessions.create(params=params, options=write_options(idempotency_key)))


@stripe_operation("checkout_session_retrieve")
def checkout_session_retrieve(*, session_id: str) -> dict:
    # A setup-mode session's card is its SetupIntent's payment method: expanded in the same round trip.
    return to_dict(client().v1.checkout.sessions.retrieve(
        session_id, params={"expand": ["line_items", "subscription", "setup_intent.payment_method"]}))


@stripe_operation("portal_session_create")
def portal_session_create(*, customer_id: str, return_url: str, idempotency_key: str,
                          configuration_id: str | None = None) -> dict:
    params = {"customer": customer_id, "return_url": return_url}
    if configuration_id:
        params["configuration"] = configuration_id
    return to_dict(client().v1.billing_portal.sessions.create(params=params, options=write_options(idempotency_key)))
