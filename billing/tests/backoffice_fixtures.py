"""
Fixtures for the back-office tests (imported with `from .backoffice_fixtures import *` by test_backoffice_*.py:
they need staff groups and mirrored payments, which the rest of billing's tests do not). Payments are made in the
emulator through our own gateway and synced into dj-stripe's tables, the same path production takes.
"""
import itertools
import json
import urllib.request

import pytest
from djstripe import models as djstripe_models

from accounts.tests.factories import make_team_with_owner
from billing.services.mirror import mirror_store
from billing.stripe_gateway import client, write_options
from billing.stripe_gateway.refunds import payment_intent_create_confirmed

from .factories import StaffUserFactory

_counter = itertools.count(1)
# dj-stripe only accepts keys shaped like Stripe's (sk_test_ + 24 or more letters and digits).
TEST_SECRET_KEY = "sk_test_backofficeEmulatorKey0000000001"


@pytest.fixture
def bo_stripe(stripe_emulator, settings):
    settings.STRIPE_SECRET_KEY = TEST_SECRET_KEY
    settings.STRIPE_TEST_SECRET_KEY = TEST_SECRET_KEY
    settings.REFUND_APPROVAL_THRESHOLD = 50000
    settings.EMAIL_BACKEND = "django.core.mail.backends.locmem.EmailBackend"
    return stripe_emulator


def emulator_get(emulator, path: str) -> dict:
    with urllib.request.urlopen(emulator.url + path, timeout=10) as response:  # noqa: S310 - loopback
        return json.loads(response.read())


def refund_posts(emulator) -> int:
    """POST /v1/refunds calls the emulator received (Stripe writes, including idempotent replays)."""
    return emulator_get(emulator, "/_emulator/requests?path_prefix=/v1/refunds&method=POST")["count"]


def emulator_refunds(emulator, charge_id: str) -> list[dict]:
    return [r for r in emulator.store.all("refund") if r.get("charge") == charge_id]


@pytest.fixture
def support_user(db):
    return StaffUserFactory(groups=["Support"])


@pytest.fixture
def finance_user(db):
    return StaffUserFactory(groups=["Finance"])


@pytest.fixture
def finance_user2(db):
    return StaffUserFactory(groups=["Finance"])


def make_customer(team) -> djstripe_models.Customer:
    """The team's Stripe customer, made the way billing makes it (linked profile, mirrored, subscriber)."""
    from billing.services import customer_get_or_create

    return djstripe_models.Customer.objects.get(id=customer_get_or_create(team=team))


def make_payment(customer_id: str, *, amount_minor: int = 9900, currency: str = "usd",
                 payment_method: str = "pm_card_visa") -> djstripe_models.Charge:
    n = next(_counter)
    pi = payment_intent_create_confirmed(customer_id=customer_id, amount_minor=amount_minor, currency=currency,
                                         payment_method=payment_method, idempotency_key=f"test_payment:{n}")
    mirror_store(kind="payment_intent", data={**pi, "latest_charge": pi["latest_charge"]["id"]})
    return mirror_store(kind="charge", data=pi["latest_charge"])


@pytest.fixture
def paying_team(bo_stripe):
    """A team with a Stripe customer and one $99.00 payment; returns (team, owner, charge)."""
    team, owner = make_team_with_owner(name="Acme Corp")
    customer = make_customer(team)
    charge = make_payment(customer.id)
    return team, owner, charge


def make_subscription(customer_id: str, *, trial_days: int | None = 7):
    """A monthly subscription (in trial by default) with its first invoice, mirrored. Returns (subscription, invoice)."""
    c = client().v1
    n = next(_counter)
    product = c.products.create(params={"name": f"Pro {n}"}, options=write_options(f"test_product:{n}")).to_dict()
    price = c.prices.create(params={"product": product["id"], "unit_amount": 9900, "currency": "usd",
                                    "recurring": {"interval": "month"}},
                            options=write_options(f"test_price:{n}")).to_dict()
    pm = c.payment_methods.attach("pm_card_visa", params={"customer": customer_id}).to_dict()
    params = {"customer": customer_id, "items": [{"price": price["id"]}], "default_payment_method": pm["id"]}
    if trial_days:
        params["trial_period_days"] = trial_days
    sub = c.subscriptions.create(params=params, options=write_options(f"test_subscription:{n}")).to_dict(for_json=True)
    subscription = mirror_store(kind="subscription", data=sub)
    invoice = mirror_store(kind="invoice", data=c.invoices.retrieve(sub["latest_invoice"]).to_dict(for_json=True))
    return subscription, invoice



# ---- staff console (issue 14): a paid subscription invoice with its charge, and a past-due subscription ----------

def invoice_charge(invoice_id: str) -> djstripe_models.Charge:
    """The mirrored charge that paid `invoice_id` (found through Stripe's invoice payments, as production does)."""
    from billing.stripe_gateway.invoice_payments import payment_intent_id_for_invoice

    pi = client().v1.payment_intents.retrieve(payment_intent_id_for_invoice(invoice_id=invoice_id)).to_dict(
        for_json=True)
    mirror_store(kind="payment_intent", data=pi)
    return mirror_store(kind="charge", data=client().v1.charges.retrieve(pi["latest_charge"]).to_dict(for_json=True))


@pytest.fixture
def subscribed_team(bo_stripe):
    """A team paying a $99.00/month subscription: returns (team, subscription, paid invoice, its charge)."""
    team, _owner = make_team_with_owner(name="Subscribed Ltd")
    customer = make_customer(team)
    subscription, invoice = make_subscription(customer.id, trial_days=None)
    assert invoice.stripe_data["status"] == "paid"
    return team, subscription, invoice, invoice_charge(invoice.id)


@pytest.fixture
def past_due_team(bo_stripe):
    """
    A team whose renewal failed: customer on a test clock, subscribed with a good card, then the default card swapped
    for one that attaches but declines (4000000000000341) and the clock moved past the renewal. Returns
    (team, subscription, failed invoice), all mirrored.
    """
    from billing.tests.conftest import advance_clock, clock_customer

    team, _owner = make_team_with_owner(name="Late Payer GmbH")
    sdk, clock, now = clock_customer(team)
    customer_id = djstripe_models.Customer.objects.get(subscriber=team).id
    subscription, _first = make_subscription(customer_id, trial_days=None)
    bad = sdk.v1.payment_methods.attach("pm_card_chargeCustomerFail", params={"customer": customer_id}).to_dict()
    sdk.v1.customers.update(customer_id, params={"invoice_settings": {"default_payment_method": bad["id"]}})
    sdk.v1.subscriptions.update(subscription.id, params={"default_payment_method": bad["id"]})
    period_end = subscription.stripe_data["items"]["data"][0]["current_period_end"]
    advance_clock(sdk, clock, period_end + 2 * 3600)
    sub = mirror_store(kind="subscription", data=sdk.v1.subscriptions.retrieve(subscription.id).to_dict(for_json=True))
    mirror_store(kind="customer", data=sdk.v1.customers.retrieve(customer_id).to_dict(for_json=True))
    mirror_store(kind="payment_method", data=bad)
    invoice = mirror_store(kind="invoice", data=sdk.v1.invoices.retrieve(sub.stripe_data["latest_invoice"])
                           .to_dict(for_json=True))
    assert sub.stripe_data["status"] == "past_due", sub.stripe_data["status"]
    return team, sub, invoice, sdk


def make_card_default(sdk, customer_id: str, subscription_id: str, card: str = "pm_card_visa") -> None:
    """The customer fixed their card (what the portal link lets them do)."""
    good = sdk.v1.payment_methods.attach(card, params={"customer": customer_id}).to_dict()
    sdk.v1.customers.update(customer_id, params={"invoice_settings": {"default_payment_method": good["id"]}})
    sdk.v1.subscriptions.update(subscription_id, params={"default_payment_method": good["id"]})
