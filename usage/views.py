from django.contrib.auth.decorators import login_required
from django.core.paginator import Paginator
from django.shortcuts import render

from accounts.selectors import user_current_membership
from billing_site.errors import NotFoundError

from .selectors import credit_ledger, usage_panel_context


@login_required
def overview(request):
    """The team's usage this period (server-rendered chart) and its credit ledger."""
    membership = user_current_membership(user=request.user, team_id=request.session.get("team_id"))
    if membership is None:
        raise NotFoundError("not_found", "Team not found.")
    page = Paginator(credit_ledger(team=membership.team), 25).get_page(request.GET.get("page"))
    return render(request, "usage/overview.html", {
        "team": membership.team,
        "usage_panel": usage_panel_context(team=membership.team),
        "ledger_page": page,
    })
