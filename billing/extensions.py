"""
The one way billing reaches the usage app: usage registers its credit ledger and usage reads here in its
`AppConfig.ready()`; billing never imports `usage`.

Why: usage depends on billing (plan limits, the catalog, the Stripe gateway for meter events). Billing needs
credits in three places (credits granted for a paid credit pack, the refund claw-back, the back office's grant and
removal and its customer page) and the usage panel on /billing/. Calling through this registry keeps the import
graph one-way. A project without a registered ledger fails at start-up (`billing.E001`), never silently at the
first refund.
"""
from __future__ import annotations

from dataclasses import dataclass
from datetime import datetime
from typing import Any, Protocol

from django.core import checks


class CreditLedger(Protocol):
    """What billing needs of the credit ledger and of usage reads. Amounts are whole credits."""

    def balance(self, *, team) -> int: ...

    def grant(self, *, team, amount: int, reason: str, reference: str, created_by=None, note: str = "") -> Any: ...

    def remove(self, *, team, amount: int, reason: str, reference: str, created_by=None, note: str = "",
               allow_partial: bool = False) -> Any: ...

    def purchased_for(self, *, team, reference: str) -> int:
        """Credits granted for the purchase identified by `reference` (Checkout Session or PaymentIntent id)."""
        ...

    def ledger(self, *, team) -> Any:
        """The team's ledger entries, newest first (a queryset: callers slice it)."""
        ...

    def period_summary(self, *, team, at: datetime | None = None) -> dict: ...

    def panel_context(self, *, team) -> dict:
        """The usage panel of /billing/."""
        ...


@dataclass
class _Registry:
    credit_ledger: CreditLedger | None = None


_registry = _Registry()


def credit_ledger_register(ledger: CreditLedger) -> None:
    _registry.credit_ledger = ledger


def credit_ledger() -> CreditLedger:
    if _registry.credit_ledger is None:
        raise RuntimeError("No credit ledger registered: the usage app must be in INSTALLED_APPS (see billing.E001)")
    return _registry.credit_ledger


@checks.register()
def credit_ledger_check(app_configs=None, **kwargs):
    if _registry.credit_ledger is None:
        return [checks.Error("No credit ledger is registered with billing.extensions.",
                             hint="Add 'usage' to INSTALLED_APPS; it registers the ledger in its ready().",
                             id="billing.E001")]
    return []
