"""
factory-boy factories for billing's own rows. Stripe objects (customers, charges, subscriptions) are not made here:
tests create them in the emulator and mirror them, the path production takes (backoffice_fixtures.make_payment...).
"""
import factory
from django.contrib.auth.models import Group

from accounts.tests.factories import UserFactory
from billing.models import RefundRequest, WebhookEvent


class StaffUserFactory(UserFactory):
    """A staff user in the back office's groups: `StaffUserFactory(groups=["Finance"])`."""

    email = factory.Sequence(lambda n: f"staff{n}@staff.example.com")
    is_staff = True

    @factory.post_generation
    def groups(self, create, names, **kwargs):
        # The groups come from data migration billing/0102_backoffice_roles: look them up, never create them.
        if create and names:
            self.groups.add(*Group.objects.filter(name__in=names))


class RefundRequestFactory(factory.django.DjangoModelFactory):
    class Meta:
        model = RefundRequest

    stripe_charge_id = factory.Sequence(lambda n: f"ch_factory{n}")
    amount_minor = 100  # minor units of `currency`
    currency = "usd"
    charge_amount_minor = 9900
    reason = RefundRequest.Reason.DUPLICATE
    requested_by = factory.SubFactory(StaffUserFactory)


class WebhookEventFactory(factory.django.DjangoModelFactory):
    """A stored Stripe event about `obj` (`WebhookEventFactory(obj={...})`); failed and parked ones carry a trace."""

    class Meta:
        model = WebhookEvent
        exclude = ["obj", "failed"]

    stripe_event_id = factory.Sequence(lambda n: f"evt_factory{n}")
    type = "invoice.paid"
    status = WebhookEvent.Status.PROCESSED
    obj = factory.LazyFunction(dict)
    payload = factory.LazyAttribute(lambda e: {"id": e.stripe_event_id, "object": "event", "type": e.type,
                                               "data": {"object": e.obj}})
    stripe_object_id = factory.LazyAttribute(lambda e: e.obj.get("id", ""))
    stripe_customer_id = factory.LazyAttribute(lambda e: e.obj.get("customer") or "")
    failed = factory.LazyAttribute(lambda e: e.status in (WebhookEvent.Status.FAILED, WebhookEvent.Status.PARKED))
    attempts = factory.LazyAttribute(lambda e: 5 if e.status == WebhookEvent.Status.PARKED else 1)
    last_error = factory.LazyAttribute(lambda e: "Traceback...\nRuntimeError: boom" if e.failed else "")
