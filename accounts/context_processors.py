from .selectors import user_current_membership


def current_team(request):
    user = getattr(request, "user", None)
    if user is None or not user.is_authenticated:
        return {}
    membership = user_current_membership(user=user, team_id=request.session.get("team_id"))
    return {"current_membership": membership, "current_team": membership.team if membership else None}
