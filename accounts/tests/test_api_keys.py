from datetime import timedelta

import pytest
from django.urls import reverse
from django.utils import timezone
from rest_framework.test import APIClient

from accounts import services
from accounts.models import APIKey

from .factories import MembershipFactory, make_team_with_owner

pytestmark = pytest.mark.django_db


@pytest.fixture
def owner_client():
    team, owner = make_team_with_owner()
    client = APIClient()
    client.force_login(owner)
    return client, team, owner


def create_key(client, name="ci"):
    response = client.post(reverse("api:api-keys"), {"name": name}, format="json")
    assert response.status_code == 201, response.content
    return response.json()


def test_secret_is_shown_once_and_only_a_hash_is_stored(owner_client):
    client, team, owner = owner_client
    body = create_key(client)
    raw = body["key"]
    assert raw.startswith("sk_") and len(raw) > 40
    stored = APIKey.objects.get(pk=body["id"])
    assert raw not in {stored.hashed_key, stored.prefix} and len(stored.hashed_key) == 64
    assert stored.prefix in raw
    listed = client.get(reverse("api:api-keys")).json()["results"]
    assert [k["id"] for k in listed] == [body["id"]]
    assert "key" not in listed[0] and "hashed_key" not in listed[0]
    detail = client.get(reverse("api:api-key-detail", args=[body["id"]])).json()
    assert "key" not in detail


def test_key_authenticates_then_revoked_key_gets_401(owner_client):
    client, team, owner = owner_client
    body = create_key(client)
    program = APIClient()
    program.credentials(HTTP_AUTHORIZATION=f"Bearer {body['key']}")
    me = program.get(reverse("api:me"))
    assert me.status_code == 200
    assert me.json()["current_team_id"] == team.id and me.json()["role"] is None
    assert APIKey.objects.get(pk=body["id"]).last_used_at is not None

    assert client.delete(reverse("api:api-key-detail", args=[body["id"]])).json()["revoked_at"]
    denied = program.get(reverse("api:me"))
    assert denied.status_code == 401
    assert denied.json() == {"error": {"code": "invalid_api_key", "message": denied.json()["error"]["message"]}}


def test_unknown_and_tampered_keys_get_the_same_401(owner_client):
    client, team, owner = owner_client
    body = create_key(client)
    answers = []
    for key in [body["key"][:-2] + "xx", "sk_000000000000.nothing", "garbage"]:
        program = APIClient()
        program.credentials(HTTP_AUTHORIZATION=f"Bearer {key}")
        response = program.get(reverse("api:me"))
        answers.append((response.status_code, response.json()["error"]["message"]))
    assert len(set(answers)) == 1 and answers[0][0] == 401


def test_expired_key_is_rejected(owner_client):
    client, team, owner = owner_client
    body = create_key(client)
    APIKey.objects.filter(pk=body["id"]).update(expires_at=timezone.now() - timedelta(seconds=1))
    program = APIClient()
    program.credentials(HTTP_AUTHORIZATION=f"Bearer {body['key']}")
    assert program.get(reverse("api:me")).status_code == 401


def test_another_teams_key_id_answers_404(owner_client):
    client, team, owner = owner_client
    other_client = APIClient()
    other_team, other_owner = make_team_with_owner()
    other_client.force_login(other_owner)
    other_key = create_key(other_client)
    assert client.get(reverse("api:api-key-detail", args=[other_key["id"]])).status_code == 404
    response = client.delete(reverse("api:api-key-detail", args=[other_key["id"]]))
    assert response.status_code == 404
    assert response.json()["error"]["code"] == "not_found"
    assert APIKey.objects.get(pk=other_key["id"]).revoked_at is None


def test_members_cannot_create_keys(owner_client):
    client, team, owner = owner_client
    member = MembershipFactory(team=team, role="member").user
    member_client = APIClient()
    member_client.force_login(member)
    response = member_client.post(reverse("api:api-keys"), {"name": "x"}, format="json")
    assert response.status_code == 403
    assert response.json()["error"]["code"] == "forbidden"
    assert APIKey.objects.count() == 0


def test_validation_errors_use_the_error_envelope(owner_client):
    client, team, owner = owner_client
    response = client.post(reverse("api:api-keys"), {}, format="json")
    assert response.status_code == 400
    assert response.json()["error"]["code"] == "invalid"
    assert "name" in response.json()["error"]["message"]


def test_unauthenticated_api_call_uses_the_error_envelope():
    response = APIClient().get(reverse("api:me"))
    assert response.status_code in (401, 403)
    assert set(response.json()["error"]) == {"code", "message"}


def test_api_keys_page_shows_secret_once(client):
    team, owner = make_team_with_owner()
    client.force_login(owner)
    response = client.post(reverse("accounts:api_keys"), {"name": "page key"})
    # Post/Redirect/Get: reloading the page that shows the secret never creates a second key.
    assert response.status_code == 302 and response["Location"] == reverse("accounts:api_keys")
    key = APIKey.objects.get()
    shown = client.get(reverse("accounts:api_keys"))
    page = shown.content.decode()
    assert f"sk_{key.prefix}." in page and shown["Cache-Control"] == "no-store"
    raw = page.split('id="new-key"', 1)[1].split('value="', 1)[1].split('"', 1)[0]
    assert services.api_key_hash(raw) == key.hashed_key
    again = client.get(reverse("accounts:api_keys")).content.decode()
    assert f"sk_{key.prefix}." not in again
    assert APIKey.objects.count() == 1


def test_members_cannot_create_keys_from_the_page(client):
    team, owner = make_team_with_owner()
    member = MembershipFactory(team=team, role="member").user
    client.force_login(member)
    response = client.post(reverse("accounts:api_keys"), {"name": "nope"})
    assert response.status_code == 200
    assert "Only the team&#x27;s owner or an admin can do this." in response.content.decode()
    assert APIKey.objects.count() == 0


def test_x_team_id_must_name_one_of_the_users_teams(owner_client):
    client, team, owner = owner_client
    other_team, _ = make_team_with_owner()
    assert client.get(reverse("api:me"), HTTP_X_TEAM_ID=str(team.id)).json()["current_team_id"] == team.id
    for value in (str(other_team.id), "not-a-number", "999999"):
        response = client.get(reverse("api:api-keys"), HTTP_X_TEAM_ID=value)
        assert response.status_code == 404, value
        assert response.json()["error"]["code"] == "not_found"


def test_bearer_scheme_is_case_insensitive_and_blank_headers_are_harmless(owner_client):
    client, team, owner = owner_client
    body = create_key(client)
    program = APIClient()
    program.credentials(HTTP_AUTHORIZATION=f"bearer {body['key']}")
    assert program.get(reverse("api:me")).status_code == 200
    blank = APIClient()
    blank.credentials(HTTP_AUTHORIZATION="   ")
    assert blank.get(reverse("api:me")).status_code == 401
