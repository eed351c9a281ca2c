from django.contrib.auth.decorators import login_required
from django.shortcuts import render

from .catalog import load_catalog
from .selectors import team_plan


def pricing(request):
    return render(request, "billing/pricing.html", {"catalog": load_catalog()})


@login_required
def overview(request):
    from accounts.selectors import user_current_membership

    membership = user_current_membership(user=request.user, team_id=request.session.get("team_id"))
    return render(request, "billing/overview.html", {"plan": team_plan(team=membership.team), "team": membership.team})
