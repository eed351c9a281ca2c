"""
Stripe Billing meters (owned by usage): meter lookup, meter events, meter event summaries, meter event adjustments.
Every write passes an idempotency key derived from the project's own row (usage.models.MeterReport).
"""
from datetime import datetime

from ._core import client, stripe_operation, to_dict, write_options


def _ts(moment: datetime) -> int:
    return int(moment.timestamp())


@stripe_operation("meters.find_by_event_name")
def meter_find_by_event_name(*, event_name: str) -> dict | None:
    """The active meter that counts `event_name`, or None."""
    for meter in client().v1.billing.meters.list(params={"limit": 100}).auto_paging_iter():
        data = to_dict(meter)
        if data.get("event_name") == event_name and data.get("status", "active") == "active":
            return data
    return None


@stripe_operation("meters.meter_event_create")
def meter_event_create(*, event_name: str, stripe_customer_id: str, value: int, identifier: str,
                       timestamp: datetime, idempotency_key: str) -> dict:
    """
    Report `value` units for a customer. Stripe counts an `identifier` once (it rejects a repeat for a day), and the
    idempotency key replays the first answer to a retried request, so a retry never double-bills.
    """
    event = client().v1.billing.meter_events.create(
        params={
            "event_name": event_name,
            "identifier": identifier,
            "timestamp": _ts(timestamp),
            "payload": {"stripe_customer_id": stripe_customer_id, "value": str(int(value))},
        },
        options=write_options(idempotency_key),
    )
    return to_dict(event)


@stripe_operation("meters.meter_event_summaries")
def meter_event_summaries(*, meter_id: str, stripe_customer_id: str, start: datetime, end: datetime) -> list[dict]:
    """Stripe's aggregated totals for a customer between two minute-aligned times (end exclusive)."""
    summaries = client().v1.billing.meters.event_summaries.list(
        meter_id,
        params={"customer": stripe_customer_id, "start_time": _ts(start), "end_time": _ts(end), "limit": 100},
    )
    return [to_dict(summary) for summary in summaries.auto_paging_iter()]


@stripe_operation("meters.meter_event_adjustment_cancel")
def meter_event_adjustment_cancel(*, event_name: str, identifier: str, idempotency_key: str) -> dict:
    """Cancel a meter event we sent (by its identifier; Stripe allows it within 24 hours of the event)."""
    adjustment = client().v1.billing.meter_event_adjustments.create(
        params={"event_name": event_name, "type": "cancel", "cancel": {"identifier": identifier}},
        options=write_options(idempotency_key),
    )
    return to_dict(adjustment)
