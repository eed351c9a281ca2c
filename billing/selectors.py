"""Reads for billing: the team's plan and its limits."""
from dataclasses import dataclass

from accounts.models import Team

from .catalog import Plan, load_catalog


@dataclass(frozen=True)
class PlanLimits:
    plan_key: str
    seats: int | None
    rate_limit_per_second: int
    included: dict[str, int]
    overage: str  # "credits" | "metered"


def team_plan(*, team: Team) -> Plan:
    """The catalog plan the team is on. Until a subscription is mirrored, every team is on `free`."""
    return load_catalog().free_plan


def team_plan_limits(*, team: Team) -> PlanLimits:
    plan = team_plan(team=team)
    return PlanLimits(
        plan_key=plan.key,
        seats=plan.seats,
        rate_limit_per_second=plan.rate_limit_per_second,
        included=dict(plan.included),
        overage=plan.overage,
    )
