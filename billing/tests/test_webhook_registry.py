"""The one table of webhook handlers: exactly the handlers the project has, for event types the endpoint receives."""
import inspect

from billing.backoffice import webhook_handlers as backoffice
from billing.services.setup import WEBHOOK_EVENTS
from billing.webhooks import handlers as core
from billing.webhooks.registry import HANDLERS, handlers_for, webhook_handler_table


def test_the_table_lists_exactly_the_project_handlers_in_order():
    assert webhook_handler_table() == {
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
        "charge.refunded": [core.charge_refunded, backoffice.refund_requests_on_charge_refunded],
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


def test_the_app_loaded_the_table_at_start_up():
    assert HANDLERS == webhook_handler_table()
    assert handlers_for("charge.refunded") == [core.charge_refunded, backoffice.refund_requests_on_charge_refunded]
    assert handlers_for("radar.early_fraud_warning.created") == []


def test_every_handled_event_type_is_one_the_endpoint_subscribes_to():
    # A type missing from WEBHOOK_EVENTS would never be delivered: its handlers would be dead code.
    assert set(webhook_handler_table()) - set(WEBHOOK_EVENTS) == set()


def test_every_public_handler_function_is_in_the_table():
    # A handler written but left out of the table would silently never run.
    listed = {handler for handlers in webhook_handler_table().values() for handler in handlers}
    for module in (core, backoffice):
        handlers = {function for _name, function in inspect.getmembers(module, inspect.isfunction)
                    if function.__module__ == module.__name__
                    and [(p.name, p.kind) for p in inspect.signature(function).parameters.values()]
                    == [("event", inspect.Parameter.KEYWORD_ONLY)]}
        assert handlers, module
        assert handlers <= listed, handlers - listed
