import pytest
from django.core import mail
from django.urls import reverse

from accounts import services
from accounts.models import Invitation, Membership, Team, User
from billing_site.errors import ApplicationError, PermissionDeniedError

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


def test_duplicate_signup_email_is_a_form_error_and_writes_nothing(client):
    UserFactory(email="taken@example.com")
    before = (User.objects.count(), Team.objects.count(), Membership.objects.count())
    response = client.post(reverse("accounts:signup"), {"email": "TAKEN@example.com", "password": DEFAULT_PASSWORD})
    assert response.status_code == 200
    assert "An account with this email already exists." in response.content.decode()
    assert (User.objects.count(), Team.objects.count(), Membership.objects.count()) == before


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


def test_invitation_round_trip(client, settings, django_capture_on_commit_callbacks):
    settings.INVITATION_MAX_AGE_SECONDS = 3600
    team, owner = make_team_with_owner()
    # Free plan has one seat: lift it for this test through the hook.
    from accounts import selectors

    invitee = UserFactory(email="new@example.com")
    original = selectors.team_seat_limit
    selectors.team_seat_limit = lambda team: 5
    try:
        with django_capture_on_commit_callbacks(execute=True):
            invitation, url = services.invitation_create(
                team=team, email="NEW@example.com", role="member", invited_by=owner
            )
    finally:
        selectors.team_seat_limit = original
    assert invitation.email == "new@example.com"
    assert len(mail.outbox) == 1 and url in mail.outbox[0].body
    client.force_login(invitee)
    response = client.post(url.split("testserver", 1)[-1].replace(settings.SITE_URL, ""))
    assert response.status_code == 302
    assert Membership.objects.get(team=team, user=invitee).role == "member"
    invitation.refresh_from_db()
    assert invitation.status == Invitation.Status.ACCEPTED
    # The link works once.
    response = client.post(url.replace(settings.SITE_URL, ""))
    assert response.status_code == 404


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
