"""
Stripe calls for the back office's support actions and reconciliation (reads, subscription changes, receipts).
Writes take an idempotency key derived from the staff action's own subject (subscription id + target state).
"""
from ._core import client, stripe_operation, to_dict, write_options


@stripe_operation("customer_objects_list")
def customer_objects_list(*, kind: str, customer_id: str, limit: int = 100) -> list[dict]:
    """A customer's subscriptions, invoices, charges or payment_intents (newest first, up to `limit`)."""
    service = {
        "subscription": client().v1.subscriptions,
        "invoice": client().v1.invoices,
        "charge": client().v1.charges,
        "payment_intent": client().v1.payment_intents,
    }[kind]
    params = {"customer": customer_id, "limit": min(limit, 100)}
    if kind == "subscription":
        params["status"] = "all"
    rows = []
    for obj in service.list(params=params).auto_paging_iter():
        rows.append(to_dict(obj))
        if len(rows) >= limit:
            break
    return rows


@stripe_operation("objects_list")
def objects_list(*, kind: str, created_gte: int | None = None):
    """Iterate every subscription, invoice or charge at Stripe (auto-paginated), optionally created since a time."""
    service = {
        "subscription": client().v1.subscriptions,
        "invoice": client().v1.invoices,
        "charge": client().v1.charges,
    }[kind]
    params: dict = {"limit": 100}
    if kind == "subscription":
        params["status"] = "all"
    if created_gte is not None:
        params["created"] = {"gte": int(created_gte)}
    for obj in service.list(params=params).auto_paging_iter():
        yield to_dict(obj)


@stripe_operation("subscription_set_cancel_at_period_end")
def subscription_set_cancel_at_period_end(*, subscription_id: str, idempotency_key: str) -> dict:
    return to_dict(client().v1.subscriptions.update(
        subscription_id, params={"cancel_at_period_end": True}, options=write_options(idempotency_key)))


@stripe_operation("subscription_set_trial_end")
def subscription_set_trial_end(*, subscription_id: str, trial_end: int, idempotency_key: str) -> dict:
    """Move the trial's end (unix seconds). No proration: extending a trial is a gift, not a plan change."""
    return to_dict(client().v1.subscriptions.update(
        subscription_id, params={"trial_end": int(trial_end), "proration_behavior": "none"},
        options=write_options(idempotency_key)))


@stripe_operation("charge_resend_receipt")
def charge_resend_receipt(*, charge_id: str, receipt_email: str, idempotency_key: str) -> dict:
    """Stripe sends a receipt again whenever a charge's receipt_email is updated."""
    return to_dict(client().v1.charges.update(
        charge_id, params={"receipt_email": receipt_email}, options=write_options(idempotency_key)))

