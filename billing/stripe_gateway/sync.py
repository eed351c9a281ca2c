"""
Re-retrieve any object by its type, for re-syncing the local mirror (dj-stripe) from Stripe's current state.
Also verifies webhook signatures, because that is the SDK's job and only this package imports it.
"""
from ._core import client, stripe_operation, to_dict

_RETRIEVERS = {
    "customer": lambda c, i: c.v1.customers.retrieve(i),
    "subscription": lambda c, i: c.v1.subscriptions.retrieve(i),
    "invoice": lambda c, i: c.v1.invoices.retrieve(i),
    "payment_intent": lambda c, i: c.v1.payment_intents.retrieve(i),
    "charge": lambda c, i: c.v1.charges.retrieve(i),
    "refund": lambda c, i: c.v1.refunds.retrieve(i),
    "dispute": lambda c, i: c.v1.disputes.retrieve(i),
    "checkout.session": lambda c, i: c.v1.checkout.sessions.retrieve(i),
    "product": lambda c, i: c.v1.products.retrieve(i),
    "price": lambda c, i: c.v1.prices.retrieve(i),
    "payment_method": lambda c, i: c.v1.payment_methods.retrieve(i),
    "setup_intent": lambda c, i: c.v1.setup_intents.retrieve(i),
}



def stripe_object_customer_id(obj: dict) -> str:
    """The customer an object belongs to (its `customer`, an id or an expanded customer), or ''."""
    customer = (obj or {}).get("customer")
    if isinstance(customer, dict):
        customer = customer.get("id")
    return customer or ""

@stripe_operation("object_retrieve")
def object_retrieve(*, object_type: str, object_id: str) -> dict:
    """Current state of a Stripe object (KeyError for a type we do not re-sync)."""
    return to_dict(_RETRIEVERS[object_type](client(), object_id))


@stripe_operation("list_remaining")
def list_remaining(*, url: str, starting_after: str) -> list[dict]:
    """
    The rest of a list Stripe embedded in an object (an invoice's `lines` past the first 10, say): every page of
    the list's own `url` after `starting_after`.
    """
    stripe_client = client()
    rows: list[dict] = []
    while True:
        page = stripe_client.deserialize(
            stripe_client.raw_request("get", url, limit=100, starting_after=starting_after), api_mode="V1")
        rows.extend(to_dict(obj) for obj in page.data)
        if not page.has_more or not page.data:
            return rows
        starting_after = page.data[-1].id


class SignatureError(Exception):
    """The webhook's signature or timestamp is not acceptable (forged, wrong secret, or older than the tolerance)."""


def webhook_signature_verify(*, payload: str, signature_header: str, secret: str, tolerance_seconds: int) -> None:
    import stripe

    try:
        stripe.WebhookSignature.verify_header(payload, signature_header, secret, tolerance_seconds)
    except stripe.SignatureVerificationError as error:
        raise SignatureError(str(error)) from error
