"""Metered overage is on the subscription: Checkout adds it, plan changes swap it, renewals invoice the usage."""

import pytest

from billing.selectors import subscription_items, team_plan, team_subscription
from billing.stripe_gateway.subscriptions import subscription_retrieve

from .conftest import advance_clock, clock_customer
from .test_flows import deliver_new, owner_client, subscribe  # noqa: F401  (owner_client is a fixture)


def _lookup_keys(subscription: dict) -> dict[str, str]:
    """usage_type -> lookup key of a Stripe subscription's items (one item of each kind expected)."""
    out: dict[str, str] = {}
    for item in subscription["items"]["data"]:
        usage_type = item["price"]["recurring"]["usage_type"]
        assert usage_type not in out, "one licensed and one metered item expected"
        out[usage_type] = item["price"]["lookup_key"]
    return out


@pytest.mark.django_db
def test_pro_checkout_puts_the_flat_price_and_the_metered_overage_price_on_the_subscription(
        billing_world, owner_client, team, stripe_emulator):  # noqa: F811
    subscribe(owner_client, stripe_emulator)
    deliver_new(owner_client, billing_world, set())
    mirrored = team_subscription(team=team)
    stripe_side = subscription_retrieve(subscription_id=mirrored.id)
    assert _lookup_keys(stripe_side) == {"licensed": "pro_monthly", "metered": "pro_overage_api_call"}
    metered = next(i for i in stripe_side["items"]["data"] if i["price"]["recurring"]["usage_type"] == "metered")
    assert metered.get("quantity") is None  # metered prices take no quantity
    assert len(subscription_items(mirrored)) == 2
    # The plan is read from the licensed item, whatever the order of the items.
    assert team_plan(team=team).key == "pro"
    body = owner_client.get("/api/v1/subscription/").json()
    assert body["plan"]["lookup_key"] == "pro_monthly"


@pytest.mark.django_db
def test_yearly_checkout_carries_the_yearly_overage_price(billing_world, owner_client, team, stripe_emulator):  # noqa: F811
    subscribe(owner_client, stripe_emulator, lookup_key="team_yearly")
    deliver_new(owner_client, billing_world, set())
    stripe_side = subscription_retrieve(subscription_id=team_subscription(team=team).id)
    assert _lookup_keys(stripe_side) == {"licensed": "team_yearly", "metered": "team_overage_api_call_yearly"}
    assert {i["price"]["recurring"]["interval"] for i in stripe_side["items"]["data"]} == {"year"}
    assert team_plan(team=team).key == "team"


@pytest.mark.django_db
def test_upgrade_swaps_both_items_and_the_preview_equals_the_invoiced_proration(
        billing_world, owner_client, team, stripe_emulator, settings):  # noqa: F811
    settings.TRIAL_PERIOD_DAYS = 0
    seen: set[str] = set()
    subscribe(owner_client, stripe_emulator)
    deliver_new(owner_client, billing_world, seen)
    before = subscription_retrieve(subscription_id=team_subscription(team=team).id)
    item_ids = {i["price"]["recurring"]["usage_type"]: i["id"] for i in before["items"]["data"]}

    preview = owner_client.patch("/api/v1/subscription/", {"lookup_key": "team_monthly"},
                                 content_type="application/json").json()["preview"]
    assert preview["amount_due"] > 0
    changed = owner_client.patch("/api/v1/subscription/", {"lookup_key": "team_monthly",
                                                            "proration_date": preview["proration_date"]},
                                 content_type="application/json")
    assert changed.status_code == 200
    paid = [e["data"]["object"] for e in deliver_new(owner_client, billing_world, seen) if e["type"] == "invoice.paid"]
    assert paid and paid[-1]["amount_paid"] == preview["amount_due"]

    after = subscription_retrieve(subscription_id=before["id"])
    assert _lookup_keys(after) == {"licensed": "team_monthly", "metered": "team_overage_api_call"}
    # Swapped in place (same items, new prices), not a second pair of items.
    assert {i["price"]["recurring"]["usage_type"]: i["id"] for i in after["items"]["data"]} == item_ids
    assert team_plan(team=team).key == "team"

    # Monthly -> yearly moves the overage item to the yearly overage price in the same update.
    preview = owner_client.patch("/api/v1/subscription/", {"lookup_key": "team_yearly"},
                                 content_type="application/json").json()["preview"]
    changed = owner_client.patch("/api/v1/subscription/", {"lookup_key": "team_yearly",
                                                            "proration_date": preview["proration_date"]},
                                 content_type="application/json")
    assert changed.status_code == 200, changed.content
    paid = [e["data"]["object"] for e in deliver_new(owner_client, billing_world, seen) if e["type"] == "invoice.paid"]
    assert paid and paid[-1]["amount_paid"] == preview["amount_due"]
    after = subscription_retrieve(subscription_id=before["id"])
    assert _lookup_keys(after) == {"licensed": "team_yearly", "metered": "team_overage_api_call_yearly"}


@pytest.mark.django_db
def test_plan_change_adds_the_overage_item_to_a_subscription_that_had_none(
        billing_world, owner_client, team, stripe_emulator, settings):  # noqa: F811
    """Subscriptions started before overage items existed get theirs with the next plan change."""
    from billing.selectors import price_id_for_lookup_key
    from billing.services import customer_get_or_create
    from billing.services.mirror import mirror_store
    from billing.stripe_gateway._core import client as stripe_client

    settings.TRIAL_PERIOD_DAYS = 0
    customer_id = customer_get_or_create(team=team)
    sdk = stripe_client()
    card = sdk.v1.payment_methods.attach("pm_card_visa", params={"customer": customer_id})
    legacy = sdk.v1.subscriptions.create(params={
        "customer": customer_id, "items": [{"price": price_id_for_lookup_key("pro_monthly")}],
        "default_payment_method": card.id, "metadata": {"team_id": str(team.pk), "plan_key": "pro"},
    }, options={"idempotency_key": f"test-legacy-{team.pk}"})
    mirror_store(kind="subscription", data=legacy.to_dict(for_json=True))
    preview = owner_client.patch("/api/v1/subscription/", {"lookup_key": "team_monthly"},
                                 content_type="application/json").json()["preview"]
    changed = owner_client.patch("/api/v1/subscription/", {"lookup_key": "team_monthly",
                                                            "proration_date": preview["proration_date"]},
                                 content_type="application/json")
    assert changed.status_code == 200, changed.content
    assert _lookup_keys(subscription_retrieve(subscription_id=legacy.id)) == {
        "licensed": "team_monthly", "metered": "team_overage_api_call"}


@pytest.mark.django_db
def test_renewal_invoices_the_metered_overage_reported_as_meter_events(
        billing_world, owner_client, team, stripe_emulator, settings):  # noqa: F811
    from datetime import datetime, timezone as dt_timezone

    from billing.models import BillingProfile
    from billing.stripe_gateway.meters import meter_event_create

    settings.TRIAL_PERIOD_DAYS = 0
    sdk, clock, now = clock_customer(team)
    customer_id = BillingProfile.objects.get(team=team).stripe_customer_id
    seen: set[str] = set()
    subscribe(owner_client, stripe_emulator)
    deliver_new(owner_client, billing_world, seen)
    # 1,500 calls of overage in two reports, inside the first period (as usage's MeterReport rows send them).
    for n, value in enumerate((1000, 500)):
        meter_event_create(event_name="api_call", stripe_customer_id=customer_id, value=value,
                           identifier=f"test-overage-{team.pk}-{n}",
                           timestamp=datetime.fromtimestamp(now + 60 + n, tz=dt_timezone.utc),
                           idempotency_key=f"test-overage-{team.pk}-{n}")
    advance_clock(sdk, clock, now + 32 * 86400)
    new = deliver_new(owner_client, billing_world, seen)
    renewal = [e["data"]["object"] for e in new
               if e["type"] == "invoice.paid" and e["data"]["object"]["billing_reason"] == "subscription_cycle"]
    assert len(renewal) == 1
    invoice = sdk.v1.invoices.retrieve(renewal[0]["id"], params={"expand": ["lines.data.pricing.price_details"]}).to_dict()
    lines = invoice["lines"]["data"]
    metered = [line for line in lines if line.get("quantity") == 1500]
    assert len(metered) == 1 and metered[0]["amount"] == 300  # 1,500 calls x 0.2 cents
    assert invoice["amount_paid"] == 9900 + 300
