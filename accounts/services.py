"""Writes for users, teams, memberships, invitations, API keys and the staff second factor."""
import base64
import hashlib
import hmac
import logging
import secrets
from dataclasses import dataclass
from datetime import datetime, timedelta

from django.conf import settings
from django.core.exceptions import ValidationError
from django.core.mail import send_mail
from django.db import IntegrityError, transaction
from django.template.loader import render_to_string
from django.urls import reverse
from django.utils import timezone, translation
from django.utils.translation import gettext as _
from django_otp.plugins.otp_static.models import StaticDevice, StaticToken
from django_otp.plugins.otp_totp.models import TOTPDevice

from billing_site.errors import ApplicationError, NotFoundError, PermissionDeniedError

from . import selectors
from .models import APIKey, Invitation, Membership, Team, User

logger = logging.getLogger(__name__)

API_KEY_PREFIX_BYTES = 6  # 12 hex characters: enough to be unique, public by design
API_KEY_SECRET_BYTES = 32
# last_used_at is written at most this often per key, so authentication is not a write on every request.
API_KEY_LAST_USED_GRANULARITY = timedelta(minutes=1)


# Other apps react to a new team (e.g. usage's signup credit grant) through hooks they register here in their
# AppConfig.ready(): accounts never imports them. Each is called as hook(team=..., user=...) inside the signup's
# transaction.
SIGNUP_HOOKS: list = []
# Called as hook(user_id=..., ip_address=..., path=...) on every login lockout (billing registers its audit trail).
LOGIN_LOCKOUT_HOOKS: list = []


@transaction.atomic
def user_signup(*, email: str, password: str, team_name: str = "", language: str = "en") -> User | None:
    """
    Create a user, their personal team and the owner membership, all or nothing.

    An address that already has an account gets an email saying so (with the login and password-reset links) and
    None is returned: the signup page answers exactly as for a new account, so it never reveals who has one.
    """
    email = email.strip().lower()
    if User.objects.filter(email__iexact=email).exists():
        _signup_existing_account_notify(email=email, language=language)
        return None
    try:
        with transaction.atomic():
            user = User.objects.create_user(email=email, password=password, language=language)
    except (IntegrityError, ValidationError):
        # A concurrent signup for the same address won the race: the same answer as above.
        _signup_existing_account_notify(email=email, language=language)
        return None
    team = team_create(name=team_name or f"{email.split('@')[0]}'s team", billing_email=email, owner=user)
    logger.info("user signed up", extra={"user_id": user.pk, "team_id": team.pk})
    return user


def _signup_existing_account_notify(*, email: str, language: str) -> None:
    with translation.override(language):
        subject = _("You already have an account")
        body = render_to_string("accounts/email/account_exists.txt", {
            "login_url": settings.SITE_URL + reverse("accounts:login"),
            "reset_url": settings.SITE_URL + reverse("accounts:password_reset"),
        })
    _email_after_commit(subject=subject, body=body, to=email, what="existing-account notice")
    logger.info("signup for an existing account: notice emailed")


def _email_after_commit(*, subject: str, body: str, to: str, what: str) -> None:
    """
    Send once the transaction commits; an SMTP failure is logged, not raised: the work is committed, and a 500 would
    tell the user it was not. These emails carry a raw token (an invitation link), which the design keeps out of
    stored rows, so they are sent directly rather than through billing's outbox; the inviter sees the link on the
    members page and can pass it on.
    """
    import smtplib

    def send() -> None:
        try:
            send_mail(subject, body, settings.DEFAULT_FROM_EMAIL, [to])
        except (OSError, smtplib.SMTPException) as error:
            logger.error("%s email not sent (SMTP): %r", what, error)

    transaction.on_commit(send)


@transaction.atomic
def team_create(*, name: str, billing_email: str, owner: User) -> Team:
    team = Team(name=name, billing_email=billing_email)
    team.full_clean()
    team.save()
    Membership.objects.create(user=owner, team=team, role=Membership.Role.OWNER)
    for hook in list(SIGNUP_HOOKS):
        hook(team=team, user=owner)
    return team


def team_may_add_seat(*, team: Team) -> bool:
    """May this team add one more member? Billing supplies the plan's seat count (selectors.SEAT_LIMIT_PROVIDER)."""
    limit = selectors.team_seat_limit(team=team)
    if limit is None:
        return True
    # A pending invitation holds a seat until it is accepted, cancelled or expired.
    valid_since = timezone.now() - timedelta(seconds=settings.INVITATION_MAX_AGE_SECONDS)
    held = team.invitations.filter(status=Invitation.Status.PENDING, created__gt=valid_since).count()
    return team.memberships.count() + held < limit


def _require_manager(*, team: Team, user: User) -> Membership:
    membership = Membership.objects.filter(team=team, user=user).first()
    if membership is None:
        raise NotFoundError("not_found", _("Team not found."))
    if not membership.can_manage:
        raise PermissionDeniedError("forbidden", _("Only the team's owner or an admin can do this."))
    return membership


def _hash_token(token: str) -> str:
    return hashlib.sha256(token.encode()).hexdigest()


@transaction.atomic
def invitation_create(*, team: Team, email: str, role: str, invited_by: User) -> tuple[Invitation, str]:
    """
    Invite an email address to the team. Returns the invitation and the accept URL (the token is not stored).

    Inviting an address that already has a pending invitation replaces it: the old link stops working and a new
    one is sent. That is how a lost or expired link is re-sent, and an expired invitation never blocks a new one.
    """
    _require_manager(team=team, user=invited_by)
    email = email.strip().lower()
    if role not in (Membership.Role.ADMIN, Membership.Role.MEMBER):
        raise ApplicationError(
            "invalid_role", _("Invite as admin or member; ownership is not transferable by invite.")
        )
    # Lock the team row (lock order: team, then invitations) so that two invitations sent at once cannot both take
    # the last free seat.
    Team.objects.select_for_update().filter(pk=team.pk).first()
    if team.memberships.filter(user__email__iexact=email).exists():
        raise ApplicationError("already_member", _("This person is already a member of the team."))
    team.invitations.filter(email=email, status=Invitation.Status.PENDING).update(status=Invitation.Status.REVOKED)
    if not team_may_add_seat(team=team):
        raise ApplicationError(
            "seat_limit", _("Your plan has no free seat. Upgrade to add more members."), http_status=402
        )
    token = secrets.token_urlsafe(32)
    try:
        with transaction.atomic():
            invitation = Invitation.objects.create(
                team=team, email=email, role=role, token_hash=_hash_token(token), invited_by=invited_by
            )
    except IntegrityError as exc:
        raise ApplicationError("already_invited", _("This address already has a pending invitation.")) from exc
    accept_url = settings.SITE_URL + reverse("accounts:invitation_accept", args=[token])
    # The invitee's language is unknown; the inviter's is the best guess (they usually share one).
    with translation.override(invited_by.language):
        subject = _("You are invited to %(team)s") % {"team": team.name}
        body = render_to_string(
            "accounts/email/invitation.txt", {"team": team, "invited_by": invited_by, "accept_url": accept_url}
        )
    _email_after_commit(subject=subject, body=body, to=email, what="invitation")
    logger.info("invitation created", extra={"team_id": team.pk, "invitation_id": invitation.pk})
    return invitation, accept_url


@transaction.atomic
def invitation_accept(*, token: str, user: User) -> Membership:
    # Lock order, here and in invitation_create: the team row, then its invitations. The team lock also makes the
    # seat check below exact when two invitees accept at once.
    team_id = Invitation.objects.filter(token_hash=_hash_token(token)).values_list("team_id", flat=True).first()
    if team_id is not None:
        Team.objects.select_for_update().filter(pk=team_id).first()
    invitation = (
        Invitation.objects.select_for_update().filter(token_hash=_hash_token(token)).select_related("team").first()
    )
    if invitation is None or invitation.status != Invitation.Status.PENDING:
        raise NotFoundError("invitation_invalid", _("This invitation link is invalid or was already used."))
    if invitation.is_expired:
        raise ApplicationError("invitation_expired", _("This invitation has expired. Ask for a new one."))
    if invitation.email != user.email.lower():
        raise PermissionDeniedError(
            "invitation_other_email", _("This invitation was sent to another email address.")
        )
    already_member = Membership.objects.filter(user=user, team=invitation.team).first()
    if already_member is None:
        # The pending invitation held a seat; the plan may have shrunk since it was sent.
        limit = selectors.team_seat_limit(team=invitation.team)
        if limit is not None and invitation.team.memberships.count() >= limit:
            raise ApplicationError(
                "seat_limit", _("This team has no free seat left. Ask its owner to upgrade the plan."),
                http_status=402,
            )
    membership = already_member or Membership.objects.create(
        user=user, team=invitation.team, role=invitation.role
    )
    invitation.status = Invitation.Status.ACCEPTED
    invitation.accepted_at = timezone.now()
    invitation.save(update_fields=["status", "accepted_at"])
    logger.info("invitation accepted", extra={"team_id": invitation.team_id, "invitation_id": invitation.pk,
                                              "user_id": user.pk})
    return membership


@transaction.atomic
def invitation_revoke(*, team: Team, invitation_id: int, revoked_by: User) -> Invitation:
    _require_manager(team=team, user=revoked_by)
    invitation = team.invitations.select_for_update().filter(pk=invitation_id).first()
    if invitation is None:
        raise NotFoundError("not_found", _("Invitation not found."))
    if invitation.status == Invitation.Status.PENDING:
        invitation.status = Invitation.Status.REVOKED
        invitation.save(update_fields=["status"])
    return invitation


@transaction.atomic
def membership_remove(*, team: Team, user_id: int, removed_by: User) -> None:
    _require_manager(team=team, user=removed_by)
    membership = Membership.objects.filter(team=team, user_id=user_id).first()
    if membership is None:
        raise NotFoundError("not_found", _("Member not found."))
    if membership.role == Membership.Role.OWNER:
        raise ApplicationError("owner_required", _("The team's owner cannot be removed."))
    membership.delete()
    # The member's keys stop at once (authentication also checks live membership, so a missed revoke fails closed).
    revoked = _api_keys_revoke_of_member(team=team, user_id=user_id)
    logger.info("member removed", extra={"team_id": team.pk, "user_id": user_id, "removed_by": removed_by.pk,
                                         "api_keys_revoked": revoked})


@transaction.atomic
def membership_role_change(*, team: Team, user_id: int, role: str, changed_by: User) -> Membership:
    """
    Change a member's role (owner/admin only; ownership is not transferred here). A member who loses the role that
    may mint keys loses their keys too: a key never outlives its maker's power to make it.
    """
    _require_manager(team=team, user=changed_by)
    if role not in (Membership.Role.ADMIN, Membership.Role.MEMBER):
        raise ApplicationError("invalid_role", _("Choose admin or member; ownership is not transferable here."))
    membership = Membership.objects.select_for_update().filter(team=team, user_id=user_id).first()
    if membership is None:
        raise NotFoundError("not_found", _("Member not found."))
    if membership.role == Membership.Role.OWNER:
        raise ApplicationError("owner_required", _("The team's owner keeps the owner role."))
    membership.role = role
    membership.full_clean()
    membership.save(update_fields=["role"])
    revoked = 0 if membership.can_manage else _api_keys_revoke_of_member(team=team, user_id=user_id)
    logger.info("member role changed", extra={"team_id": team.pk, "user_id": user_id, "role": role,
                                              "changed_by": changed_by.pk, "api_keys_revoked": revoked})
    return membership


@transaction.atomic
def user_deactivate(*, user: User, deactivated_by: User) -> User:
    """Staff deactivate an account: it can no longer log in, and every API key it made stops at once."""
    if not deactivated_by.is_staff:
        raise PermissionDeniedError("forbidden", _("Only staff can deactivate accounts."))
    if user.is_active:
        user.is_active = False
        user.save(update_fields=["is_active"])
    revoked = APIKey.objects.filter(created_by=user, revoked_at__isnull=True).update(revoked_at=timezone.now())
    logger.info("user deactivated", extra={"user_id": user.pk, "staff_user_id": deactivated_by.pk,
                                           "api_keys_revoked": revoked})
    return user


def _api_keys_revoke_of_member(*, team: Team, user_id: int) -> int:
    return APIKey.objects.filter(team=team, created_by_id=user_id, revoked_at__isnull=True).update(
        revoked_at=timezone.now()
    )


def membership_keys_sync(*, team: Team, user_id: int, changed_by: User) -> int:
    """
    After staff edited or deleted a membership in the back office: revoke the person's keys for the team unless they
    are still an owner or admin of it. Returns how many keys were revoked.
    """
    still_manager = Membership.objects.filter(
        team=team, user_id=user_id, role__in=[Membership.Role.OWNER, Membership.Role.ADMIN]
    ).exists()
    revoked = 0 if still_manager else _api_keys_revoke_of_member(team=team, user_id=user_id)
    if revoked:
        logger.info("api keys revoked after a membership change", extra={
            "team_id": team.pk, "user_id": user_id, "staff_user_id": changed_by.pk, "api_keys_revoked": revoked})
    return revoked


# --- API keys ---------------------------------------------------------------------------------------------------


def api_key_hash(raw_key: str) -> str:
    return hmac.new(settings.API_KEY_HMAC_SECRET.encode(), raw_key.encode(), hashlib.sha256).hexdigest()


@dataclass(frozen=True)
class CreatedAPIKey:
    api_key: APIKey
    raw_key: str  # shown to the user exactly once, never stored


def api_key_create(
    *, team: Team, name: str, created_by: User, expires_at: datetime | None = None,
    scope: str = APIKey.Scope.USAGE,
) -> CreatedAPIKey:
    """
    Mint a key for the team, bound to its creator (an owner or admin) and to one scope (default: the narrowest,
    `usage`). Callers make sure a person is asking through a session: a key never mints keys
    (accounts.api.views refuses key-authenticated requests before calling this).
    """
    _require_manager(team=team, user=created_by)
    if scope not in APIKey.Scope.values:
        raise ApplicationError("invalid_scope", _("Choose a scope: usage, read or full."))
    if expires_at is not None and expires_at <= timezone.now():
        raise ApplicationError("invalid_expiry", _("The expiry date must be in the future."))
    prefix = secrets.token_hex(API_KEY_PREFIX_BYTES)
    raw_key = f"sk_{prefix}.{secrets.token_urlsafe(API_KEY_SECRET_BYTES)}"
    api_key = APIKey(team=team, name=name, prefix=prefix, hashed_key=api_key_hash(raw_key), created_by=created_by,
                     expires_at=expires_at, scope=scope)
    api_key.full_clean()
    api_key.save()
    logger.info("api key created", extra={"team_id": team.pk, "api_key_id": api_key.pk, "prefix": prefix,
                                          "scope": scope, "user_id": created_by.pk})
    return CreatedAPIKey(api_key=api_key, raw_key=raw_key)


def api_key_revoke(*, api_key: APIKey, revoked_by: User) -> APIKey:
    _require_manager(team=api_key.team, user=revoked_by)
    if api_key.revoked_at is None:
        api_key.revoked_at = timezone.now()
        api_key.save(update_fields=["revoked_at"])
        logger.info("api key revoked", extra={"team_id": api_key.team_id, "api_key_id": api_key.pk})
    return api_key


def api_key_revoke_by_staff(*, api_key: APIKey, staff_user: User) -> APIKey:
    """Back-office revocation (a leaked key reported to support): no team role needed, staff only."""
    if not staff_user.is_staff:
        raise PermissionDeniedError("forbidden", _("Only staff can revoke keys from the back office."))
    if api_key.revoked_at is None:
        api_key.revoked_at = timezone.now()
        api_key.save(update_fields=["revoked_at"])
        logger.info("api key revoked by staff", extra={"team_id": api_key.team_id, "api_key_id": api_key.pk,
                                                       "staff_user_id": staff_user.pk})
    return api_key


def api_key_touch(*, api_key: APIKey) -> None:
    """Record use, cheaply: one conditional UPDATE at most once per granularity window per key."""
    now = timezone.now()
    if api_key.last_used_at and now - api_key.last_used_at < API_KEY_LAST_USED_GRANULARITY:
        return
    APIKey.objects.filter(pk=api_key.pk).exclude(last_used_at__gt=now - API_KEY_LAST_USED_GRANULARITY).update(
        last_used_at=now
    )
    api_key.last_used_at = now


# --- Login lockouts (django-axes) ------------------------------------------------------------------------------


def login_lockout_record(*, username: str, ip_address: str | None, path: str) -> None:
    """
    Audit a login lockout. Logged with the ids involved (the user id when the address has an account; the attempted
    address itself is not logged, so a mistyped password pasted into the email field never lands in logs), then
    handed to LOGIN_LOCKOUT_HOOKS: billing writes it into its audit trail (accounts never imports billing).
    """
    user_id = User.objects.filter(email__iexact=(username or "").strip()).values_list("pk", flat=True).first()
    logger.warning("login locked out", extra={"user_id": user_id, "ip_address": ip_address, "path": path})
    for hook in list(LOGIN_LOCKOUT_HOOKS):
        hook(user_id=user_id, ip_address=ip_address, path=path)


# --- Staff second factor (django-otp) ---------------------------------------------------------------------------


@transaction.atomic
def staff_totp_enrolment_start(*, user: User) -> TOTPDevice:
    """
    A new, unconfirmed TOTP device for the user; any earlier unconfirmed one is dropped (its secret was shown once
    and is never shown again). It protects nothing until confirmed with a code (staff_totp_enrolment_confirm).
    """
    TOTPDevice.objects.filter(user=user, confirmed=False).delete()
    return TOTPDevice.objects.create(user=user, name="Authenticator app", confirmed=False)


@dataclass(frozen=True)
class ConfirmedTOTP:
    device: TOTPDevice
    recovery_codes: list[str]  # shown to the person exactly once; django-otp stores them for matching


@transaction.atomic
def staff_totp_enrolment_confirm(*, user: User, device_id: int, token: str) -> ConfirmedTOTP:
    """Confirm the pending device with a code from the app; it replaces any earlier device and recovery codes."""
    device = TOTPDevice.objects.select_for_update().filter(user=user, pk=device_id, confirmed=False).first()
    if device is None:
        raise NotFoundError("otp_enrolment_expired", _("This enrolment has expired. Start again."))
    if not device.verify_token((token or "").strip().replace(" ", "")):
        raise ApplicationError("otp_invalid", _("That code is not valid. Check the time on your phone and try again."))
    TOTPDevice.objects.filter(user=user).exclude(pk=device.pk).delete()
    device.confirmed = True
    device.save(update_fields=["confirmed"])
    recovery_codes = _staff_recovery_codes_replace(user=user)
    logger.info("staff totp enrolled", extra={"user_id": user.pk, "otp_device_id": device.pk})
    return ConfirmedTOTP(device=device, recovery_codes=recovery_codes)


def _staff_recovery_codes_replace(*, user: User) -> list[str]:
    StaticDevice.objects.filter(user=user).delete()
    static = StaticDevice.objects.create(user=user, name="Recovery codes", confirmed=True)
    codes = [StaticToken.random_token() for _ in range(settings.STAFF_OTP_RECOVERY_CODES)]
    StaticToken.objects.bulk_create([StaticToken(device=static, token=code) for code in codes])
    return codes


@transaction.atomic
def staff_totp_demo_device(*, user: User) -> str:
    """
    Development only (`make run`): give a demo staff user a confirmed TOTP device and return its base32 secret, so
    people and scripts can log in. Refused in production, where a secret is never printed.
    """
    if settings.IS_PRODUCTION:
        raise ApplicationError("forbidden", "Demo TOTP devices exist only with DJANGO_DEBUG=true.", http_status=403)
    device = TOTPDevice.objects.filter(user=user, confirmed=True, name="Demo authenticator").first()
    if device is None:
        device = TOTPDevice.objects.create(user=user, name="Demo authenticator", confirmed=True)
    return base64.b32encode(device.bin_key).decode()
