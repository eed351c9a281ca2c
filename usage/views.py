from django.contrib import messages
from django.contrib.auth.decorators import login_required
from django.core.paginator import Paginator
from django.shortcuts import redirect, render
from django.utils.translation import gettext as _
from django.views.decorators.http import require_POST

from accounts.models import Membership
from accounts.selectors import user_current_membership
from billing_site.errors import NotFoundError
from billing_site.money import minor_to_decimal

from .forms import SpendCapForm
from .models import TeamUsagePolicy
from .selectors import credit_ledger, usage_panel_context
from .services import team_spend_cap_set


def _membership(request) -> Membership:
    membership = user_current_membership(user=request.user, team_id=request.session.get("team_id"))
    if membership is None:
        raise NotFoundError("not_found", "Team not found.")
    return membership


def _spend_cap_form(team) -> SpendCapForm:
    policy = TeamUsagePolicy.objects.filter(team=team).first()
    # Without a saved cap, the currency the team is billed in (its subscription's), so a Brazilian team sees BRL.
    from billing.selectors import subscription_summary, team_subscription

    summary = subscription_summary(team_subscription(team=team))
    initial = {"currency": policy.currency if policy else (summary or {}).get("currency") or "usd"}
    if policy and policy.spend_cap_minor is not None:
        initial["spend_cap"] = minor_to_decimal(policy.spend_cap_minor, policy.currency)
    return SpendCapForm(initial=initial)


@login_required
def overview(request):
    """The team's usage this period (server-rendered chart) and its credit ledger."""
    membership = _membership(request)
    page = Paginator(credit_ledger(team=membership.team), 25).get_page(request.GET.get("page"))
    return render(request, "usage/overview.html", {
        "team": membership.team,
        "usage_panel": usage_panel_context(team=membership.team),
        "ledger_page": page,
        "is_owner": membership.role == Membership.Role.OWNER,
        "spend_cap_form": _spend_cap_form(membership.team),
    })


@login_required
@require_POST
def spend_cap(request):
    """The owner sets or clears the spend cap (the service checks ownership)."""
    membership = _membership(request)
    form = SpendCapForm(request.POST)
    if not form.is_valid():
        messages.error(request, _("The spend cap was not changed: enter an amount of zero or more."))
        return redirect("usage:overview")
    team_spend_cap_set(team=membership.team, set_by=request.user, spend_cap_minor=form.spend_cap_minor(),
                       currency=form.cleaned_data["currency"])
    messages.success(request, _("Spend cap saved."))
    return redirect("usage:overview")
