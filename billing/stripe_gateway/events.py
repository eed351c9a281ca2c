"""Events (the sweep for missed deliveries) and webhook endpoints."""
from collections.abc import Iterator

from ._core import client, stripe_operation, to_dict, write_options


@stripe_operation("event_list")
def event_list_page(*, created_gte: int, starting_after: str | None = None, limit: int = 100) -> tuple[list[dict], bool]:
    params: dict = {"created": {"gte": created_gte}, "limit": limit}
    if starting_after:
        params["starting_after"] = starting_after
    page = client().v1.events.list(params=params)
    return [to_dict(e) for e in page.data], bool(page.has_more)


def event_iter(*, created_gte: int) -> Iterator[dict]:
    """Every event created at or after `created_gte` (unix seconds), newest first, page by page."""
    starting_after = None
    while True:
        events, has_more = event_list_page(created_gte=created_gte, starting_after=starting_after)
        yield from events
        if not has_more or not events:
            return
        starting_after = events[-1]["id"]


@stripe_operation("webhook_endpoint_list")
def webhook_endpoint_list() -> list[dict]:
    page = client().v1.webhook_endpoints.list(params={"limit": 100})
    return [to_dict(e) for e in page.data]


@stripe_operation("webhook_endpoint_create")
def webhook_endpoint_create(*, params: dict, idempotency_key: str) -> dict:
    """The answer carries `secret`: the only time Stripe ever shows it."""
    return to_dict(client().v1.webhook_endpoints.create(params=params, options=write_options(idempotency_key)))


@stripe_operation("webhook_endpoint_update")
def webhook_endpoint_update(*, endpoint_id: str, params: dict, idempotency_key: str) -> dict:
    return to_dict(client().v1.webhook_endpoints.update(endpoint_id, params=params, options=write_options(idempotency_key)))
