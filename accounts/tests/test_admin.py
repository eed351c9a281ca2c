"""The back office opens every accounts page (changelist, search, add, change) and never shows a key's hash."""
import pytest
from django.urls import reverse

from accounts import services
from accounts.models import APIKey, Invitation, Membership, Team, User

from .factories import MembershipFactory, UserFactory, make_team_with_owner

pytestmark = pytest.mark.django_db


@pytest.fixture
def staff_client(client):
    admin = User.objects.create_superuser(email="root@example.com", password="x-strong-password-1")
    client.force_login(admin)
    return client


@pytest.fixture
def accounts_data(seat_limit):
    seat_limit(10)
    team, owner = make_team_with_owner(name="Findable Corp")
    MembershipFactory(team=team, role="admin")
    invitation, _url = services.invitation_create(team=team, email="invitee@example.com", role="member",
                                                  invited_by=owner)
    created = services.api_key_create(team=team, name="deploy bot", created_by=owner)
    return {"team": team, "owner": owner, "invitation": invitation, "key": created.api_key, "raw_key": created.raw_key}


@pytest.mark.parametrize(
    ("model", "search", "addable"),
    [(User, "root@", True), (Team, "Findable", True), (Membership, "Findable", True),
     (Invitation, "invitee", False), (APIKey, "deploy", False)],
)
def test_admin_pages_open(staff_client, accounts_data, model, search, addable):
    opts = model._meta
    changelist = reverse(f"admin:{opts.app_label}_{opts.model_name}_changelist")
    response = staff_client.get(changelist)
    assert response.status_code == 200
    assert response.context["cl"].result_count >= 1

    found = staff_client.get(changelist, {"q": search})
    assert found.status_code == 200 and found.context["cl"].result_count >= 1
    missing = staff_client.get(changelist, {"q": "no-such-thing-zz"})
    assert missing.context["cl"].result_count == 0

    add = staff_client.get(reverse(f"admin:{opts.app_label}_{opts.model_name}_add"))
    # Invitations and API keys carry a token only their recipient may see: staff cannot create them.
    assert add.status_code == (200 if addable else 403)

    obj = model.objects.first()
    change = staff_client.get(reverse(f"admin:{opts.app_label}_{opts.model_name}_change", args=[obj.pk]))
    assert change.status_code == 200


def test_team_change_page_shows_memberships_inline(staff_client, accounts_data):
    team = accounts_data["team"]
    page = staff_client.get(reverse("admin:accounts_team_change", args=[team.pk]))
    assert page.status_code == 200
    assert "memberships-TOTAL_FORMS" in page.content.decode()
    assert accounts_data["owner"].email in page.content.decode()


def test_api_key_pages_never_show_the_hash_or_secret(staff_client, accounts_data):
    key = accounts_data["key"]
    pages = [
        staff_client.get(reverse("admin:accounts_apikey_changelist")),
        staff_client.get(reverse("admin:accounts_apikey_change", args=[key.pk])),
        staff_client.get(reverse("admin:accounts_team_change", args=[accounts_data["team"].pk])),
    ]
    secret = accounts_data["raw_key"].split(".", 1)[1]
    for page in pages:
        html = page.content.decode()
        assert key.hashed_key not in html
        assert secret not in html
    assert key.prefix in pages[0].content.decode()


def test_invitation_page_never_shows_the_token_hash(staff_client, accounts_data):
    invitation = accounts_data["invitation"]
    html = staff_client.get(reverse("admin:accounts_invitation_change", args=[invitation.pk])).content.decode()
    assert invitation.token_hash not in html


def test_staff_revoke_action_revokes_and_the_key_stops_working(staff_client, accounts_data):
    key = accounts_data["key"]
    response = staff_client.post(
        reverse("admin:accounts_apikey_changelist"),
        {"action": "revoke_selected", "_selected_action": [key.pk]},
    )
    assert response.status_code == 302
    key.refresh_from_db()
    assert key.revoked_at is not None
    from rest_framework.test import APIClient

    program = APIClient()
    program.credentials(HTTP_AUTHORIZATION=f"Bearer {accounts_data['raw_key']}")
    assert program.get(reverse("api:me")).status_code == 401


def test_admin_creates_a_user_with_a_lower_case_email(staff_client):
    response = staff_client.post(
        reverse("admin:accounts_user_add"),
        {"email": "New.Staff@Example.com", "usable_password": "true",
         "password1": "a-long-enough-passphrase", "password2": "a-long-enough-passphrase"},
    )
    assert response.status_code == 302, response.content.decode()[:2000]
    user = User.objects.get(email="new.staff@example.com")
    assert user.check_password("a-long-enough-passphrase")


def test_non_staff_cannot_open_the_admin(client):
    client.force_login(UserFactory())
    response = client.get(reverse("admin:accounts_apikey_changelist"))
    assert response.status_code == 302 and "/admin/login/" in response["Location"]
