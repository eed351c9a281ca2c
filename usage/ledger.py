"""
The usage app's implementation of `billing.extensions.CreditLedger`: how billing reaches credits and usage reads
without importing `usage` (registered in `UsageConfig.ready()`). A thin adapter: every rule lives in the selectors
and services it calls.
"""
from __future__ import annotations

from datetime import datetime

from . import selectors, services


class UsageCreditLedger:
    def balance(self, *, team) -> int:
        return selectors.credits_balance(team=team)

    def grant(self, *, team, amount: int, reason: str, reference: str, created_by=None, note: str = ""):
        return services.credits_grant(team=team, amount=amount, reason=reason, reference=reference,
                                      created_by=created_by, note=note)

    def remove(self, *, team, amount: int, reason: str, reference: str, created_by=None, note: str = "",
               allow_partial: bool = False):
        return services.credits_remove(team=team, amount=amount, reason=reason, reference=reference,
                                       created_by=created_by, note=note, allow_partial=allow_partial)

    def purchased_for(self, *, team, reference: str) -> int:
        return selectors.credits_purchased_for(team=team, reference=reference)

    def ledger(self, *, team):
        return selectors.credit_ledger(team=team)

    def period_summary(self, *, team, at: datetime | None = None) -> dict:
        return selectors.usage_period_summary(team=team, at=at)

    def panel_context(self, *, team) -> dict:
        return selectors.usage_panel_context(team=team)
