"""
Webhook handler registry: `{event_type: [handlers]}`. The pipeline (billing core) stores, dedupes and orders events,
then calls every handler registered for the event's type. Any app registers handlers with the decorator:

    @webhook_handler("charge.refunded")
    def refund_requests_on_charge_refunded(*, event: dict) -> None: ...

Handlers receive the raw Stripe event dict (`event["data"]["object"]`), must be safe to run twice (the pipeline
applies an event once, but a replay after a partial failure runs all handlers again) and should re-retrieve an
object from Stripe through the gateway when its current state matters more than the event's snapshot.
"""
from collections import defaultdict
from collections.abc import Callable

WebhookHandler = Callable[..., None]

HANDLERS: dict[str, list[WebhookHandler]] = defaultdict(list)


def webhook_handler(*event_types: str) -> Callable[[WebhookHandler], WebhookHandler]:
    def register(func: WebhookHandler) -> WebhookHandler:
        for event_type in event_types:
            if func not in HANDLERS[event_type]:
                HANDLERS[event_type].append(func)
        return func

    return register


def handlers_for(event_type: str) -> list[WebhookHandler]:
    return list(HANDLERS.get(event_type, ()))
