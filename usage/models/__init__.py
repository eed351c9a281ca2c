"""
Usage metering, quotas and the credit ledger: one module per concern, every model importable from `usage.models`.

Append-only history: `CreditLedgerEntry` and `UsageEvent` rows are never updated or deleted by the application.
Cached sums live beside them with database constraints: `CreditBalance.balance` (CHECK balance >= 0, moved in the
same transaction as the ledger insert) and `UsageDailyTotal.quantity` (moved in the same transaction as the
event inserts, only for rows that were really inserted).
"""
from .alerts import UsageAlert
from .credits import CreditBalance, CreditLedgerEntry
from .events import UsageDailyTotal, UsageEvent, UsagePeriodClose
from .meter_reports import MeterDriftCheck, MeterReport
from .policy import TeamUsagePolicy

__all__ = ["CreditBalance", "CreditLedgerEntry", "MeterDriftCheck", "MeterReport", "TeamUsagePolicy", "UsageAlert",
           "UsageDailyTotal", "UsageEvent", "UsagePeriodClose"]
