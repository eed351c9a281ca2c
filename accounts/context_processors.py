from .selectors import user_session_membership, user_teams


def current_team(request):
    """The team the pages act for, and the user's teams for the switcher in the header."""
    user = getattr(request, "user", None)
    if user is None or not user.is_authenticated:
        return {}
    match = getattr(request, "resolver_match", None)
    if match is not None and match.namespace == "admin":
        return {}  # the back office has no team switcher: two queries saved on every admin page
    membership = user_session_membership(user=user, session=request.session)
    return {
        "current_membership": membership,
        "current_team": membership.team if membership else None,
        "user_memberships": list(user_teams(user=user)),
    }
