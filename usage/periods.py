"""Usage periods: calendar months in UTC. Quotas, alerts, overage reports and rollover all use these bounds."""
from dataclasses import dataclass
from datetime import date, datetime, timedelta, timezone as dt_timezone

from django.utils import timezone


@dataclass(frozen=True)
class Period:
    start: datetime  # inclusive, UTC midnight on the 1st
    end: datetime  # exclusive: the next period's start

    @property
    def key(self) -> str:
        """Compact name used in cache keys, e.g. 202611."""
        return self.start.strftime("%Y%m")

    @property
    def days(self) -> list[date]:
        count = (self.end - self.start).days
        return [(self.start + timedelta(days=i)).date() for i in range(count)]

    def previous(self) -> "Period":
        return period_for(self.start - timedelta(seconds=1))

    def contains(self, moment: datetime) -> bool:
        return self.start <= moment < self.end


def period_for(moment: datetime | None = None) -> Period:
    moment = (moment or timezone.now()).astimezone(dt_timezone.utc)
    start = datetime(moment.year, moment.month, 1, tzinfo=dt_timezone.utc)
    end = datetime(moment.year + (moment.month == 12), moment.month % 12 + 1, 1, tzinfo=dt_timezone.utc)
    return Period(start=start, end=end)
