"""
Receipt emails for every one-time card payment of a team (not only invoices and credit packs), exactly once per
payment however many times its webhook is applied.
"""
import pytest
from django.core import mail

from accounts.tests.factories import make_team_with_owner
from billing.models import OutboundEmail
from billing.webhooks.registry import handlers_for

from .backoffice_fixtures import *  # noqa: F401,F403
from .backoffice_fixtures import make_customer, make_payment, make_subscription
from .conftest import stripe_events
from .test_payments_receipts import pay_credit_pack, pdf_text, receipt_settings  # noqa: F401  (fixture)


def _succeeded_event(payment_intent_id: str) -> dict:
    (event,) = [e for e in stripe_events({"payment_intent.succeeded"})
                if e["data"]["object"]["id"] == payment_intent_id]
    return event


def _apply(event: dict, capture) -> None:
    with capture(execute=True):
        for handler in handlers_for(event["type"]):
            handler(event=event)


@pytest.mark.django_db(transaction=True)
def test_saved_card_one_time_payment_gets_one_receipt_email_even_when_applied_twice(
        bo_stripe, receipt_settings, django_capture_on_commit_callbacks):  # noqa: F811
    team, owner = make_team_with_owner(name="Oficina Ltda")
    owner.language = "pt-br"
    owner.save(update_fields=["language"])
    charge = make_payment(make_customer(team).id, amount_minor=4990, currency="brl")
    event = _succeeded_event(charge.stripe_data["payment_intent"])
    mail.outbox.clear()
    _apply(event, django_capture_on_commit_callbacks)
    _apply(event, django_capture_on_commit_callbacks)  # a replay of the same event
    (message,) = mail.outbox
    assert message.subject == "Recibo T13-000001 do seu pagamento de R$ 49,90"  # the owner's language
    assert message.alternatives[0][1] == "text/html" and "Oficina Ltda" in message.alternatives[0][0]
    (name, data, mimetype), = message.attachments
    assert mimetype == "application/pdf" and "R$ 49,90" in pdf_text(data)
    assert f"/billing/payments/{charge.id}/receipt.pdf" in message.body
    assert list(OutboundEmail.objects.filter(template="receipt").values_list("dedupe_key", flat=True)) == [
        f"receipt:{event['data']['object']['id']}"]


@pytest.mark.django_db(transaction=True)
def test_credit_pack_receipt_is_emailed_once(bo_stripe, receipt_settings, django_capture_on_commit_callbacks):  # noqa: F811
    team, _owner = make_team_with_owner(name="Packs Inc")
    pack = pay_credit_pack(make_customer(team).id, key="pack:once")
    event = _succeeded_event(pack.stripe_data["payment_intent"])
    mail.outbox.clear()
    for _ in range(3):
        _apply(event, django_capture_on_commit_callbacks)
    assert [m.subject for m in mail.outbox] == ["Receipt T13-000001 for your payment of $9.00"]


@pytest.mark.django_db(transaction=True)
def test_an_invoice_payment_intent_leaves_the_receipt_to_invoice_paid(
        bo_stripe, receipt_settings, django_capture_on_commit_callbacks):  # noqa: F811
    team, _owner = make_team_with_owner(name="Subs Inc")
    customer = make_customer(team)
    _subscription, invoice = make_subscription(customer.id, trial_days=None)
    invoice_intents = [e for e in stripe_events({"payment_intent.succeeded"})
                       if e["data"]["object"]["customer"] == customer.id]
    assert invoice_intents
    mail.outbox.clear()
    for event in invoice_intents:
        _apply(event, django_capture_on_commit_callbacks)
    assert mail.outbox == [] and not OutboundEmail.objects.filter(template="receipt").exists()
    (paid,) = [e for e in stripe_events({"invoice.paid"}) if e["data"]["object"]["id"] == invoice.id]
    _apply(paid, django_capture_on_commit_callbacks)
    _apply(paid, django_capture_on_commit_callbacks)
    assert len(mail.outbox) == 1
    assert OutboundEmail.objects.get(template="receipt").dedupe_key.endswith(invoice.id)


@pytest.mark.postgres
@pytest.mark.django_db(transaction=True)
def test_two_deliveries_of_one_payment_at_once_queue_one_receipt_email(bo_stripe, receipt_settings, monkeypatch):  # noqa: F811
    """Two workers apply the same payment's event at the same moment: one outbox row, one email queued."""
    import threading

    from django.db import connection, transaction

    from billing import receipts

    team, _owner = make_team_with_owner(name="Race Inc")
    monkeypatch.setattr("billing.emails.outbound_email_enqueue_now", lambda **kwargs: True)  # not sent here
    barrier = threading.Barrier(4)
    errors = []

    def worker():
        try:
            with transaction.atomic():  # as the webhook pipeline runs a handler
                barrier.wait()
                receipts.receipt_email_queue(team=team, payment_intent_id="pi_race")
        except Exception as error:  # noqa: BLE001 - surfaced by the assertion below
            errors.append(error)
        finally:
            connection.close()

    threads = [threading.Thread(target=worker) for _ in range(4)]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join()
    assert errors == []
    assert list(OutboundEmail.objects.values_list("dedupe_key", flat=True)) == ["receipt:pi_race"]
