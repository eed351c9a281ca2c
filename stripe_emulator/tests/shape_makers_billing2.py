"""Shape-test makers for the second round of billing types: legacy plans, credit notes, customer balance
transactions, subscription schedules. Loaded after shape_makers_billing, so `plan` here (from the plans API)
replaces the subscription item's plan there."""
from __future__ import annotations

from typing import Any, Callable

import stripe

from .shape_makers_billing import as_dict


def _plan(client: stripe.StripeClient) -> Any:
    prod = client.v1.products.create(params={"name": "Shape legacy plan"})
    return client.v1.plans.create(params={"amount": 2000, "currency": "usd", "interval": "month", "product": prod.id})


def plan(client: stripe.StripeClient) -> dict[str, Any]:
    return as_dict(client.v1.plans.retrieve(_plan(client).id))


def deleted_plan(client: stripe.StripeClient) -> dict[str, Any]:
    return as_dict(client.v1.plans.delete(_plan(client).id))


MAKERS: dict[str, Callable[[stripe.StripeClient], dict[str, Any]]] = {
    "plan": plan,
    "deleted_plan": deleted_plan,
}

__all__ = ["MAKERS"]
