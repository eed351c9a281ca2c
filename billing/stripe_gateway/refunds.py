"""
Refunds and the charge reads they need (back office). Every write carries an idempotency key built by the caller
from its own row: a refund request's key is `refund_request:<id>` (see billing.backoffice.refunds).
"""
from ._core import client, stripe_operation, to_dict, write_options
from .payments import charge_retrieve  # noqa: F401  (one definition; the back office reads charges from here)


@stripe_operation("refund_create")
def refund_create(*, charge_id: str, amount_minor: int, reason: str, idempotency_key: str,
                  metadata: dict[str, str] | None = None) -> dict:
    """Refund `amount_minor` (minor units of the charge's currency) of a charge."""
    params = {"charge": charge_id, "amount": int(amount_minor), "reason": reason, "metadata": metadata or {}}
    return to_dict(client().v1.refunds.create(params=params, options=write_options(idempotency_key)))


@stripe_operation("refund_retrieve")
def refund_retrieve(*, refund_id: str) -> dict:
    return to_dict(client().v1.refunds.retrieve(refund_id))


@stripe_operation("refunds_for_charge")
def refunds_for_charge(*, charge_id: str) -> list[dict]:
    """Every refund of a charge (auto-paginated): used to find a refund whose answer we never stored."""
    page = client().v1.refunds.list(params={"charge": charge_id, "limit": 100})
    return [to_dict(refund) for refund in page.auto_paging_iter()]


@stripe_operation("payment_intent_create_confirmed")
def payment_intent_create_confirmed(*, customer_id: str, amount_minor: int, currency: str, payment_method: str,
                                    idempotency_key: str, description: str = "",
                                    metadata: dict[str, str] | None = None) -> dict:
    """
    Charge a customer's payment method at once (demo data and tests: one-off payments that can then be refunded).
    Returns the PaymentIntent with `latest_charge` expanded.
    """
    params = {
        "customer": customer_id,
        "amount": int(amount_minor),
        "currency": currency.lower(),
        "payment_method": payment_method,
        "confirm": True,
        "off_session": True,
        "description": description,
        "metadata": metadata or {},
        "expand": ["latest_charge"],
    }
    if not description:
        params.pop("description")
    return to_dict(client().v1.payment_intents.create(params=params, options=write_options(idempotency_key)))
