"""One Stripe customer per team, created lazily with a team-derived idempotency key, even under racing checkouts."""
import threading

import pytest
from django.db import connection

from billing.models import BillingProfile
from billing.selectors import team_stripe_customer_id
from billing.services import customer_get_or_create, customer_unlink

from .conftest import emulator_requests


@pytest.mark.django_db
def test_customer_created_once_with_team_metadata(stripe_emulator, team):
    customer_id = customer_get_or_create(team=team)
    assert customer_get_or_create(team=team) == customer_id
    creates = emulator_requests(stripe_emulator, "POST", "/v1/customers")
    assert len(creates) == 1
    from djstripe.models import Customer

    mirrored = Customer.objects.get(id=customer_id)
    assert mirrored.subscriber_id == team.pk
    assert mirrored.stripe_data["metadata"] == {"team_id": str(team.pk)}
    assert team_stripe_customer_id(team=team) == customer_id


@pytest.mark.django_db
def test_lost_link_adopts_the_customer_stripe_already_has(stripe_emulator, team):
    customer_id = customer_get_or_create(team=team)
    BillingProfile.objects.filter(team=team).update(stripe_customer_id=None)
    assert customer_get_or_create(team=team) == customer_id
    assert len(emulator_requests(stripe_emulator, "POST", "/v1/customers")) == 1


@pytest.mark.django_db
def test_unlinked_customer_is_replaced_by_a_new_one(stripe_emulator, team):
    first = customer_get_or_create(team=team)
    stripe_emulator.control("GET", "/_emulator/health")
    from billing.stripe_gateway._core import client

    client().v1.customers.delete(first)
    assert customer_unlink(stripe_customer_id=first) == team
    second = customer_get_or_create(team=team)
    assert second != first
    assert BillingProfile.objects.get(team=team).customer_generation == 1


@pytest.mark.postgres
@pytest.mark.django_db(transaction=True)
def test_concurrent_first_checkouts_create_one_customer(stripe_emulator):
    from accounts.tests.factories import make_team_with_owner

    team, _ = make_team_with_owner()
    barrier = threading.Barrier(6)
    results, errors = [], []

    def worker():
        try:
            barrier.wait()
            results.append(customer_get_or_create(team=team))
        except Exception as error:  # noqa: BLE001 - surfaced by the assertion below
            errors.append(error)
        finally:
            connection.close()

    threads = [threading.Thread(target=worker) for _ in range(6)]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join()
    assert errors == []
    assert len(set(results)) == 1
    customers = stripe_emulator.control("GET", "/_emulator/requests?path_prefix=/v1/customers&method=POST")["data"]
    # The row lock serialises the creators: exactly one create reaches Stripe.
    assert len(customers) == 1
    assert BillingProfile.objects.filter(team=team).count() == 1


@pytest.mark.django_db
def test_after_customer_deleted_no_reader_sees_a_customer_and_checkout_makes_a_new_one(billing_world, client, team,
                                                                                       stripe_emulator):
    from djstripe.models import Customer

    from billing.backoffice.selectors import customer_360
    from billing.backoffice.support import team_stripe_customer
    from billing.selectors import customer_team
    from billing.services.checkout import checkout_session_start
    from billing.stripe_gateway._core import client as stripe_client

    from .conftest import deliver, stripe_events

    first = customer_get_or_create(team=team)
    assert customer_team(stripe_customer_id=first) == team
    stripe_client().v1.customers.delete(first)
    events = stripe_events({"customer.created", "customer.deleted"})
    assert [e["type"] for e in events] == ["customer.created", "customer.deleted"]
    # Delivered out of order and twice: the late `customer.created` must not link the deleted customer again.
    for event in [events[1], events[0], events[1]]:
        assert deliver(client, billing_world, event).status_code == 200

    assert team_stripe_customer_id(team=team) is None
    assert customer_team(stripe_customer_id=first) is None
    assert Customer.objects.get(id=first).subscriber_id is None
    assert team_stripe_customer(team=team) is None
    assert customer_360(team=team)["customer_id"] is None
    assert BillingProfile.objects.get(team=team).customer_generation == 1

    start = checkout_session_start(team=team, user=None, lookup_key="pro_monthly", currency="usd", request_token="t")
    second = team_stripe_customer_id(team=team)
    assert second not in (None, first)
    assert len(emulator_requests(stripe_emulator, "POST", "/v1/customers")) == 2
    assert stripe_client().v1.checkout.sessions.retrieve(start.id).customer == second
    assert customer_team(stripe_customer_id=second) == team
    assert team_stripe_customer(team=team).id == second
