"""Writes for users, teams, memberships, invitations and API keys."""
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


@transaction.atomic
def user_signup(*, email: str, password: str, team_name: str = "", language: str = "en") -> User:
    """Create a user, their personal team and the owner membership, all or nothing."""
    email = email.strip().lower()
    if User.objects.filter(email__iexact=email).exists():
        raise ApplicationError("email_taken", _("An account with this email already exists."))
    try:
        user = User.objects.create_user(email=email, password=password, language=language)
    except (IntegrityError, ValidationError) as exc:
        raise ApplicationError("email_taken", _("An account with this email already exists.")) from exc
    team = team_create(name=team_name or f"{email.split('@')[0]}'s team", billing_email=email, owner=user)
    logger.info("user signed up", extra={"user_id": user.pk, "team_id": team.pk})
    return user


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
    transaction.on_commit(lambda: send_mail(subject, body, settings.DEFAULT_FROM_EMAIL, [email]))
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
    logger.info("member removed", extra={"team_id": team.pk, "user_id": user_id, "removed_by": removed_by.pk})


# --- API keys ---------------------------------------------------------------------------------------------------


def api_key_hash(raw_key: str) -> str:
    return hmac.new(settings.API_KEY_HMAC_SECRET.encode(), raw_key.encode(), hashlib.sha256).hexdigest()


@dataclass(frozen=True)
class CreatedAPIKey:
    api_key: APIKey
    raw_key: str  # shown to the user exactly once, never stored


def api_key_create(
    *, team: Team, name: str, created_by: User, expires_at: datetime | None = None
) -> CreatedAPIKey:
    _require_manager(team=team, user=created_by)
    if expires_at is not None and expires_at <= timezone.now():
        raise ApplicationError("invalid_expiry", _("The expiry date must be in the future."))
    prefix = secrets.token_hex(API_KEY_PREFIX_BYTES)
    raw_key = f"sk_{prefix}.{secrets.token_urlsafe(API_KEY_SECRET_BYTES)}"
    api_key = APIKey(team=team, name=name, prefix=prefix, hashed_key=api_key_hash(raw_key), created_by=created_by,
                     expires_at=expires_at)
    api_key.full_clean()
    api_key.save()
    logger.info("api key created", extra={"team_id": team.pk, "api_key_id": api_key.pk, "prefix": prefix})
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
