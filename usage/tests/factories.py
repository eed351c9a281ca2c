"""
factory-boy factories for usage's records. Ledgers and usage go through the services that own them (balances and
daily totals must move with them): `usage_stored` stores events, `credits_granted` grants credits; the factories
build rows that tests set up directly (a meter report already sent, a closed period, a spend cap).
"""
import factory
from django.utils import timezone

from accounts.tests.factories import TeamFactory
from usage import services
from usage.models import CreditLedgerEntry, MeterReport, TeamUsagePolicy, UsageEvent, UsagePeriodClose
from usage.periods import period_for
from usage.services import EventRow


class EventRowFactory(factory.Factory):
    """A usage event to store (`usage.services.EventRow`); pass `team_id=`."""

    class Meta:
        model = EventRow

    metric = "api_call"
    quantity = 1
    occurred_at = factory.LazyFunction(timezone.now)
    idempotency_key = factory.Sequence(lambda n: f"event-{n}")
    source = UsageEvent.Source.INGEST


def usage_stored(team, quantity: int, *, key: str | None = None, at=None, metric: str = "api_call") -> list[EventRow]:
    """Store one usage event of `team` the way ingest does (daily totals included); returns the rows inserted."""
    overrides = {"idempotency_key": key} if key is not None else {}
    row = EventRowFactory(team_id=team.pk, quantity=quantity, metric=metric,
                          occurred_at=at or timezone.now(), **overrides)
    return services.usage_events_store(rows=[row])


def credits_granted(team, amount: int, *, reference: str, reason: str = CreditLedgerEntry.Reason.PURCHASE):
    """Grant credits through the ledger service (the balance moves with the entry)."""
    return services.credits_grant(team=team, amount=amount, reason=reason, reference=reference)


class MeterReportFactory(factory.django.DjangoModelFactory):
    """An overage report of the current period, pending unless `status=` says otherwise."""

    class Meta:
        model = MeterReport

    team = factory.SubFactory(TeamFactory)
    metric = "api_call"
    event_name = "api_call"
    period_start = factory.LazyFunction(lambda: period_for().start)
    quantity = 1
    stripe_customer_id = factory.Sequence(lambda n: f"cus_test{n}")
    event_timestamp = factory.LazyFunction(timezone.now)
    sent_at = factory.LazyAttribute(lambda report: timezone.now() if report.status == MeterReport.Status.SENT
                                    else None)


class UsagePeriodCloseFactory(factory.django.DjangoModelFactory):
    """The rollover's record of last month (by default) for a team and metric."""

    class Meta:
        model = UsagePeriodClose

    class Params:
        period = factory.LazyFunction(lambda: period_for().previous())

    team = factory.SubFactory(TeamFactory)
    metric = "api_call"
    period_start = factory.LazyAttribute(lambda close: close.period.start)
    period_end = factory.LazyAttribute(lambda close: close.period.end)
    used = 0
    included = 1000
    overage = 0
    plan_key = "free"


class TeamUsagePolicyFactory(factory.django.DjangoModelFactory):
    class Meta:
        model = TeamUsagePolicy

    team = factory.SubFactory(TeamFactory)
    spend_cap_minor = None
    currency = "usd"
