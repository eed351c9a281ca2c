import base64
from urllib.parse import urlencode

import django_otp
import segno
from django.contrib import messages
from django.contrib.auth import login
from django.contrib.auth.decorators import login_required
from django.http import Http404
from django.shortcuts import redirect, render
from django.urls import reverse
from django.utils.safestring import mark_safe
from django.utils.http import url_has_allowed_host_and_scheme
from django.utils.translation import get_language, gettext as _
from django.views.decorators.http import require_POST
from django_otp import login as otp_login
from django_otp.plugins.otp_totp.models import TOTPDevice

from billing_site.errors import ApplicationError

from . import selectors, services
from .forms import APIKeyForm, InvitationForm, OTPTokenForm, SignupForm

# One-time values (a new key's secret, a new invitation link) travel from the POST to the following GET in the
# session and are removed when shown: Post/Redirect/Get, so reloading the page never creates a second key.
SESSION_NEW_API_KEY = "new_api_key"
SESSION_NEW_INVITE_URL = "new_invite_url"


def _safe_next(request, fallback: str) -> str:
    """The `next` parameter when it points back into this site; anything else would be an open redirect."""
    target = request.POST.get("next") or request.GET.get("next") or ""
    if target and url_has_allowed_host_and_scheme(target, {request.get_host()}, require_https=request.is_secure()):
        return target
    return fallback


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
            # An address that already has an account gets an email instead (user is None) and the same redirect,
            # so the answer never tells a visitor whether an address is registered.
            if user is not None:
                login(request, user, backend="django.contrib.auth.backends.ModelBackend")
                messages.success(request, _("Welcome! Your team is ready."))
            return redirect(_safe_next(request, "billing:overview"))
    return render(request, "accounts/signup.html", {"form": form, "next": _safe_next(request, "")})


def _current_membership(request):
    membership = selectors.user_session_membership(user=request.user, session=request.session)
    if membership is None:
        raise Http404
    return membership


@login_required
@require_POST
def switch_team(request, team_id: int):
    team = selectors.team_get_for_user(user=request.user, team_id=team_id)  # someone else's team: 404
    request.session[selectors.SESSION_TEAM_KEY] = team.id
    return redirect(_safe_next(request, "billing:overview"))


@login_required
def members(request):
    membership = _current_membership(request)
    form = InvitationForm(request.POST or None)
    if request.method == "POST" and form.is_valid():
        try:
            _invitation, invite_url = services.invitation_create(
                team=membership.team, invited_by=request.user, **form.cleaned_data
            )
        except ApplicationError as error:
            form.add_error(None, error.user_message)
        else:
            messages.success(request, _("Invitation sent to %(email)s.") % {"email": form.cleaned_data["email"]})
            request.session[SESSION_NEW_INVITE_URL] = invite_url
            return redirect("accounts:members")
    invite_url = request.session.pop(SESSION_NEW_INVITE_URL, None) if request.method == "GET" else None
    context = {
        "membership": membership,
        "members": selectors.team_members(team=membership.team),
        "invitations": selectors.team_pending_invitations(team=membership.team),
        "form": form,
        "invite_url": invite_url,
        "may_add_seat": services.team_may_add_seat(team=membership.team),
        "seat_limit": selectors.team_seat_limit(team=membership.team),
    }
    response = render(request, "accounts/members.html", context)
    if invite_url:
        response["Cache-Control"] = "no-store"  # the page shows a one-time invitation link
    return response


@login_required
@require_POST
def member_remove(request, user_id: int):
    membership = _current_membership(request)
    try:
        services.membership_remove(team=membership.team, user_id=user_id, removed_by=request.user)
    except ApplicationError as error:
        if error.http_status == 404:  # not a member of this team: the same answer as an id that does not exist
            raise Http404 from error
        messages.error(request, error.user_message)
    else:
        messages.success(request, _("Member removed."))
    return redirect("accounts:members")


@login_required
@require_POST
def invitation_revoke(request, invitation_id: int):
    membership = _current_membership(request)
    try:
        services.invitation_revoke(team=membership.team, invitation_id=invitation_id, revoked_by=request.user)
    except ApplicationError as error:
        if error.http_status == 404:
            raise Http404 from error
        messages.error(request, error.user_message)
    else:
        messages.success(request, _("Invitation cancelled."))
    return redirect("accounts:members")


def invitation_accept(request, token: str):
    """Anyone with the link sees this page; accepting needs the account of the invited address."""
    if not request.user.is_authenticated:
        return render(request, "accounts/invitation_accept.html", {"token": token, "next": request.path})
    if request.method == "POST":
        try:
            membership = services.invitation_accept(token=token, user=request.user)
        except ApplicationError as error:
            return render(
                request, "accounts/invitation_accept.html", {"token": token, "error": error.user_message},
                status=error.http_status,
            )
        request.session[selectors.SESSION_TEAM_KEY] = membership.team_id
        messages.success(request, _("You joined %(team)s.") % {"team": membership.team.name})
        return redirect("billing:overview")
    return render(request, "accounts/invitation_accept.html", {"token": token})


@login_required
def api_keys(request):
    membership = _current_membership(request)
    form = APIKeyForm(request.POST or None)
    if request.method == "POST" and form.is_valid():
        try:
            created = services.api_key_create(team=membership.team, created_by=request.user, **form.cleaned_data)
        except ApplicationError as error:
            # Members see no form (they cannot create keys), so their refusal goes to the page's messages.
            if membership.can_manage:
                form.add_error(None, error.user_message)
            else:
                messages.error(request, error.user_message)
        else:
            request.session[SESSION_NEW_API_KEY] = {"id": created.api_key.pk, "raw_key": created.raw_key}
            return redirect("accounts:api_keys")
    created = request.session.pop(SESSION_NEW_API_KEY, None) if request.method == "GET" else None
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


# --- Staff second factor ---------------------------------------------------------------------------------------

SESSION_OTP_PENDING_DEVICE = "otp_pending_device_id"
SESSION_OTP_RECOVERY_CODES = "otp_new_recovery_codes"


def _staff_only(request) -> None:
    if not request.user.is_staff:
        raise Http404


@login_required
def otp_enrol(request):
    """
    Enrol an authenticator app: the QR code and secret of a new device are shown once; a code from the app confirms
    it. A user who already has a device must pass it first (a stolen password alone cannot replace the device).
    """
    _staff_only(request)
    if selectors.user_has_confirmed_otp_device(user=request.user) and not request.user.is_verified():
        return redirect(f"{reverse('accounts:otp_verify')}?{urlencode({'next': _safe_next(request, '')})}")
    form = OTPTokenForm(request.POST or None)
    if request.method == "POST" and form.is_valid():
        try:
            confirmed = services.staff_totp_enrolment_confirm(
                user=request.user, device_id=request.session.get(SESSION_OTP_PENDING_DEVICE) or 0,
                token=form.cleaned_data["otp_token"],
            )
        except ApplicationError as error:
            form.add_error("otp_token", error.user_message)
        else:
            request.session.pop(SESSION_OTP_PENDING_DEVICE, None)
            otp_login(request, confirmed.device)
            request.session[SESSION_OTP_RECOVERY_CODES] = confirmed.recovery_codes
            return redirect(f"{reverse('accounts:otp_recovery_codes')}?{urlencode({'next': _safe_next(request, '')})}")
        # A wrong code keeps the same pending device: the QR code the person scanned stays valid.
        device = TOTPDevice.objects.filter(
            user=request.user, pk=request.session.get(SESSION_OTP_PENDING_DEVICE) or 0, confirmed=False
        ).first()
    else:
        device = None
    if device is None:
        device = services.staff_totp_enrolment_start(user=request.user)
        request.session[SESSION_OTP_PENDING_DEVICE] = device.pk
    secret = base64.b32encode(device.bin_key).decode()
    context = {
        "form": form,
        "secret": secret,
        # segno's own SVG markup of our otpauth URL: no user input reaches it.
        "qr_svg": mark_safe(segno.make(device.config_url, error="m").svg_inline(scale=4)),  # nosec B308
        "next": _safe_next(request, ""),
    }
    response = render(request, "accounts/otp_enrol.html", context)
    response["Cache-Control"] = "no-store"  # the page shows a secret
    return response


@login_required
def otp_verify(request):
    """The second step of a staff login: a TOTP code or a recovery code (each recovery code works once)."""
    _staff_only(request)
    if not selectors.user_has_confirmed_otp_device(user=request.user):
        return redirect(f"{reverse('accounts:otp_enrol')}?{urlencode({'next': _safe_next(request, '')})}")
    form = OTPTokenForm(request.POST or None)
    if request.method == "POST" and form.is_valid():
        device = django_otp.match_token(request.user, form.cleaned_data["otp_token"].replace(" ", ""))
        if device is None:
            form.add_error("otp_token", _("That code is not valid. Check the time on your phone and try again."))
        else:
            otp_login(request, device)
            return redirect(_safe_next(request, "admin:index"))
    return render(request, "accounts/otp_verify.html", {"form": form, "next": _safe_next(request, "")})


@login_required
def otp_recovery_codes(request):
    _staff_only(request)
    codes = request.session.pop(SESSION_OTP_RECOVERY_CODES, None)
    if codes is None:
        return redirect(_safe_next(request, "admin:index"))
    response = render(request, "accounts/otp_recovery_codes.html",
                      {"codes": codes, "next": _safe_next(request, reverse("admin:index"))})
    response["Cache-Control"] = "no-store"  # shown once
    return response
