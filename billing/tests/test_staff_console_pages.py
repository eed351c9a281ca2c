"""
Staff console pages through the admin (Django test client, no browser): what Support and Finance see (home queue,
mirror section, refusals inside the admin, money and dates on the 360 page, the two-step refund) and the query count
of every page on a busy dataset (the bench measures the same pages at 1,000,000 charges).
"""
import itertools
from datetime import UTC, datetime, timedelta
from decimal import Decimal

import pytest
from django.urls import reverse
from djstripe import models as djstripe_models

from accounts.tests.factories import make_team_with_owner
from billing.backoffice.audit import StaffContext, audit_record
from billing.models import AuditEntry, CreditNote, RefundRequest, WebhookEvent

from .backoffice_fixtures import *  # noqa: F401,F403
from .factories import WebhookEventFactory

pytestmark = pytest.mark.django_db(transaction=True)
MAX_QUERIES = 15
_ids = itertools.count(1)
NOW = datetime(2026, 6, 1, 12, 0, tzinfo=UTC)


def _charge(customer, n: int, *, amount_minor: int = 4900, last4: str = "4242"):
    data = {"id": f"ch_busy{n}", "object": "charge", "amount": amount_minor, "amount_refunded": 0,
            "currency": "usd", "status": "succeeded", "disputed": False, "customer": customer.id,
            "description": f"Payment {n}",
            "payment_method_details": {"card": {"brand": "visa", "last4": last4, "exp_month": 12,
                                                "exp_year": 2030}}}
    return djstripe_models.Charge(id=data["id"], customer=customer, livemode=False, stripe_data=data,
                                  amount=Decimal(amount_minor) / 100, currency="usd", status="succeeded",
                                  created=NOW - timedelta(hours=n))


@pytest.fixture
def busy(db, support_user, finance_user):
    """
    One team with a long history (60 payments, 30 invoices, 25 refund requests, 20 credit notes, 40 webhook events,
    60 audit entries, a default card), and 12 other teams past due: more rows than any page shows.
    """
    team, owner = make_team_with_owner(name="Busy Team")
    pm = djstripe_models.PaymentMethod.objects.create(
        id="pm_busy", livemode=False, stripe_data={"id": "pm_busy", "type": "card", "card": {
            "brand": "mastercard", "last4": "4444", "exp_month": 1, "exp_year": 2031}})
    customer = djstripe_models.Customer.objects.create(
        id="cus_busy", subscriber=team, livemode=False, default_payment_method=pm,
        stripe_data={"id": "cus_busy", "invoice_settings": {"default_payment_method": "pm_busy"}})
    djstripe_models.Charge.objects.bulk_create([_charge(customer, n) for n in range(60)])
    invoices = [djstripe_models.Invoice(
        id=f"in_busy{n}", customer=customer, livemode=False, created=NOW - timedelta(days=n),
        stripe_data={"id": f"in_busy{n}", "status": "open" if n == 0 else "paid", "total": 9900, "currency": "usd",
                     "amount_remaining": 9900 if n == 0 else 0, "attempt_count": 2 if n == 0 else 1,
                     "next_payment_attempt": 1781000000 if n == 0 else None, "number": f"BUSY-{n:04d}"})
        for n in range(30)]
    djstripe_models.Invoice.objects.bulk_create(invoices)
    djstripe_models.Subscription.objects.create(
        id="sub_busy", customer=customer, livemode=False, created=NOW,
        stripe_data={"id": "sub_busy", "status": "past_due", "latest_invoice": "in_busy0",
                     "items": {"data": [{"price": {"lookup_key": "pro_monthly", "unit_amount": 9900,
                                                   "currency": "usd", "recurring": {"interval": "month"}},
                                         "current_period_start": 1780000000, "current_period_end": 1782600000}]}})
    RefundRequest.objects.bulk_create([RefundRequest(
        team=team, stripe_charge_id=f"ch_busy{n}", stripe_customer_id="cus_busy", amount_minor=100,
        currency="usd", charge_amount_minor=4900, reason="duplicate", requested_by=support_user)
        for n in range(25)])
    CreditNote.objects.bulk_create([CreditNote(
        stripe_id=f"cn_busy{n}", stripe_invoice_id=f"in_busy{n}", stripe_customer_id="cus_busy", team=team,
        currency="usd", total_minor=500, refund_minor=500, stripe_created=NOW) for n in range(20)])
    for n in range(40):
        WebhookEventFactory(stripe_event_id=f"evt_busy{n}", type="invoice.paid", status="parked" if n < 15 else
                            "processed", obj={"id": f"in_busy{n % 30}", "object": "invoice", "customer": "cus_busy"})
    for n in range(60):
        audit_record(staff=StaffContext(user=finance_user), action=AuditEntry.Action.CUSTOMER_RESYNCED,
                     target_type="team", target_id=team.pk, team=team)
    for n in range(12):
        other, _ = make_team_with_owner(name=f"Late {n}")
        other_customer = djstripe_models.Customer.objects.create(id=f"cus_late{n}", subscriber=other,
                                                                 livemode=False, stripe_data={})
        djstripe_models.Subscription.objects.create(
            id=f"sub_late{n}", customer=other_customer, livemode=False, created=NOW,
            stripe_data={"id": f"sub_late{n}", "status": "unpaid" if n % 2 else "past_due",
                         "latest_invoice": f"in_late{n}"})
        djstripe_models.Invoice.objects.create(
            id=f"in_late{n}", customer=other_customer, livemode=False, created=NOW,
            stripe_data={"id": f"in_late{n}", "status": "open", "total": 9900, "amount_remaining": 9900,
                         "currency": "usd", "attempt_count": 2, "next_payment_attempt": 1781000000})
    return {"team": team, "owner": owner, "customer": customer}


def _pages(busy):
    team = busy["team"]
    rr = RefundRequest.objects.filter(team=team).first()
    return {
        "home": reverse("admin:index"),
        "customers": reverse("admin:billing_customeraccount_changelist"),
        "search email": reverse("admin:billing_customeraccount_changelist") + f"?q={busy['owner'].email}",
        "search in_": reverse("admin:billing_customeraccount_changelist") + "?q=in_busy3",
        "search cn_": reverse("admin:billing_customeraccount_changelist") + "?q=cn_busy3",
        "search card+amount": reverse("admin:billing_customeraccount_changelist") + "?q=4242+49.00",
        "360": reverse("admin:billing_customeraccount_change", args=[team.pk]),
        "refund pick": reverse("admin:billing_customeraccount_refund", args=[team.pk]),
        "refund queue": reverse("admin:billing_refundrequest_changelist"),
        "refund detail": reverse("admin:billing_refundrequest_change", args=[rr.pk]),
        "dunning": reverse("admin:billing_dunningsubscription_changelist"),
        "credit notes": reverse("admin:billing_creditnote_changelist"),
        "audit": reverse("admin:billing_auditentry_changelist"),
        "invoice": reverse("admin:djstripe_invoice_change",
                           args=[djstripe_models.Invoice.objects.get(id="in_busy0").pk]),
    }


@pytest.mark.parametrize("who", ["support_user", "finance_user"])
def test_every_staff_console_page_stays_within_the_query_budget(client, busy, who, request,
                                                                django_assert_max_num_queries):
    client.force_login(request.getfixturevalue(who))
    for name, url in _pages(busy).items():
        with django_assert_max_num_queries(MAX_QUERIES, info=f"{who}: {name}"):
            response = client.get(url)
        assert response.status_code == 200, (who, name, response.status_code)


def test_the_360_page_speaks_money_dates_and_shows_the_default_card(client, busy, finance_user):
    client.force_login(finance_user)
    client.cookies["bo_tz"] = "America/Sao_Paulo"
    page = client.get(reverse("admin:billing_customeraccount_change", args=[busy["team"].pk])).content.decode()
    assert "(unix)" not in page and "1780000000" not in page
    # 1780000000 = 2026-05-28 20:26 UTC: the period starts on the 28th in São Paulo (UTC-3) too; the zone is named.
    assert "period 2026-05-28 → 2026-06-27" in page and "-03" in page
    assert "9900 USD" not in page and "$99.00" in page  # invoice totals as money
    assert "Mastercard •••• 4444 01/2031" in page and "(default)" in page  # not the 4242 of the latest payment
    assert "Dunning: payment failing" in page and "Retry payment now" in page


def test_resend_receipt_picker_shows_date_amount_and_description(client, busy, support_user):
    client.force_login(support_user)
    page = client.get(reverse("admin:billing_customeraccount_action", args=[busy["team"].pk, "resend_receipt"]))
    choices = dict(page.context["form"].fields["charge_id"].choices)
    assert choices["ch_busy0"] == "2026-06-01 · $49.00 · Payment 0"


def test_home_shows_the_queue_and_the_mirror_section_only_to_finance(client, busy, support_user, finance_user):
    client.force_login(support_user)
    page = client.get(reverse("admin:index"))
    assert page.context["backoffice"]["waiting_count"] == 25
    assert page.context["backoffice"]["dunning_count"] == 13
    assert len(page.context["backoffice"]["parked_events"]) == 10
    sections = [app["name"] for app in page.context["app_list"]]
    assert sections[0] == "Back office" and "Stripe mirror (read-only)" not in sections
    assert b"bo-approve" not in page.content  # Support cannot approve
    client.force_login(finance_user)
    page = client.get(reverse("admin:index"))
    sections = [app["name"] for app in page.context["app_list"]]
    assert sections[0] == "Back office" and sections[-1] == "Stripe mirror (read-only)"
    assert page.content.count(b"bo-approve") == 10  # one Approve per queued request shown (25 waiting, 10 shown)


def test_refund_list_opens_on_pending_and_all_is_one_click_away(client, busy, finance_user):
    RefundRequest.objects.filter(pk=RefundRequest.objects.first().pk).update(status="failed")
    client.force_login(finance_user)
    url = reverse("admin:billing_refundrequest_changelist")
    pending = client.get(url)
    assert {r.status for r in pending.context["cl"].result_list} == {"requested"}
    assert len(pending.context["cl"].result_list) == 24
    everything = client.get(url, {"status__exact": "all"})
    assert len(everything.context["cl"].result_list) == 25


def test_approval_in_one_step_from_the_queue_and_the_requester_is_refused_inside_the_admin(
        client, paying_team, support_user, finance_user, finance_user2, settings):
    from billing.backoffice import refunds as refund_services

    settings.REFUND_APPROVAL_THRESHOLD = 1000
    _team, _owner, charge = paying_team
    rr = refund_services.refund_request_create(staff=StaffContext(user=finance_user), charge_id=charge.id,
                                               amount_minor=2000, currency="usd", reason="duplicate")
    client.force_login(finance_user)
    refused = client.post(reverse("admin:billing_refundrequest_decide", args=[rr.pk, "approve"]),
                          {"next": reverse("admin:index")})
    assert refused.status_code == 403
    assert "admin/billing/refused.html" in [t.name for t in refused.templates]
    assert "someone else must approve" in refused.content.decode()
    client.force_login(finance_user2)
    done = client.post(reverse("admin:billing_refundrequest_decide", args=[rr.pk, "approve"]),
                       {"next": reverse("admin:index")}, follow=True)
    assert done.redirect_chain[-1][0] == reverse("admin:index")
    assert f"#{rr.pk} ($20.00)" in done.content.decode()
    rr.refresh_from_db()
    assert rr.status == RefundRequest.Status.SUCCEEDED and rr.approved_by == finance_user2


def test_refund_from_the_360_in_two_steps_speaks_money(client, subscribed_team, support_user, settings):
    settings.REFUND_APPROVAL_THRESHOLD = 50000
    team, _sub, invoice, charge = subscribed_team
    client.force_login(support_user)
    pick = client.get(reverse("admin:billing_customeraccount_refund", args=[team.pk]))
    assert [p.charge.id for p in pick.context["payments"]] == [charge.id]
    step2 = client.post(reverse("admin:billing_customeraccount_refund", args=[team.pk]), {"charge_id": charge.id},
                        follow=True)
    page = step2.content.decode()
    assert "Above $500.00 needs a second approval" in page and "of this $99.00 payment" in page
    assert 'type="hidden" name="currency" value="usd"' in page  # from the charge, not typed
    assert step2.context["form"].initial["amount"] == "99.00"
    assert invoice.id in page and "credit_to_balance" in page
    client.post(step2.redirect_chain[-1][0], {"amount": "30.00", "currency": "usd", "reason": "duplicate",
                                              "note": "partial", "credit_to_balance": "on"})
    rr = RefundRequest.objects.get()
    assert (rr.amount_minor, rr.stripe_invoice_id, rr.credit_to_balance, rr.status) == (
        3000, invoice.id, True, RefundRequest.Status.REQUESTED)
    detail = client.get(reverse("admin:billing_refundrequest_change", args=[rr.pk])).content.decode()
    assert "$30.00" in detail and "of a $99.00 payment" in detail and "credited to the customer's balance" in detail


def test_brl_amounts_are_entered_with_the_locale_separator(client, paying_team, finance_user, bo_stripe):
    from .backoffice_fixtures import make_payment

    team, _owner, _charge = paying_team
    charge = make_payment(_charge.customer_id, amount_minor=19900, currency="brl")
    client.force_login(finance_user)
    page = client.get(reverse("admin:billing_refundrequest_new", args=[charge.id]), HTTP_ACCEPT_LANGUAGE="pt-br")
    assert page.context["form"].initial["amount"] == "199,00"
    assert "R$ 199,00" in page.content.decode() and "R$ 500,00" in page.content.decode()


def test_a_refusal_anywhere_in_the_admin_is_answered_inside_the_admin(client, busy, support_user):
    # Support may not start a reconciliation run: the view raises the services' refusal, the admin answers it.
    client.force_login(support_user)
    response = client.post(reverse("admin:billing_reconciliationrun_run"),
                           HTTP_REFERER="http://testserver" + reverse("admin:index"))
    assert response.status_code == 403
    assert "admin/billing/refused.html" in [t.name for t in response.templates]
    assert "billing.run_reconciliation" in response.content.decode()
