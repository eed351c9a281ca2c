"""
Which project handlers react to which Stripe event type: one explicit table, loaded by `BillingConfig.ready()`.

The pipeline (`billing.services.webhooks`) stores, dedupes and orders events, lets dj-stripe mirror the object, then
calls the handlers listed here for the event's type, in the order listed, inside one savepoint. A handler receives the
raw Stripe event dict (`event["data"]["object"]`), must be safe to run twice (the pipeline applies an event once,
but a replay after a partial failure runs all handlers again) and re-retrieves an object from Stripe through the
gateway when its current state matters more than the event's snapshot.

Every event type here must be one the webhook endpoint subscribes to (`billing.services.setup.WEBHOOK_EVENTS`), or
its handlers would never run; a test checks both that and the table's exact contents.
"""
from collections.abc import Callable

WebhookHandler = Callable[..., None]

# Filled from `webhook_handler_table()` at start-up; read by `handlers_for` (and the webhook console's type filter).
HANDLERS: dict[str, list[WebhookHandler]] = {}


def webhook_handler_table() -> dict[str, list[WebhookHandler]]:
    """The table itself. Imports are local: handler modules import services and models, loaded after the registry."""
    from billing.backoffice import webhook_handlers as backoffice
    from billing.webhooks import handlers as core

    return {
        "checkout.session.completed": [core.checkout_session_completed],
        "checkout.session.async_payment_succeeded": [core.checkout_session_completed],
        "checkout.session.async_payment_failed": [core.checkout_session_async_payment_failed],
        "customer.deleted": [core.customer_deleted],
        "customer.subscription.created": [core.subscription_created],
        "customer.subscription.updated": [core.subscription_updated],
        "customer.subscription.deleted": [core.subscription_deleted],
        "customer.subscription.trial_will_end": [core.subscription_trial_will_end],
        "invoice.paid": [core.invoice_paid],
        "invoice.payment_failed": [core.invoice_payment_failed],
        # Which invoice a payment paid (charges and payment intents no longer say it since API 2025-03).
        "invoice_payment.paid": [core.invoice_payment_paid],
        "payment_intent.succeeded": [core.payment_intent_succeeded],
        # The customer's refund email first, then the back office moves its refund requests.
        "charge.refunded": [core.charge_refunded, backoffice.refund_requests_on_charge_refunded],
        # Flag the team and tell finance, then close the refund requests a dispute blocks.
        "charge.dispute.created": [core.dispute_created, backoffice.refund_requests_on_dispute],
        "refund.created": [backoffice.refund_requests_on_refund_event],
        "refund.updated": [backoffice.refund_requests_on_refund_event],
        "refund.failed": [backoffice.refund_requests_on_refund_event],
        "charge.refund.updated": [backoffice.refund_requests_on_refund_event],
        # Credit notes issued by the back office (or anywhere else) into the project's CreditNote mirror.
        "credit_note.created": [backoffice.credit_note_on_event],
        "credit_note.updated": [backoffice.credit_note_on_event],
        "credit_note.voided": [backoffice.credit_note_on_event],
    }


def webhook_handlers_load() -> None:
    """Read the table into HANDLERS (BillingConfig.ready(); idempotent)."""
    HANDLERS.clear()
    HANDLERS.update(webhook_handler_table())


def handlers_for(event_type: str) -> list[WebhookHandler]:
    return list(HANDLERS.get(event_type, ()))
