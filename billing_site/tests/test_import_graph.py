"""
Imports between apps point one way (issue 9): billing and usage depend on accounts, usage depends on billing. The
other directions go through hooks the depending app registers in its ready(): accounts.services.SIGNUP_HOOKS,
accounts.selectors.SEAT_LIMIT_PROVIDER, billing.extensions.credit_ledger(). Function-level imports count too.
"""
import ast
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[2]



def imported_apps(path: Path) -> set[str]:
    tree = ast.parse(path.read_text())
    roots = set()
    for node in ast.walk(tree):
        if isinstance(node, ast.Import):
            roots |= {alias.name.split(".")[0] for alias in node.names}
        elif isinstance(node, ast.ImportFrom) and node.level == 0 and node.module:
            roots.add(node.module.split(".")[0])
    return roots


def offenders(app: str, forbidden: set[str]) -> dict[str, set[str]]:
    found = {}
    for path in (ROOT / app).rglob("*.py"):
        relative = path.relative_to(ROOT).as_posix()
        bad = imported_apps(path) & forbidden
        if bad:
            found[relative] = bad
    return found


def test_accounts_imports_neither_billing_nor_usage():
    assert offenders("accounts", {"billing", "usage"}) == {}


def test_billing_never_imports_usage():
    assert offenders("billing", {"usage"}) == {}


def test_the_hooks_are_registered_when_the_project_starts():
    from accounts import selectors
    from accounts.services import SIGNUP_HOOKS
    from billing.extensions import credit_ledger
    from usage.ledger import UsageCreditLedger

    assert isinstance(credit_ledger(), UsageCreditLedger)
    assert selectors.SEAT_LIMIT_PROVIDER is not None
    assert SIGNUP_HOOKS


def test_without_a_seat_limit_provider_the_project_refuses_to_start(monkeypatch):
    from accounts import selectors

    monkeypatch.setattr(selectors, "SEAT_LIMIT_PROVIDER", None)
    assert [error.id for error in selectors.seat_limit_provider_check()] == ["accounts.E001"]
    with pytest.raises(RuntimeError):
        selectors.team_seat_limit(team=None)


def test_billing_answers_the_seat_limit_from_the_teams_plan(db):
    from accounts import selectors
    from accounts.tests.factories import make_team_with_owner

    team, _owner = make_team_with_owner()
    assert selectors.team_seat_limit(team=team) == 1  # a new team is on `free`: one seat (DESIGN's pricing table)
