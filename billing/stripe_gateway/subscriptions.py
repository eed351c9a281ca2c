"""Subscriptions and invoices (including the proration preview shown before a plan change)."""
from ._core import client, stripe_operation, to_dict, write_options


@stripe_operation("subscription_retrieve")
def subscription_retrieve(*, subscription_id: str) -> dict:
    return to_dict(client().v1.subscriptions.retrieve(subscription_id))


@stripe_operation("subscription_list")
def subscription_list(*, customer_id: str, status: str = "all") -> list[dict]:
    page = client().v1.subscriptions.list(params={"customer": customer_id, "status": status, "limit": 100})
    return [to_dict(s) for s in page.data]


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


@stripe_operation("invoice_list")
def invoice_list(*, customer_id: str, limit: int = 100, starting_after: str | None = None) -> tuple[list[dict], bool]:
    params: dict = {"customer": customer_id, "limit": limit}
    if starting_after:
        params["starting_after"] = starting_after
    page = client().v1.invoices.list(params=params)
    return [to_dict(i) for i in page.data], bool(page.has_more)


@stripe_operation("invoice_retrieve")
def invoice_retrieve(*, invoice_id: str) -> dict:
    return to_dict(client().v1.invoices.retrieve(invoice_id))
