"""
Every admin the billing app registers (its own models and dj-stripe's read-only mirror) opens for a superuser: the
list, a search, the add page (403: nothing is added through the back office) and the change page of a row. No Stripe,
no emulator: a broken list column, filter or search shows up here in seconds.
"""
import pytest
from django.contrib import admin
from django.urls import reverse

from accounts.tests.factories import make_team_with_owner
from billing.admin.stripe_mirror import ReadOnlyMirrorMixin
from billing.admin.webhooks import WebhookConsoleAdmin
from billing.backoffice.audit import StaffContext, audit_record
from billing.models import (
    AuditEntry,
    CreditNote,
    CustomerAccount,
    DunningSubscription,
    OutboundEmail,
    ReconciliationDrift,
    ReconciliationRun,
    RefundRequest,
    WebhookEvent,
)

from .factories import WebhookEventFactory

BILLING_ADMINS = [model for model in admin.site._registry if model._meta.app_label == "billing"]
MIRROR_ADMINS = [model for model in admin.site._registry if model._meta.app_label == "djstripe"]


def _label(model) -> str:
    return f"{model._meta.app_label}_{model._meta.model_name}"


@pytest.fixture
def rows(db, admin_user):
    """One row of each billing model, so that every change page has something to open."""
    from django.utils import timezone
    from djstripe.models import Customer, Subscription

    team, owner = make_team_with_owner(name="Smoke Team")
    run = ReconciliationRun.objects.create(triggered_by="admin")
    customer = Customer.objects.create(id="cus_smoke", subscriber=team, livemode=False, stripe_data={})
    subscription = Subscription.objects.create(id="sub_smoke", customer=customer, livemode=False,
                                               stripe_data={"status": "past_due"})
    return {
        CreditNote: CreditNote.objects.create(
            stripe_id="cn_smoke", stripe_invoice_id="in_smoke", stripe_customer_id="cus_smoke", team=team,
            currency="usd", total_minor=1000, stripe_created=timezone.now()),
        DunningSubscription: DunningSubscription.objects.get(pk=subscription.pk),
        CustomerAccount: CustomerAccount.objects.get(pk=team.pk),
        RefundRequest: RefundRequest.objects.create(
            team=team, stripe_charge_id="ch_smoke", stripe_customer_id="cus_smoke", amount_minor=1000,
            currency="usd", charge_amount_minor=9900, reason=RefundRequest.Reason.REQUESTED_BY_CUSTOMER,
            requested_by=admin_user),
        AuditEntry: audit_record(staff=StaffContext(user=admin_user), action=AuditEntry.Action.AUDIT_EXPORTED,
                                 target_type="audit_trail", target_id="*", team=team),
        ReconciliationRun: run,
        ReconciliationDrift: ReconciliationDrift.objects.create(
            run=run, kind=ReconciliationDrift.Kind.INVOICE_STATUS, object_type="invoice", object_id="in_smoke",
            team=team, local_value="open", stripe_value="paid"),
        WebhookEvent: WebhookEventFactory(stripe_event_id="evt_smoke", type="invoice.paid",
                                          obj={"id": "in_smoke", "object": "invoice", "customer": "cus_smoke"},
                                          status="parked"),
        OutboundEmail: OutboundEmail.objects.create(team=team, template="payment_failed", status="parked",
                                                    attempts=8, last_error="SMTPServerDisconnected"),
    }


def test_the_package_registers_every_billing_admin_itself():
    # BillingConfig.ready() no longer imports an admin module: autodiscovery of billing.admin alone registers them.
    assert {model.__name__ for model in BILLING_ADMINS} == {
        "CustomerAccount", "RefundRequest", "AuditEntry", "ReconciliationRun", "ReconciliationDrift", "WebhookEvent",
        "CreditNote", "DunningSubscription", "OutboundEmail"}
    assert type(admin.site._registry[WebhookEvent]) is WebhookConsoleAdmin
    assert MIRROR_ADMINS
    assert all(isinstance(admin.site._registry[model], ReadOnlyMirrorMixin) for model in MIRROR_ADMINS)


@pytest.mark.parametrize("model", BILLING_ADMINS, ids=_label)
def test_billing_admin_pages_open(admin_client, rows, model):
    label = _label(model)
    changelist = reverse(f"admin:{label}_changelist")
    response = admin_client.get(changelist)
    assert response.status_code == 200, (label, response.status_code)
    assert admin_client.get(changelist, {"q": "smoke"}).status_code == 200
    assert admin_client.get(changelist, {"q": "evt_smoke"}).status_code == 200
    assert admin_client.get(reverse(f"admin:{label}_add")).status_code == 403
    change = admin_client.get(reverse(f"admin:{label}_change", args=[rows[model].pk]))
    if model is DunningSubscription:  # a dunning case opens on its team's Customer 360 page
        assert change.status_code == 302 and change["Location"].endswith(
            reverse("admin:billing_customeraccount_change", args=[rows[CustomerAccount].pk])), label
        return
    assert change.status_code == 200, (label, change.status_code)


@pytest.mark.parametrize("model", MIRROR_ADMINS, ids=_label)
def test_mirror_admin_pages_open(admin_client, db, model):
    label = _label(model)
    changelist = reverse(f"admin:{label}_changelist")
    assert admin_client.get(changelist).status_code == 200, label
    assert admin_client.get(changelist, {"q": "cus_smoke"}).status_code == 200, label
    assert admin_client.get(reverse(f"admin:{label}_add")).status_code == 403, label
