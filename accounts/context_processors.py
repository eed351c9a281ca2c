from .selectors import user_session_membership, user_teams


def current_team(request):
    """The team the pages act for, and the user's teams for the switcher in the header."""
    user = getattr(request, "user", None)
    if user is None or not user.is_authenticated:
        return {}
    membership = user_session_membership(user=user, session=request.session)
    return {
        "current_membership": membership,
        "current_team": membership.team if membership else None,
        "user_memberships": list(user_teams(user=user)),
    }
