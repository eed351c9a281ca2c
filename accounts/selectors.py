"""Reads for accounts and teams."""
from collections.abc import Callable

import django_otp
from django.core import checks
from django.db.models import QuerySet
from django.utils.translation import gettext as _

from billing_site.errors import NotFoundError

from .models import APIKey, Invitation, Membership, Team, User


def user_teams(*, user: User) -> QuerySet[Membership]:
    return Membership.objects.filter(user=user).select_related("team").order_by("created")


def user_current_membership(*, user: User, team_id: int | None = None) -> Membership | None:
    """The membership a page or API call acts through: the chosen team, else the user's first (personal) team."""
    memberships = user_teams(user=user)
    if team_id is not None:
        return memberships.filter(team_id=team_id).first()
    return memberships.first()


SESSION_TEAM_KEY = "team_id"


def user_session_membership(*, user: User, session) -> Membership | None:
    """
    The membership the signed-in user's pages act through: the team chosen with the team switcher while the user
    still belongs to it, else their first team. A stale choice (removed from that team) falls back instead of
    locking the user out with 404s.
    """
    team_id = session.get(SESSION_TEAM_KEY)
    membership = user_current_membership(user=user, team_id=team_id) if team_id is not None else None
    if membership is None:
        if team_id is not None:
            session.pop(SESSION_TEAM_KEY, None)
        membership = user_current_membership(user=user)
    return membership


def team_pending_invitations(*, team: Team) -> QuerySet[Invitation]:
    return team.invitations.filter(status=Invitation.Status.PENDING).order_by("created")


def team_get_for_user(*, user: User, team_id: int) -> Team:
    """A team the user belongs to; any other id is 404, never 403, so ids do not leak."""
    membership = user_current_membership(user=user, team_id=team_id)
    if membership is None:
        raise NotFoundError("not_found", _("Team not found."))
    return membership.team


def team_members(*, team: Team) -> QuerySet[Membership]:
    return team.memberships.select_related("user").order_by("created")


def team_api_keys(*, team: Team) -> QuerySet[APIKey]:
    return APIKey.objects.filter(team=team).select_related("created_by")


def api_key_creator_may_act(*, api_key: APIKey) -> bool:
    """
    Whether a key's creator may still act through it: an active user, still a member of the key's team, with a role
    that may mint keys (owner or admin). Read live on every request (one indexed query).
    """
    creator = api_key.created_by
    if creator is None or not creator.is_active:
        return False
    return Membership.objects.filter(
        team_id=api_key.team_id, user_id=creator.pk, role__in=[Membership.Role.OWNER, Membership.Role.ADMIN]
    ).exists()


# Seats a team's plan allows (None: unlimited). Plans are billing's, and billing depends on accounts, not the
# reverse: billing registers the answer here when it loads (billing.hooks.hooks_register, from BillingConfig.ready()),
# as usage registers its signup grant in accounts.services.SIGNUP_HOOKS. A project without one fails the system
# check accounts.E001 at start-up instead of letting every team invite without limit.
SeatLimitProvider = Callable[..., "int | None"]
SEAT_LIMIT_PROVIDER: SeatLimitProvider | None = None


def seat_limit_provider_register(provider: SeatLimitProvider) -> None:
    """`provider(team=...)` answers the seats the team's plan allows; registering again replaces it (reloads)."""
    global SEAT_LIMIT_PROVIDER
    SEAT_LIMIT_PROVIDER = provider


def team_seat_limit(*, team: Team) -> int | None:
    """Seats the team's plan allows (None: unlimited), as the registered provider (billing) answers."""
    if SEAT_LIMIT_PROVIDER is None:
        raise RuntimeError("No seat-limit provider registered (see accounts.E001)")
    return SEAT_LIMIT_PROVIDER(team=team)


@checks.register()
def seat_limit_provider_check(app_configs=None, **kwargs):
    if SEAT_LIMIT_PROVIDER is None:
        return [checks.Error("No seat-limit provider is registered with accounts.selectors.",
                             hint="The billing app registers it in its ready() (billing.hooks.hooks_register).",
                             id="accounts.E001")]
    return []


def user_has_confirmed_otp_device(*, user: User) -> bool:
    return django_otp.user_has_device(user, confirmed=True)
