"""The back office pages: every page opens, search by any Stripe id, permissions, read-only mirror and audit trail."""
import pytest
from django.db import connection
from django.urls import reverse
from djstripe import models as djstripe_models

from billing.backoffice import refunds as refund_services
from billing.backoffice.audit import StaffContext, audit_chain_verify
from billing.models import AuditEntry, RefundRequest

from .backoffice_fixtures import *  # noqa: F401,F403
from .backoffice_fixtures import emulator_refunds, make_subscription, refund_posts
from .factories import WebhookEventFactory

pytestmark = pytest.mark.django_db(transaction=True)


@pytest.fixture
def world(paying_team, finance_user):
    """A team with a subscription, an invoice, a payment, a refund, a webhook event and audit entries."""
    team, owner, charge = paying_team
    subscription, invoice = make_subscription(charge.customer_id)
    rr = refund_services.refund_request_create(staff=StaffContext(user=finance_user), charge_id=charge.id,
                                               amount_minor=1000, currency="usd", reason="requested_by_customer")
    rr.refresh_from_db()
    refund = djstripe_models.Refund.objects.filter(id=rr.stripe_refund_id).first()
    if refund is None:
        from billing.services.mirror import mirror_refresh

        refund = mirror_refresh(kind="refund", object_id=rr.stripe_refund_id)
    event = WebhookEventFactory(stripe_event_id="evt_test_0001", type="invoice.paid",
                                obj={"id": invoice.id, "object": "invoice", "customer": charge.customer_id})
    return {"team": team, "owner": owner, "charge": charge, "subscription": subscription, "invoice": invoice,
            "refund_request": rr, "refund": refund, "event": event}


def _pages(world):
    team, rr, charge = world["team"], world["refund_request"], world["charge"]
    return [
        reverse("admin:index"),
        reverse("admin:billing_customeraccount_changelist"),
        reverse("admin:billing_customeraccount_change", args=[team.pk]),
        reverse("admin:billing_refundrequest_changelist"),
        reverse("admin:billing_refundrequest_change", args=[rr.pk]),
        reverse("admin:billing_refundrequest_new", args=[charge.id]),
        reverse("admin:billing_auditentry_changelist"),
        reverse("admin:billing_auditentry_change", args=[AuditEntry.objects.first().pk]),
        reverse("admin:billing_auditentry_verify"),
        reverse("admin:billing_reconciliationrun_changelist"),
        reverse("admin:billing_reconciliationdrift_changelist"),
        reverse("admin:billing_webhookevent_changelist"),
        reverse("admin:billing_webhookevent_change", args=[world["event"].pk]),
        reverse("admin:djstripe_charge_changelist"),
        reverse("admin:djstripe_charge_change", args=[charge.pk]),
        reverse("admin:djstripe_customer_changelist"),
        reverse("admin:djstripe_subscription_changelist"),
        reverse("admin:djstripe_invoice_changelist"),
        reverse("admin:djstripe_paymentintent_changelist"),
        reverse("admin:djstripe_refund_changelist"),
        reverse("admin:djstripe_event_changelist"),
        reverse("admin:accounts_team_changelist"),
    ]


@pytest.mark.parametrize("who", ["superuser", "support", "finance"])
def test_every_back_office_page_opens(client, admin_user, support_user, finance_user, world, who):
    client.force_login({"superuser": admin_user, "support": support_user, "finance": finance_user}[who])
    for url in _pages(world):
        response = client.get(url)
        assert response.status_code == 200, (url, response.status_code)


def test_customer_360_shows_everything(admin_client, world):
    team, charge = world["team"], world["charge"]
    page = admin_client.get(reverse("admin:billing_customeraccount_change", args=[team.pk])).content.decode()
    for expected in [world["owner"].email, charge.customer_id, world["subscription"].id, world["invoice"].id,
                     charge.id, "$99.00", "$10.00", "trialing", f"#{world['refund_request'].pk}", "evt_test_0001",
                     "Refund requested", "Visa •••• 4242"]:
        assert expected in page, expected
    assert "4242424242424242" not in page


@pytest.mark.parametrize("kind", ["cus", "sub", "in", "ch", "pi", "re", "evt", "email", "name"])
def test_search_teams_by_any_stripe_id(admin_client, world, kind):
    charge = world["charge"]
    term = {
        "cus": charge.customer_id, "sub": world["subscription"].id, "in": world["invoice"].id, "ch": charge.id,
        "pi": charge.payment_intent_id, "re": world["refund_request"].stripe_refund_id, "evt": "evt_test_0001",
        "email": world["owner"].email.upper(), "name": "acme",
    }[kind]
    response = admin_client.get(reverse("admin:billing_customeraccount_changelist"), {"q": term})
    assert response.status_code == 200
    assert list(response.context["cl"].result_list) == [world["team"]], term


def test_search_for_an_unknown_id_finds_nothing(admin_client, world):
    response = admin_client.get(reverse("admin:billing_customeraccount_changelist"), {"q": "ch_doesnotexist"})
    assert list(response.context["cl"].result_list) == []


def test_support_requests_a_refund_through_the_form_and_cannot_approve_it(client, support_user, world, bo_stripe):
    charge = world["charge"]
    client.force_login(support_user)
    url = reverse("admin:billing_refundrequest_new", args=[charge.id])
    form_page = client.get(url)
    assert form_page.context["form"].initial["amount"] == "89.00"  # $99 paid, $10 already refunded
    posts_before = refund_posts(bo_stripe)
    response = client.post(url, {"amount": "20.00", "currency": "usd", "reason": "duplicate", "note": "twice"})
    rr = RefundRequest.objects.latest("id")
    assert response.status_code == 302 and rr.status == RefundRequest.Status.REQUESTED and rr.amount_minor == 2000
    denied = client.post(reverse("admin:billing_refundrequest_decide", args=[rr.pk, "approve"]))
    assert denied.status_code == 403
    rr.refresh_from_db()
    assert rr.status == RefundRequest.Status.REQUESTED
    assert AuditEntry.objects.filter(actor=support_user, action="permission.denied").exists()
    assert refund_posts(bo_stripe) == posts_before


@pytest.mark.parametrize(("amount", "currency", "message"), [
    ("0", "usd", "more than zero"), ("-5", "usd", "more than zero"), ("89.01", "usd", "more than what can"),
    ("10.00", "brl", "not BRL"), ("1.234", "usd", "decimal places"), ("abc", "usd", "Enter an amount"),
])
def test_bad_refund_input_is_a_form_error_and_nothing_reaches_stripe(admin_client, world, bo_stripe, amount,
                                                                      currency, message):
    posts_before = refund_posts(bo_stripe)
    response = admin_client.post(reverse("admin:billing_refundrequest_new", args=[world["charge"].id]),
                                 {"amount": amount, "currency": currency, "reason": "duplicate"})
    assert response.status_code == 200
    assert message in response.content.decode()
    assert RefundRequest.objects.count() == 1
    assert refund_posts(bo_stripe) == posts_before


def test_user_without_permission_gets_403_and_is_audited(client, world, db):
    from django.contrib.auth.models import Permission

    from accounts.tests.factories import UserFactory

    viewer = UserFactory(is_staff=True)
    viewer.user_permissions.add(*Permission.objects.filter(codename__in=["view_refundrequest", "view_customeraccount"]))
    client.force_login(viewer)
    response = client.post(reverse("admin:billing_refundrequest_new", args=[world["charge"].id]),
                           {"amount": "1.00", "currency": "usd", "reason": "duplicate"})
    assert response.status_code == 403
    entry = AuditEntry.objects.filter(actor=viewer).get()
    assert entry.action == "permission.denied" and entry.after["permission"] == "billing.request_refund"


def test_mirrored_stripe_data_is_read_only_even_for_superusers(admin_client, world):
    charge = world["charge"]
    change_url = reverse("admin:djstripe_charge_change", args=[charge.pk])
    page = admin_client.get(change_url)
    assert page.status_code == 200 and b'name="_save"' not in page.content
    assert admin_client.post(change_url, {"description": "edited"}).status_code == 403
    assert admin_client.get(reverse("admin:djstripe_charge_add")).status_code == 403
    assert admin_client.post(reverse("admin:djstripe_charge_delete", args=[charge.pk]), {"post": "yes"}).status_code \
        == 403
    assert djstripe_models.Charge.objects.filter(pk=charge.pk).exists()
    assert admin_client.get(reverse("admin:djstripe_customer_add")).status_code == 403
    changelist = admin_client.get(reverse("admin:djstripe_charge_changelist"))
    assert "action" not in changelist.context["cl"].model_admin.get_actions(changelist.wsgi_request)


def test_audit_trail_cannot_be_edited_or_deleted(admin_client, world):
    entry = AuditEntry.objects.first()
    assert admin_client.get(reverse("admin:billing_auditentry_add")).status_code == 403
    assert admin_client.post(reverse("admin:billing_auditentry_change", args=[entry.pk]),
                             {"reason": "x"}).status_code == 403
    assert admin_client.post(reverse("admin:billing_auditentry_delete", args=[entry.pk]),
                             {"post": "yes"}).status_code == 403
    assert AuditEntry.objects.filter(pk=entry.pk, reason=entry.reason).exists()
    assert audit_chain_verify()["ok"]


def test_audit_chain_detects_tampering(world):
    entry = AuditEntry.objects.order_by("id")[1]
    with connection.cursor() as cursor:
        if connection.vendor == "postgresql":
            # The database refuses edits: prove it, then step around it the way an attacker with DDL rights would.
            from django.db import DatabaseError, transaction

            with pytest.raises(DatabaseError), transaction.atomic():
                AuditEntry.objects.filter(pk=entry.pk).update(reason="tampered")
            cursor.execute("ALTER TABLE billing_auditentry DISABLE TRIGGER billing_auditentry_append_only")
        AuditEntry.objects.filter(pk=entry.pk).update(after={"amount_minor": 1})
        if connection.vendor == "postgresql":
            cursor.execute("ALTER TABLE billing_auditentry ENABLE TRIGGER billing_auditentry_append_only")
    result = audit_chain_verify()
    assert not result["ok"] and result["broken_at"] == entry.pk


def test_audit_csv_export_follows_filters_and_needs_the_permission(client, admin_client, support_user, world):
    response = admin_client.get(reverse("admin:billing_auditentry_export"), {"action__exact": "refund.requested"})
    body = b"".join(response.streaming_content).decode()
    lines = body.strip().splitlines()
    assert lines[0].startswith("id,created,actor_email,action")
    assert len(lines) == 2 and "refund.requested" in lines[1]
    assert AuditEntry.objects.filter(action="audit.exported").count() == 1
    client.force_login(support_user)
    assert client.get(reverse("admin:billing_auditentry_export")).status_code == 403


def test_audit_filters_by_actor_action_and_date(admin_client, world, finance_user):
    response = admin_client.get(reverse("admin:billing_auditentry_changelist"),
                                {"actor": str(finance_user.pk), "action__exact": "refund.approved",
                                 "created__gte": "2000-01-01"})
    rows = list(response.context["cl"].result_list)
    assert [r.action for r in rows] == ["refund.approved"] and rows[0].actor == finance_user


def test_two_people_through_the_pages(client, support_user, finance_user, finance_user2, world, bo_stripe, settings):
    settings.REFUND_APPROVAL_THRESHOLD = 1000
    charge = world["charge"]
    client.force_login(finance_user)
    client.post(reverse("admin:billing_refundrequest_new", args=[charge.id]),
                {"amount": "50.00", "currency": "usd", "reason": "requested_by_customer"})
    rr = RefundRequest.objects.latest("id")
    assert rr.status == RefundRequest.Status.REQUESTED  # above the threshold: waits even for Finance
    own = client.get(reverse("admin:billing_refundrequest_change", args=[rr.pk]))
    assert b"Approve refund" not in own.content
    assert client.post(reverse("admin:billing_refundrequest_decide", args=[rr.pk, "approve"])).status_code == 403
    client.force_login(finance_user2)
    client.post(reverse("admin:billing_refundrequest_decide", args=[rr.pk, "approve"]), {"note": "ok"})
    rr.refresh_from_db()
    assert rr.status == RefundRequest.Status.SUCCEEDED and rr.approved_by == finance_user2
    assert sorted(r["amount"] for r in emulator_refunds(bo_stripe, charge.id)) == [1000, 5000]


@pytest.mark.django_db
def test_starting_reconciliation_with_the_broker_down_says_so_instead_of_a_500(admin_client, monkeypatch):
    from billing_site import celery

    sent = []
    monkeypatch.setattr(celery, "task_send", lambda task, *a, what, **k: (sent.append(task.name), False)[1])
    response = admin_client.post(reverse("admin:billing_reconciliationrun_run"), follow=True)
    assert response.status_code == 200 and sent == ["billing.tasks_backoffice.reconcile_task"]
    assert "reconciliation did not start" in response.content.decode()
