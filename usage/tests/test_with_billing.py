"""End to end with the billing core: a team subscribes to Pro through Checkout, its limits follow, and its overage
reaches the catalog's Stripe meter under its real customer id."""
import pytest
from django.urls import reverse
from django.utils import timezone
from rest_framework.test import APIClient

from accounts import services as account_services
from billing.selectors import team_plan_limits, team_stripe_customer_id
from billing.stripe_gateway import meters as meters_gateway
from billing.tests.conftest import billing_world, complete_checkout, deliver, stripe_events  # noqa: F401
from usage import tasks
from usage.models import MeterReport
from usage.periods import period_for
from usage.tests.factories import usage_stored

pytestmark = pytest.mark.django_db


def test_pro_subscriber_gets_pro_limits_and_its_overage_is_metered(billing_world, client, team_and_owner,  # noqa: F811
                                                                   stripe_emulator):
    team, owner = team_and_owner
    client.force_login(owner)
    response = client.post(reverse("billing:checkout", args=["pro_monthly"]),
                           {"currency": "usd", "form_token": "t-pro"})
    session_id = response["Location"].rstrip("/").split("/")[-1].split("?")[0]
    assert complete_checkout(stripe_emulator, session_id).status_code == 303
    for event in stripe_events():
        assert deliver(client, billing_world, event).status_code == 200
    assert team_plan_limits(team=team).plan_key == "pro"

    key = account_services.api_key_create(team=team, name="prod", created_by=owner).raw_key
    program = APIClient()
    program.credentials(HTTP_AUTHORIZATION=f"Bearer {key}")
    answer = program.get(reverse("api:demo-metered-ping"))
    assert answer.status_code == 200 and answer["X-RateLimit-Limit"] == "20"

    usage_stored(team, 10_024, key="bulk")
    assert tasks.usage_overage_report_task.run() == {"prepared": 1, "sent": 1, "remaining": 0}
    report = MeterReport.objects.get(team=team)
    customer = team_stripe_customer_id(team=team)
    assert report.quantity == 25 and report.stripe_customer_id == customer and customer.startswith("cus_")
    meter = meters_gateway.meter_find_by_event_name(event_name="api_call")
    end = (timezone.now().replace(second=0, microsecond=0) + timezone.timedelta(minutes=2))
    summaries = meters_gateway.meter_event_summaries(meter_id=meter["id"], stripe_customer_id=customer,
                                                     start=period_for().start, end=end)
    assert sum(s["aggregated_value"] for s in summaries) == 25
    assert tasks.usage_overage_report_task.run() == {"prepared": 0, "sent": 0, "remaining": 0}
