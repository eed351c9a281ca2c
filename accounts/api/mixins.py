from django.utils.translation import gettext as _
from rest_framework.request import Request

from billing_site.errors import NotFoundError, PermissionDeniedError

from ..models import Membership, Team
from ..selectors import user_current_membership, user_session_membership


# Ids are 64-bit signed integers in the database; a longer string would overflow the query (a 500, not a 404).
MAX_ID_DIGITS = 18


def header_team_id(value: str) -> int | None:
    """
    A team id from a header, or None. `str.isdigit()` alone also accepts non-ASCII digits ('²', '٣') that int()
    rejects or reads differently, and any number of digits.
    """
    if value.isascii() and value.isdigit() and len(value) <= MAX_ID_DIGITS:
        return int(value)
    return None


def request_membership(request: Request) -> Membership | None:
    """
    The membership an API call acts through; None for API keys (the key's team acts, with no role).
    An explicit `X-Team-Id` header must name one of the user's teams (anything else is 404); without it the
    session's current team is used, as on the pages.
    """
    if getattr(request, "api_key", None) is not None:
        return None
    header = request.headers.get("X-Team-Id", "").strip()
    if header:
        team_id = header_team_id(header)
        membership = user_current_membership(user=request.user, team_id=team_id) if team_id is not None else None
    else:
        membership = user_session_membership(user=request.user, session=request.session)
    if membership is None:
        raise NotFoundError("not_found", _("Team not found."))
    return membership


def request_team(request: Request) -> Team:
    """The team an API call acts for: the API key's team, or the signed-in user's current team."""
    api_key = getattr(request, "api_key", None)
    if api_key is not None:
        # A key acts for its own team only: naming another one is a 404, never that team's data nor silently ours.
        header = request.headers.get("X-Team-Id", "").strip()
        if header and header_team_id(header) != api_key.team_id:
            raise NotFoundError("not_found", _("Team not found."))
        return api_key.team
    return request_membership(request).team


class TeamScopedAPIMixin:
    """For API views whose objects belong to one team: everything is filtered by `self.team`."""

    def initial(self, request, *args, **kwargs):
        super().initial(request, *args, **kwargs)
        # Resolved before the handler reads or validates the body: a team the caller does not belong to answers 404
        # whatever the body holds (it used to answer 400 for an invalid body first).
        self.team  # noqa: B018

    @property
    def team(self) -> Team:
        if not hasattr(self, "_team"):
            self._team = request_team(self.request)
        return self._team

    def require_team_manager(self) -> None:
        """Owner/admin only. API keys act for the team with full rights: only owners/admins can create them."""
        membership = request_membership(self.request)
        if membership is not None and not membership.can_manage:
            raise PermissionDeniedError("forbidden", _("Only the team's owner or an admin can do this."))
