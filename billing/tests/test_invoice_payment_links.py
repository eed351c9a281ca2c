"""Which invoice a payment intent paid: the recorded link, else one Stripe read that records it."""
import pytest

from accounts.tests.factories import make_team_with_owner
from billing.models import InvoicePaymentLink
from billing.services.invoice_payments import payment_intent_invoice_id
from billing.stripe_gateway.invoice_payments import payment_intent_id_for_invoice

from .backoffice_fixtures import *  # noqa: F401,F403
from .backoffice_fixtures import make_customer, make_payment, make_subscription
from .conftest import emulator_requests

pytestmark = pytest.mark.django_db


def _invoice_payment_reads(emulator) -> int:
    return len(emulator_requests(emulator, "GET", "/v1/invoice_payments"))


def test_an_invoice_payment_is_read_from_stripe_once_then_from_its_recorded_link(bo_stripe):
    team, _owner = make_team_with_owner()
    _subscription, invoice = make_subscription(make_customer(team).id, trial_days=None)
    intent_id = payment_intent_id_for_invoice(invoice_id=invoice.id)
    assert intent_id and not InvoicePaymentLink.objects.filter(payment_intent_id=intent_id).exists()
    before = _invoice_payment_reads(bo_stripe)
    assert payment_intent_invoice_id(payment_intent_id=intent_id) == invoice.id
    assert _invoice_payment_reads(bo_stripe) == before + 1
    assert InvoicePaymentLink.objects.get(payment_intent_id=intent_id).invoice_id == invoice.id
    assert payment_intent_invoice_id(payment_intent_id=intent_id) == invoice.id
    assert _invoice_payment_reads(bo_stripe) == before + 1  # the recorded link answered


def test_a_one_time_payment_has_no_invoice_and_records_no_link(bo_stripe):
    team, _owner = make_team_with_owner()
    charge = make_payment(make_customer(team).id)
    assert payment_intent_invoice_id(payment_intent_id=charge.stripe_data["payment_intent"]) == ""
    assert payment_intent_invoice_id(payment_intent_id="") == ""
    assert not InvoicePaymentLink.objects.exists()
