from datetime import timedelta

import pytest
from django.core import mail
from django.urls import reverse
from django.utils import timezone

from accounts import services
from accounts.models import Invitation, Membership, Team, User
from billing_site.errors import ApplicationError, NotFoundError, PermissionDeniedError

from .factories import DEFAULT_PASSWORD, MembershipFactory, UserFactory, make_team_with_owner

pytestmark = pytest.mark.django_db


def test_signup_page_creates_user_team_and_owner_membership(client):
    response = client.post(
        reverse("accounts:signup"),
        {"email": "Ana@Example.com", "password": DEFAULT_PASSWORD, "team_name": "Ana Labs"},
    )
    assert response.status_code == 302
    user = User.objects.get(email="ana@example.com")
    membership = Membership.objects.get(user=user)
    assert membership.role == Membership.Role.OWNER
    assert membership.team.name == "Ana Labs"
    assert membership.team.billing_email == "ana@example.com"
    # Logged in straight away.
    assert client.get(reverse("accounts:members")).status_code == 200


def test_duplicate_signup_answers_like_a_new_signup_emails_the_owner_and_writes_nothing(
    client, django_capture_on_commit_callbacks
):
    # Issue 10: the page used to say "An account with this email already exists." (account enumeration).
    UserFactory(email="taken@example.com")
    before = (User.objects.count(), Team.objects.count(), Membership.objects.count())
    new = client.post(reverse("accounts:signup"), {"email": "fresh@example.com", "password": DEFAULT_PASSWORD})
    client.logout()
    mail.outbox.clear()
    with_new = (User.objects.count(), Team.objects.count(), Membership.objects.count())
    assert with_new == tuple(n + 1 for n in before)
    with django_capture_on_commit_callbacks(execute=True):
        taken = client.post(reverse("accounts:signup"), {"email": "TAKEN@example.com", "password": DEFAULT_PASSWORD})
    assert (taken.status_code, taken["Location"]) == (new.status_code, new["Location"]) == (302, "/billing/")
    assert "already exists" not in taken.content.decode()
    assert (User.objects.count(), Team.objects.count(), Membership.objects.count()) == with_new
    assert [m.to for m in mail.outbox] == [["taken@example.com"]]
    assert "already has an account" in mail.outbox[0].body and "/accounts/password-reset/" in mail.outbox[0].body
    # The visitor is not signed into the existing account.
    assert client.get(reverse("accounts:members")).status_code == 302


def test_signup_is_atomic_when_team_creation_fails(monkeypatch):
    def explode(**kwargs):
        raise RuntimeError("team hook failed")

    monkeypatch.setattr(services, "SIGNUP_HOOKS", [explode])
    with pytest.raises(RuntimeError):
        services.user_signup(email="atomic@example.com", password=DEFAULT_PASSWORD)
    assert not User.objects.filter(email="atomic@example.com").exists()
    assert Team.objects.count() == 0


def test_weak_password_is_rejected(client):
    response = client.post(reverse("accounts:signup"), {"email": "weak@example.com", "password": "123"})
    assert response.status_code == 200
    assert not User.objects.filter(email="weak@example.com").exists()


def test_login_and_logout(client):
    UserFactory(email="login@example.com")
    response = client.post(reverse("accounts:login"), {"username": "login@example.com", "password": DEFAULT_PASSWORD})
    assert response.status_code == 302
    assert client.session.get("_auth_user_id")
    client.post(reverse("accounts:logout"))
    assert not client.session.get("_auth_user_id")


def test_wrong_password_does_not_log_in(client):
    UserFactory(email="login@example.com")
    response = client.post(reverse("accounts:login"), {"username": "login@example.com", "password": "nope"})
    assert response.status_code == 200
    assert not client.session.get("_auth_user_id")


def test_password_reset_sends_a_working_link(client):
    UserFactory(email="reset@example.com")
    client.post(reverse("accounts:password_reset"), {"email": "reset@example.com"})
    assert len(mail.outbox) == 1
    link = next(line for line in mail.outbox[0].body.splitlines() if "/accounts/reset/" in line)
    path = link.split("testserver", 1)[1]
    response = client.get(path, follow=True)
    assert response.status_code == 200
    assert b"new_password1" in response.content


def test_invitation_round_trip(client, settings, seat_limit, django_capture_on_commit_callbacks):
    seat_limit(5)
    team, owner = make_team_with_owner()
    invitee = UserFactory(email="new@example.com")
    with django_capture_on_commit_callbacks(execute=True):
        invitation, url = services.invitation_create(
            team=team, email="NEW@example.com", role="member", invited_by=owner
        )
    assert invitation.email == "new@example.com"
    assert len(mail.outbox) == 1 and url in mail.outbox[0].body and mail.outbox[0].to == ["new@example.com"]
    path = url.replace(settings.SITE_URL, "")
    client.force_login(invitee)
    response = client.post(path)
    assert response.status_code == 302
    assert Membership.objects.get(team=team, user=invitee).role == "member"
    invitation.refresh_from_db()
    assert invitation.status == Invitation.Status.ACCEPTED and invitation.accepted_at is not None
    # The link works once.
    response = client.post(path)
    assert response.status_code == 404
    assert Membership.objects.filter(team=team).count() == 2


def test_smtp_down_when_inviting_answers_with_the_link_not_a_500(client, seat_limit, monkeypatch,
                                                                  django_capture_on_commit_callbacks):
    import smtplib

    seat_limit(5)
    team, owner = make_team_with_owner()

    def smtp_down(*args, **kwargs):
        raise smtplib.SMTPServerDisconnected("connection unexpectedly closed")

    monkeypatch.setattr(services, "send_mail", smtp_down)
    client.force_login(owner)
    with django_capture_on_commit_callbacks(execute=True):
        response = client.post(reverse("accounts:members"), {"email": "late@example.com", "role": "member"})
    assert response.status_code == 302  # the invitation is committed: no 500
    assert Invitation.objects.filter(team=team, email="late@example.com").count() == 1
    page = client.get(reverse("accounts:members"))
    assert "/accounts/invitations/" in page.content.decode()  # the link to pass on by hand


def _invite(team, owner, email="guest@example.com", role="member"):
    invitation, url = services.invitation_create(team=team, email=email, role=role, invited_by=owner)
    return invitation, url.rsplit("/", 2)[-2]  # the token is the last path segment


def test_expired_invitation_is_refused_and_can_be_sent_again(settings, seat_limit):
    seat_limit(5)
    settings.INVITATION_MAX_AGE_SECONDS = 3600
    team, owner = make_team_with_owner()
    guest = UserFactory(email="guest@example.com")
    invitation, token = _invite(team, owner)
    Invitation.objects.filter(pk=invitation.pk).update(created=timezone.now() - timedelta(hours=2))
    with pytest.raises(ApplicationError) as error:
        services.invitation_accept(token=token, user=guest)
    assert error.value.code == "invitation_expired"
    assert not Membership.objects.filter(team=team, user=guest).exists()
    # An expired invitation no longer holds a seat, and inviting again replaces it.
    seat_limit(2)
    assert services.team_may_add_seat(team=team) is True
    fresh, fresh_token = _invite(team, owner)
    invitation.refresh_from_db()
    assert invitation.status == Invitation.Status.REVOKED and fresh.status == Invitation.Status.PENDING
    assert services.invitation_accept(token=fresh_token, user=guest).team == team
    with pytest.raises(ApplicationError):
        services.invitation_accept(token=token, user=guest)  # the replaced link stays dead


def test_invitation_for_another_email_is_refused(seat_limit):
    seat_limit(5)
    team, owner = make_team_with_owner()
    _invitation, token = _invite(team, owner, email="someone@example.com")
    intruder = UserFactory(email="intruder@example.com")
    with pytest.raises(PermissionDeniedError) as error:
        services.invitation_accept(token=token, user=intruder)
    assert error.value.code == "invitation_other_email"
    assert not Membership.objects.filter(team=team, user=intruder).exists()
    assert Invitation.objects.get().status == Invitation.Status.PENDING


def test_double_accept_creates_one_membership(seat_limit):
    seat_limit(5)
    team, owner = make_team_with_owner()
    guest = UserFactory(email="guest@example.com")
    _invitation, token = _invite(team, owner)
    services.invitation_accept(token=token, user=guest)
    with pytest.raises(NotFoundError) as error:
        services.invitation_accept(token=token, user=guest)
    assert error.value.code == "invitation_invalid"
    assert Membership.objects.filter(team=team, user=guest).count() == 1


def test_seat_limit_counts_pending_invitations_and_is_checked_again_on_accept(seat_limit):
    seat_limit(2)
    team, owner = make_team_with_owner()
    first, first_token = _invite(team, owner, email="one@example.com")
    assert services.team_may_add_seat(team=team) is False  # owner + one pending invitation = 2 seats
    with pytest.raises(ApplicationError) as error:
        _invite(team, owner, email="two@example.com")
    assert error.value.code == "seat_limit"
    assert Invitation.objects.filter(team=team).count() == 1
    # The plan shrank to one seat after the invitation went out: accepting is refused, nothing written.
    seat_limit(1)
    with pytest.raises(ApplicationError) as error:
        services.invitation_accept(token=first_token, user=UserFactory(email="one@example.com"))
    assert error.value.code == "seat_limit"
    assert team.memberships.count() == 1
    first.refresh_from_db()
    assert first.status == Invitation.Status.PENDING


def test_existing_member_and_owner_role_cannot_be_invited(seat_limit):
    seat_limit(5)
    team, owner = make_team_with_owner()
    with pytest.raises(ApplicationError) as error:
        _invite(team, owner, email=owner.email.upper())
    assert error.value.code == "already_member"
    with pytest.raises(ApplicationError) as error:
        _invite(team, owner, role="owner")
    assert error.value.code == "invalid_role"
    assert not Invitation.objects.exists()


def test_admin_may_invite_remove_members_and_revoke_invitations_but_not_remove_the_owner(seat_limit):
    seat_limit(10)
    team, owner = make_team_with_owner()
    admin = MembershipFactory(team=team, role="admin").user
    member = MembershipFactory(team=team, role="member").user
    invitation, _token = _invite(team, admin)
    services.invitation_revoke(team=team, invitation_id=invitation.pk, revoked_by=admin)
    invitation.refresh_from_db()
    assert invitation.status == Invitation.Status.REVOKED
    services.membership_remove(team=team, user_id=member.pk, removed_by=admin)
    assert not Membership.objects.filter(team=team, user=member).exists()
    with pytest.raises(ApplicationError) as error:
        services.membership_remove(team=team, user_id=owner.pk, removed_by=admin)
    assert error.value.code == "owner_required"


def test_member_may_not_remove_revoke_or_create_keys(seat_limit):
    seat_limit(10)
    team, owner = make_team_with_owner()
    member = MembershipFactory(team=team, role="member").user
    other = MembershipFactory(team=team, role="member").user
    invitation, _token = _invite(team, owner)
    for call in (
        lambda: services.membership_remove(team=team, user_id=other.pk, removed_by=member),
        lambda: services.invitation_revoke(team=team, invitation_id=invitation.pk, revoked_by=member),
        lambda: services.api_key_create(team=team, name="k", created_by=member),
    ):
        with pytest.raises(PermissionDeniedError):
            call()
    assert Membership.objects.filter(team=team).count() == 3
    invitation.refresh_from_db()
    assert invitation.status == Invitation.Status.PENDING


def test_outsider_acting_on_a_team_gets_not_found():
    team, owner = make_team_with_owner()
    outsider = UserFactory()
    with pytest.raises(NotFoundError):
        services.invitation_create(team=team, email="x@example.com", role="member", invited_by=outsider)


def test_invitation_page_for_a_visitor_offers_login_and_signup_that_come_back(client, seat_limit):
    seat_limit(5)
    team, owner = make_team_with_owner(name="Rocket Labs")
    _invitation, token = _invite(team, owner, email="visitor@example.com")
    path = reverse("accounts:invitation_accept", args=[token])
    page = client.get(path).content.decode()
    assert f"{reverse('accounts:login')}?next={path}" in page
    assert f"{reverse('accounts:signup')}?next={path}" in page
    response = client.post(f"{reverse('accounts:signup')}?next={path}",
                           {"email": "visitor@example.com", "password": DEFAULT_PASSWORD})
    assert response.status_code == 302 and response["Location"] == path
    assert client.post(path).status_code == 302
    assert Membership.objects.filter(team=team, user__email="visitor@example.com").exists()


def test_members_page_invites_and_cancels(client, seat_limit):
    seat_limit(5)
    team, owner = make_team_with_owner()
    client.force_login(owner)
    response = client.post(reverse("accounts:members"), {"email": "friend@example.com", "role": "admin"})
    assert response.status_code == 302
    page = client.get(reverse("accounts:members"))
    assert page["Cache-Control"] == "no-store" and "/accounts/invitations/" in page.content.decode()
    assert "/accounts/invitations/" not in client.get(reverse("accounts:members")).content.decode()  # shown once
    invitation = Invitation.objects.get(team=team)
    assert invitation.role == "admin" and "friend@example.com" in page.content.decode()
    response = client.post(reverse("accounts:invitation_revoke", args=[invitation.pk]))
    assert response.status_code == 302
    invitation.refresh_from_db()
    assert invitation.status == Invitation.Status.REVOKED
    other_team, other_owner = make_team_with_owner()
    foreign, _token = _invite(other_team, other_owner)
    assert client.post(reverse("accounts:invitation_revoke", args=[foreign.pk])).status_code == 404
    foreign.refresh_from_db()
    assert foreign.status == Invitation.Status.PENDING


def test_only_owner_or_admin_can_invite():
    team, owner = make_team_with_owner()
    member = MembershipFactory(team=team, role="member").user
    with pytest.raises(PermissionDeniedError):
        services.invitation_create(team=team, email="x@example.com", role="member", invited_by=member)


def test_free_plan_seat_limit_blocks_invitations():
    team, owner = make_team_with_owner()
    assert services.team_may_add_seat(team=team) is False  # free plan: 1 seat, the owner's
    with pytest.raises(ApplicationError) as error:
        services.invitation_create(team=team, email="x@example.com", role="member", invited_by=owner)
    assert error.value.code == "seat_limit"


def test_members_page_for_a_member_hides_management(client):
    team, owner = make_team_with_owner()
    member = MembershipFactory(team=team, role="member").user
    client.force_login(member)
    response = client.get(reverse("accounts:members"))
    assert response.status_code == 200
    assert "Send invitation" not in response.content.decode()
    response = client.post(reverse("accounts:member_remove", args=[owner.id]))
    assert Membership.objects.filter(team=team, user=owner).exists()


def test_switching_to_another_teams_id_is_404(client):
    team, owner = make_team_with_owner()
    other_team, _ = make_team_with_owner()
    client.force_login(owner)
    assert client.post(reverse("accounts:switch_team", args=[other_team.id])).status_code == 404
    assert client.post(reverse("accounts:switch_team", args=[team.id])).status_code == 302


def test_login_ignores_email_case(client):
    UserFactory(email="mixed@example.com")
    response = client.post(reverse("accounts:login"), {"username": "Mixed@Example.COM", "password": DEFAULT_PASSWORD})
    assert response.status_code == 302
    assert client.session.get("_auth_user_id")


def test_emails_are_unique_whatever_their_case():
    from django.db import IntegrityError, transaction

    UserFactory(email="case@example.com")
    with pytest.raises(IntegrityError), transaction.atomic():
        User.objects.bulk_create([User(email="CASE@example.com")])  # bypasses clean(): the database still says no


def test_next_parameter_never_redirects_off_site(client):
    response = client.post(f"{reverse('accounts:signup')}?next=https://evil.example/steal",
                           {"email": "safe@example.com", "password": DEFAULT_PASSWORD})
    assert response.status_code == 302 and response["Location"] == reverse("billing:overview")
    team = Membership.objects.get(user__email="safe@example.com").team
    response = client.post(reverse("accounts:switch_team", args=[team.id]), {"next": "//evil.example/"})
    assert response["Location"] == reverse("billing:overview")


def test_removed_from_the_chosen_team_falls_back_to_own_team(client, seat_limit):
    seat_limit(5)
    team, owner = make_team_with_owner()
    member_team, member = make_team_with_owner()
    MembershipFactory(team=team, user=member, role="member")
    client.force_login(member)
    client.post(reverse("accounts:switch_team", args=[team.id]))
    assert client.get(reverse("accounts:members")).context["membership"].team == team
    services.membership_remove(team=team, user_id=member.pk, removed_by=owner)
    response = client.get(reverse("accounts:members"))
    assert response.status_code == 200 and response.context["membership"].team == member_team


def test_switching_team_needs_post(client):
    team, owner = make_team_with_owner()
    client.force_login(owner)
    assert client.get(reverse("accounts:switch_team", args=[team.id])).status_code == 405
