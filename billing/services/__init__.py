"""Writes for billing. Import from here: `billing.services.customer_get_or_create`, etc."""
from .customers import billing_profile_get, customer_get_or_create, customer_unlink  # noqa: F401
from .webhooks import (  # noqa: F401
    events_sweep,
    webhook_event_apply,
    webhook_event_record,
    webhook_event_replay,
)
