"""billing.emails.send_team_email, the one sender of team emails: after commit, to the billing address or `to=`."""
import pytest
from django.core import mail
from django.db import transaction

from accounts.tests.factories import make_team_with_owner
from billing.emails import send_team_email

pytestmark = pytest.mark.django_db
CONTEXT = {"amount": "$9.00", "hosted_invoice_url": ""}


def test_sent_after_commit_to_the_billing_address(django_capture_on_commit_callbacks):
    team, owner = make_team_with_owner(billing_email="ap@example.com")
    with django_capture_on_commit_callbacks(execute=False) as callbacks:
        send_team_email(team=team, template="payment_failed", context=CONTEXT)
    assert mail.outbox == [] and len(callbacks) == 1
    callbacks[0]()
    assert len(mail.outbox) == 1
    assert mail.outbox[0].to == ["ap@example.com"]
    assert mail.outbox[0].subject == "Your payment of $9.00 failed"


def test_to_replaces_the_recipients(django_capture_on_commit_callbacks):
    team, owner = make_team_with_owner(billing_email="ap@example.com")
    with django_capture_on_commit_callbacks(execute=True):
        send_team_email(team=team, template="payment_failed", context=CONTEXT, to=[owner.email, "cfo@example.com"])
    assert [m.to for m in mail.outbox] == [[owner.email, "cfo@example.com"]]


def test_another_apps_template_by_path(django_capture_on_commit_callbacks):
    team, owner = make_team_with_owner()
    with django_capture_on_commit_callbacks(execute=True):
        send_team_email(team=team, template="usage/email/credits_exhausted", context={
            "buy_credits_url": "https://x/pricing/#credits", "upgrade_url": "https://x/pricing/"})
    assert len(mail.outbox) == 1 and mail.outbox[0].subject == f"{team.name}: no credits left"
    assert "https://x/pricing/#credits" in mail.outbox[0].body


def test_nothing_is_sent_when_the_transaction_rolls_back(django_capture_on_commit_callbacks):
    team, owner = make_team_with_owner()
    with django_capture_on_commit_callbacks(execute=True) as callbacks:
        with pytest.raises(RuntimeError), transaction.atomic():
            send_team_email(team=team, template="payment_failed", context=CONTEXT)
            raise RuntimeError("rolled back")
    assert callbacks == [] and mail.outbox == []
