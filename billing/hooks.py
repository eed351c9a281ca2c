"""
What billing plugs into accounts. accounts never imports billing (billing depends on accounts); it exposes hooks that
billing fills when it loads: `hooks_register()` is called from `BillingConfig.ready()`.
"""
from accounts import services as accounts_services
from accounts.selectors import seat_limit_provider_register

from .selectors import team_plan_limits


def team_seat_limit(*, team) -> int | None:
    """Seats the team's plan allows (None: unlimited, e.g. enterprise by contract)."""
    return team_plan_limits(team=team).seats


def hooks_register() -> None:
    # ready() can run more than once (tests, reloads); registering replaces, never adds a second provider.
    seat_limit_provider_register(team_seat_limit)
    # Login lockouts go into billing's audit trail (issue 10); added once however often ready() runs.
    from .backoffice.audit import login_lockout_audit

    if login_lockout_audit not in accounts_services.LOGIN_LOCKOUT_HOOKS:
        accounts_services.LOGIN_LOCKOUT_HOOKS.append(login_lockout_audit)
