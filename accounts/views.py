from django.contrib import messages
from django.contrib.auth import login
from django.contrib.auth.decorators import login_required
from django.http import Http404
from django.shortcuts import redirect, render
from django.utils.translation import get_language, gettext as _
from django.views.decorators.http import require_POST

from billing_site.errors import ApplicationError

from . import selectors, services
from .forms import APIKeyForm, InvitationForm, SignupForm


def signup(request):
    if request.user.is_authenticated:
        return redirect("billing:overview")
    form = SignupForm(request.POST or None)
    if request.method == "POST" and form.is_valid():
        try:
            user = services.user_signup(
                email=form.cleaned_data["email"],
                password=form.cleaned_data["password"],
                team_name=form.cleaned_data["team_name"],
                language="pt-br" if (get_language() or "").lower().startswith("pt") else "en",
            )
        except ApplicationError as error:
            form.add_error("email", error.user_message)
        else:
            login(request, user, backend="django.contrib.auth.backends.ModelBackend")
            messages.success(request, _("Welcome! Your team is ready."))
            return redirect(request.GET.get("next") or "billing:overview")
    return render(request, "accounts/signup.html", {"form": form})


def _current_membership(request):
    membership = selectors.user_current_membership(user=request.user, team_id=request.session.get("team_id"))
    if membership is None:
        raise Http404
    return membership


@login_required
def switch_team(request, team_id: int):
    team = selectors.team_get_for_user(user=request.user, team_id=team_id) if request.method == "POST" else None
    if team is None:
        return redirect("accounts:members")
    request.session["team_id"] = team.id
    return redirect(request.POST.get("next") or "billing:overview")


@login_required
def members(request):
    membership = _current_membership(request)
    form = InvitationForm(request.POST or None)
    invite_url = None
    if request.method == "POST" and form.is_valid():
        try:
            _invitation, invite_url = services.invitation_create(
                team=membership.team, invited_by=request.user, **form.cleaned_data
            )
        except ApplicationError as error:
            form.add_error(None, error.user_message)
        else:
            messages.success(request, _("Invitation sent to %(email)s.") % {"email": form.cleaned_data["email"]})
            form = InvitationForm()
    context = {
        "membership": membership,
        "members": selectors.team_members(team=membership.team),
        "invitations": membership.team.invitations.filter(status="pending"),
        "form": form,
        "invite_url": invite_url,
        "may_add_seat": services.team_may_add_seat(team=membership.team),
    }
    return render(request, "accounts/members.html", context)


@login_required
@require_POST
def member_remove(request, user_id: int):
    membership = _current_membership(request)
    try:
        services.membership_remove(team=membership.team, user_id=user_id, removed_by=request.user)
    except ApplicationError as error:
        messages.error(request, error.user_message)
    else:
        messages.success(request, _("Member removed."))
    return redirect("accounts:members")


@login_required
def invitation_accept(request, token: str):
    if request.method == "POST":
        try:
            membership = services.invitation_accept(token=token, user=request.user)
        except ApplicationError as error:
            messages.error(request, error.user_message)
            return render(request, "accounts/invitation_accept.html", {"token": token}, status=error.http_status)
        request.session["team_id"] = membership.team_id
        messages.success(request, _("You joined %(team)s.") % {"team": membership.team.name})
        return redirect("billing:overview")
    return render(request, "accounts/invitation_accept.html", {"token": token})


@login_required
def api_keys(request):
    membership = _current_membership(request)
    form = APIKeyForm(request.POST or None)
    created = None
    if request.method == "POST" and form.is_valid():
        try:
            created = services.api_key_create(team=membership.team, created_by=request.user, **form.cleaned_data)
        except ApplicationError as error:
            form.add_error(None, error.user_message)
        else:
            form = APIKeyForm()
    response = render(
        request,
        "accounts/api_keys.html",
        {"membership": membership, "keys": selectors.team_api_keys(team=membership.team), "form": form,
         "created": created},
    )
    if created:
        response["Cache-Control"] = "no-store"  # the page shows a secret exactly once
    return response


@login_required
@require_POST
def api_key_revoke(request, key_id: int):
    membership = _current_membership(request)
    api_key = selectors.team_api_keys(team=membership.team).filter(pk=key_id).first()
    if api_key is None:
        raise Http404
    try:
        services.api_key_revoke(api_key=api_key, revoked_by=request.user)
    except ApplicationError as error:
        messages.error(request, error.user_message)
    else:
        messages.success(request, _("Key revoked."))
    return redirect("accounts:api_keys")
