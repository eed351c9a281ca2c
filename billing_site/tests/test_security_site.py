"""
Issue 10, site-wide: API keys bound to their maker and a scope, inputs that answered 500, login throttling, the
staff second factor, the Content-Security-Policy and secrets kept out of logs. It drives every app's API, so it lives
with the project rather than in accounts (whose code and tests import no other app).
"""
import json
import logging

import pytest
from django.apps import apps
from django.contrib.auth.models import Group, Permission
from django.test import override_settings
from django.urls import reverse
from django_otp.oath import TOTP
from django_otp.plugins.otp_static.models import StaticToken
from django_otp.plugins.otp_totp.models import TOTPDevice
from rest_framework.test import APIClient

from accounts import services
from accounts.models import APIKey, Membership
from billing_site.logging import JsonFormatter, redact_url_secrets

from accounts.tests.factories import DEFAULT_PASSWORD, MembershipFactory, UserFactory, make_team_with_owner

pytestmark = pytest.mark.django_db

# Every API endpoint a key could reach, with a body where it takes one: a key that must not act gets 401 on all.
API_CALLS = [
    ("get", "api:me", None), ("get", "api:api-keys", None), ("post", "api:api-keys", {"name": "minted"}),
    ("get", "api:billing-subscription", None), ("patch", "api:billing-subscription", {"lookup_key": "pro_monthly"}),
    ("delete", "api:billing-subscription", None), ("post", "api:billing-subscription-resume", {}),
    ("post", "api:billing-checkout-sessions", {"lookup_key": "pro_monthly", "quantity": 1}),
    ("post", "api:billing-portal-sessions", {}), ("get", "api:billing-invoices", None),
    ("get", "api:billing-payments", None), ("get", "api:usage", None),
    ("post", "api:usage-events", {"metric": "api_call", "quantity": 3}),
    ("get", "api:usage-spend-cap", None), ("put", "api:usage-spend-cap", {"amount_minor": 100, "currency": "usd"}),
    ("get", "api:credits", None), ("get", "api:demo-ping", None), ("get", "api:demo-metered-ping", None),
    ("post", "api:demo-premium", None),
]


def key_client(raw_key: str) -> APIClient:
    client = APIClient()
    client.credentials(HTTP_AUTHORIZATION=f"Bearer {raw_key}", HTTP_IDEMPOTENCY_KEY="idem-1")
    return client


def call(client, method, name, body):
    return getattr(client, method)(reverse(name), body, format="json") if body is not None else \
        getattr(client, method)(reverse(name))


def state():
    # Through the app registry: accounts (its tests included) never imports usage (billing_site/tests/test_import_graph).
    usage_events = apps.get_model("usage", "UsageEvent")
    return (APIKey.objects.count(), usage_events.objects.count(), Membership.objects.count())


def admin_with_full_key(team):
    admin = MembershipFactory(team=team, role=Membership.Role.ADMIN).user
    return admin, services.api_key_create(team=team, name="ci", created_by=admin, scope=APIKey.Scope.FULL)


def assert_refused_everywhere(raw_key: str):
    program = key_client(raw_key)
    before = state()
    for method, name, body in API_CALLS:
        response = call(program, method, name, body)
        assert response.status_code == 401, (method, name, response.status_code)
        assert response.json()["error"]["code"] == "invalid_api_key"
    assert state() == before


# --- Keys bound to their maker --------------------------------------------------------------------------------


def test_a_removed_members_key_is_revoked_and_refused_on_every_endpoint_writing_nothing():
    team, owner = make_team_with_owner()
    admin, created = admin_with_full_key(team)
    assert key_client(created.raw_key).get(reverse("api:billing-payments")).status_code == 200
    services.membership_remove(team=team, user_id=admin.pk, removed_by=owner)
    assert APIKey.objects.get(pk=created.api_key.pk).revoked_at is not None
    assert_refused_everywhere(created.raw_key)


def test_a_missed_revoke_still_fails_closed_on_live_membership():
    team, _owner = make_team_with_owner()
    admin, created = admin_with_full_key(team)
    Membership.objects.filter(team=team, user=admin).delete()  # removed behind the services' back
    assert APIKey.objects.get(pk=created.api_key.pk).revoked_at is None
    assert_refused_everywhere(created.raw_key)


def test_a_lowered_roles_key_is_revoked_and_refused():
    team, owner = make_team_with_owner()
    admin, created = admin_with_full_key(team)
    services.membership_role_change(team=team, user_id=admin.pk, role=Membership.Role.MEMBER, changed_by=owner)
    assert APIKey.objects.get(pk=created.api_key.pk).revoked_at is not None
    assert_refused_everywhere(created.raw_key)


def test_a_lowered_role_without_the_revoke_still_fails_closed():
    team, _owner = make_team_with_owner()
    admin, created = admin_with_full_key(team)
    Membership.objects.filter(team=team, user=admin).update(role=Membership.Role.MEMBER)
    assert_refused_everywhere(created.raw_key)


def test_a_deactivated_users_key_is_revoked_and_refused():
    team, _owner = make_team_with_owner()
    admin, created = admin_with_full_key(team)
    staff = UserFactory(is_staff=True)
    services.user_deactivate(user=admin, deactivated_by=staff)
    assert APIKey.objects.get(pk=created.api_key.pk).revoked_at is not None
    assert_refused_everywhere(created.raw_key)


def test_promoting_an_admin_keeps_their_keys_and_only_managers_change_roles():
    team, owner = make_team_with_owner()
    admin, created = admin_with_full_key(team)
    member = MembershipFactory(team=team).user
    with pytest.raises(services.PermissionDeniedError):
        services.membership_role_change(team=team, user_id=admin.pk, role="member", changed_by=member)
    services.membership_role_change(team=team, user_id=admin.pk, role="admin", changed_by=owner)
    assert key_client(created.raw_key).get(reverse("api:billing-payments")).status_code == 200


# --- Scopes ---------------------------------------------------------------------------------------------------


@pytest.fixture
def owner_session():
    team, owner = make_team_with_owner()
    client = APIClient()
    client.force_login(owner)
    return client, team, owner


def test_new_keys_default_to_the_usage_scope_in_the_api_and_on_the_page(owner_session, client):
    session, team, owner = owner_session
    body = session.post(reverse("api:api-keys"), {"name": "default"}, format="json").json()
    assert body["scope"] == "usage"
    client.force_login(owner)
    page = client.get(reverse("accounts:api_keys")).content.decode()
    assert 'value="usage" selected' in page and "New keys get the <strong>usage</strong> scope" in page
    assert client.post(reverse("accounts:api_keys"), {"name": "page"}).status_code == 302
    assert APIKey.objects.get(name="page").scope == "usage"


def test_a_usage_key_makes_metered_calls_and_events_but_cannot_read_cancel_or_mint(owner_session):
    session, team, owner = owner_session
    raw = session.post(reverse("api:api-keys"), {"name": "meter"}, format="json").json()["key"]
    program = key_client(raw)
    assert program.get(reverse("api:me")).json()["current_team_id"] == team.id
    assert program.post(reverse("api:usage-events"), {"metric": "api_call", "quantity": 2},
                        format="json").status_code == 201
    assert program.get(reverse("api:demo-metered-ping")).status_code == 200
    before = state()
    for method, name, body in [("delete", "api:billing-subscription", None),
                               ("post", "api:api-keys", {"name": "child"}),
                               ("get", "api:billing-payments", None), ("get", "api:api-keys", None),
                               ("post", "api:billing-checkout-sessions", {"lookup_key": "pro_monthly"})]:
        response = call(program, method, name, body)
        assert response.status_code == 403, (method, name)
        assert response.json()["error"]["code"] in {"insufficient_scope", "session_required"}
    assert state() == before


def test_a_read_key_reads_but_cannot_write(owner_session):
    session, team, owner = owner_session
    raw = session.post(reverse("api:api-keys"), {"name": "ro", "scope": "read"}, format="json").json()["key"]
    program = key_client(raw)
    assert program.get(reverse("api:billing-payments")).status_code == 200
    assert program.get(reverse("api:credits")).status_code == 200
    before = state()
    for method, name, body in API_CALLS:
        if method == "get":
            continue
        response = call(program, method, name, body)
        assert response.status_code == 403, (method, name)
    assert program.get(reverse("api:demo-metered-ping")).status_code == 403  # metered calls spend: usage scope
    assert state() == before


def test_no_key_mints_or_revokes_keys_whatever_its_scope(owner_session):
    session, team, owner = owner_session
    full = session.post(reverse("api:api-keys"), {"name": "full", "scope": "full"}, format="json").json()
    program = key_client(full["key"])
    minted = program.post(reverse("api:api-keys"), {"name": "child", "scope": "full"}, format="json")
    assert minted.status_code == 403 and minted.json()["error"]["code"] == "session_required"
    revoke = program.delete(reverse("api:api-key-detail", args=[full["id"]]))
    assert revoke.status_code == 403
    assert APIKey.objects.filter(team=team).count() == 1 and APIKey.objects.get().revoked_at is None
    assert program.get(reverse("api:api-keys")).status_code == 200  # listing is a read


# --- Inputs that answered 500 -----------------------------------------------------------------------------------


@pytest.mark.parametrize("value", ["²", "٣", "1²", "9" * 30, "-1", "１"])
def test_x_team_id_values_int_rejects_or_overflow_answer_404(owner_session, value):
    session, team, owner = owner_session
    response = session.get(reverse("api:api-keys"), HTTP_X_TEAM_ID=value)
    assert response.status_code == 404
    assert response.json()["error"]["code"] == "not_found"


def test_a_team_switch_url_with_a_30_digit_id_is_404(client):
    team, owner = make_team_with_owner()
    client.force_login(owner)
    assert client.post("/accounts/team/switch/" + "9" * 30 + "/").status_code == 404
    assert client.post(f"/accounts/team/api-keys/{'9' * 30}/revoke/").status_code == 404
    assert client.post(reverse("accounts:switch_team", args=[team.id])).status_code == 302


@pytest.mark.parametrize("body", [
    "[" * 100_000 + "]" * 100_000,           # RecursionError in the parser
    '{"a":' * 500 + "1" + "}" * 500,         # parses, but deeper than API_MAX_JSON_DEPTH
    '{"metric": "api_call", "quantity": NaN}',
    "\xff\xfe not utf-8",
    "{",
])
def test_malformed_or_deeply_nested_json_answers_400_in_the_error_shape(owner_session, body):
    session, team, owner = owner_session
    before = state()
    for name in ("api:usage-events", "api:api-keys", "api:billing-checkout-sessions"):
        response = session.post(reverse(name), body.encode("latin-1"), content_type="application/json",
                                HTTP_IDEMPOTENCY_KEY="k")
        assert response.status_code == 400, (name, response.status_code)
        assert response.json()["error"]["code"] == "parse_error"
    assert state() == before


@override_settings(API_MAX_BODY_BYTES=10_000)
def test_api_bodies_above_the_limit_answer_413_in_the_error_shape(owner_session):
    session, team, owner = owner_session
    big = json.dumps({"metric": "api_call", "quantity": 1, "metadata": {"blob": "x" * 20_000}})
    for content_type in ("application/json", "application/x-www-form-urlencoded"):
        response = session.post(reverse("api:usage-events"), big, content_type=content_type,
                                HTTP_IDEMPOTENCY_KEY="k")
        assert response.status_code == 413
        assert response.json() == {"error": {"code": "request_too_large",
                                             "message": "The request body is too large."}}
    assert apps.get_model("usage", "UsageEvent").objects.count() == 0


def test_the_json_parser_bounds_a_body_without_a_declared_length(settings):
    from io import BytesIO

    from billing_site.parsers import BoundedJSONParser, RequestBodyTooLarge

    settings.API_MAX_BODY_BYTES = 100
    assert BoundedJSONParser().parse(BytesIO(b'{"a": [1, 2]}')) == {"a": [1, 2]}
    with pytest.raises(RequestBodyTooLarge):
        BoundedJSONParser().parse(BytesIO(b"[" + b"1," * 200 + b"1]"))


# --- Login throttling -------------------------------------------------------------------------------------------


def test_repeated_failures_lock_the_account_whatever_the_case_and_the_lockout_is_logged(client, settings, caplog):
    settings.AXES_FAILURE_LIMIT = 3
    user = UserFactory(email="ana@example.com")
    for _ in range(3):
        response = client.post(reverse("accounts:login"), {"username": "ana@example.com", "password": "wrong"},
                               REMOTE_ADDR="10.0.0.1")
    with caplog.at_level(logging.WARNING, logger="accounts.services"):
        # The right password, another case, another IP: the account is locked.
        response = client.post(reverse("accounts:login"), {"username": "ANA@example.com", "password": DEFAULT_PASSWORD},
                               REMOTE_ADDR="10.0.0.2")
    assert response.status_code == 429
    assert "locked after 3 failed logins" in response.content.decode()
    assert "_auth_user_id" not in client.session
    record = next(r for r in caplog.records if r.getMessage() == "login locked out")
    assert record.user_id == user.pk and "ana@example.com" not in json.dumps(record.__dict__, default=str)


def test_repeated_failures_from_one_ip_lock_the_ip_for_every_account_including_the_admin_login(client, settings):
    settings.AXES_FAILURE_LIMIT = 3
    UserFactory(email="victim@example.com", is_staff=True)
    for n in range(3):
        client.post(reverse("admin:login"), {"username": f"guess{n}@example.com", "password": "x"},
                    REMOTE_ADDR="10.0.0.9")
    locked = client.post(reverse("admin:login"), {"username": "victim@example.com", "password": DEFAULT_PASSWORD},
                         REMOTE_ADDR="10.0.0.9")
    assert locked.status_code == 429
    other_ip = client.post(reverse("accounts:login"), {"username": "victim@example.com", "password": DEFAULT_PASSWORD},
                           REMOTE_ADDR="10.0.0.10")
    assert other_ip.status_code == 302


# --- Staff second factor ----------------------------------------------------------------------------------------


def money_staff(*codenames, group: str | None = None):
    user = UserFactory(is_staff=True)
    user.user_permissions.add(*Permission.objects.filter(content_type__app_label="billing", codename__in=codenames))
    if group:
        user.groups.add(Group.objects.get(name=group))  # the back office's roles (billing.backoffice.roles)
    return user


def refund_pages():
    return [reverse("admin:billing_refundrequest_changelist"), reverse("admin:index")]


def totp_code(device: TOTPDevice, drift: int = 0) -> str:
    totp = TOTP(device.bin_key, device.step, device.t0, device.digits, device.drift + drift)
    return f"{totp.token():0{device.digits}d}"


@pytest.mark.staff_otp
@pytest.mark.parametrize("codename", ["approve_refund", "request_refund", "grant_credits", "replay_webhooks"])
def test_staff_with_money_powers_and_no_device_cannot_open_the_refund_pages(client, codename):
    client.force_login(money_staff(codename))
    for url in refund_pages():
        response = client.get(url)
        assert response.status_code == 302 and response["Location"].startswith(reverse("accounts:otp_enrol"))


@pytest.mark.staff_otp
def test_staff_with_a_device_must_give_a_code_and_then_open_the_refund_pages(client):
    staff = money_staff(group="Finance")
    device = TOTPDevice.objects.create(user=staff, name="phone", confirmed=True)
    client.force_login(staff)
    url = reverse("admin:billing_refundrequest_changelist")
    step = client.get(url)
    assert step.status_code == 302 and step["Location"].startswith(reverse("accounts:otp_verify"))
    wrong = client.post(reverse("accounts:otp_verify"), {"otp_token": "000000", "next": url})
    assert wrong.status_code == 200 and client.get(url).status_code == 302
    device.refresh_from_db()
    device.throttling_failure_count = 0  # the wrong code above started django-otp's back-off
    device.throttling_failure_timestamp = None
    device.save()
    ok = client.post(reverse("accounts:otp_verify"), {"otp_token": totp_code(device), "next": url})
    assert ok.status_code == 302 and ok["Location"] == url
    assert client.get(url).status_code == 200


@pytest.mark.staff_otp
def test_enrolment_shows_the_secret_once_confirms_with_a_code_and_gives_recovery_codes(client):
    staff = money_staff(group="Finance")
    client.force_login(staff)
    page = client.get(reverse("accounts:otp_enrol"))
    assert page.status_code == 200 and page["Cache-Control"] == "no-store" and "<svg" in page.content.decode()
    device = TOTPDevice.objects.get(user=staff, confirmed=False)
    again = client.get(reverse("accounts:otp_enrol"))  # a reload makes a new secret; the old one is gone
    assert not TOTPDevice.objects.filter(pk=device.pk).exists()
    device = TOTPDevice.objects.get(user=staff, confirmed=False)
    assert again.status_code == 200
    done = client.post(reverse("accounts:otp_enrol"), {"otp_token": totp_code(device)})
    assert done.status_code == 302 and done["Location"].startswith(reverse("accounts:otp_recovery_codes"))
    codes_page = client.get(done["Location"]).content.decode()
    codes = list(StaticToken.objects.filter(device__user=staff).values_list("token", flat=True))
    assert len(codes) == 10 and all(code in codes_page for code in codes)
    assert client.get(reverse("admin:billing_refundrequest_changelist")).status_code == 200
    # A recovery code logs in once.
    client.logout()
    client.force_login(staff)
    assert client.post(reverse("accounts:otp_verify"), {"otp_token": codes[0]}).status_code == 302
    assert client.get(reverse("admin:billing_refundrequest_changelist")).status_code == 200
    assert not StaticToken.objects.filter(token=codes[0]).exists()


@pytest.mark.staff_otp
def test_a_password_alone_cannot_replace_an_enrolled_device(client):
    staff = money_staff("approve_refund")
    TOTPDevice.objects.create(user=staff, name="phone", confirmed=True)
    client.force_login(staff)
    response = client.get(reverse("accounts:otp_enrol"))
    assert response.status_code == 302 and response["Location"].startswith(reverse("accounts:otp_verify"))
    assert TOTPDevice.objects.filter(user=staff).count() == 1


@pytest.mark.staff_otp
def test_staff_without_money_powers_and_customers_are_not_asked_for_a_second_factor(client):
    viewer = UserFactory(is_staff=True)
    client.force_login(viewer)
    assert client.get(reverse("admin:index")).status_code == 200
    team, owner = make_team_with_owner()
    client.force_login(owner)
    assert client.get(reverse("accounts:otp_enrol")).status_code == 404


def test_demo_staff_otp_prints_a_working_secret_beside_the_password(capsys):
    import base64

    from django.core.management import call_command

    staff = money_staff("approve_refund")
    call_command("demo_staff_otp", "--password", "demo-pass")
    out = capsys.readouterr().out
    line = next(line for line in out.splitlines() if staff.email in line)
    secret = line.rsplit(" ", 1)[-1]
    assert "demo-pass" in line
    device = TOTPDevice.objects.get(user=staff, confirmed=True)
    assert base64.b32decode(secret) == device.bin_key


def test_demo_staff_otp_refuses_in_production(settings):
    from django.core.management import CommandError, call_command

    settings.IS_PRODUCTION = True
    money_staff("approve_refund")
    with pytest.raises(CommandError):
        call_command("demo_staff_otp")
    assert not TOTPDevice.objects.exists()


# --- CSP, metrics, logs -----------------------------------------------------------------------------------------


def test_every_page_carries_a_csp_without_inline_script(client, admin_user):
    for url in ["/", "/accounts/login/", "/accounts/signup/", "/api/docs/"]:
        policy = client.get(url)["Content-Security-Policy"]
        assert "script-src 'self'" in policy and "unsafe-inline" not in policy and "object-src 'none'" in policy
    client.force_login(admin_user)
    assert "Content-Security-Policy" in client.get(reverse("admin:index"))
    docs = client.get("/api/docs/").content.decode()
    assert "<script>" not in docs and "<script nonce" not in docs


def test_metrics_need_the_token_in_production(client, settings):
    settings.IS_PRODUCTION = True
    settings.METRICS_BEARER_TOKEN = ""
    assert client.get("/metrics").status_code == 403
    settings.METRICS_BEARER_TOKEN = "scrape-token"
    assert client.get("/metrics").status_code == 401
    assert client.get("/metrics", HTTP_AUTHORIZATION="Bearer scrape-token").status_code == 200


def test_invitation_and_reset_tokens_are_redacted_from_log_lines():
    line = 'GET /accounts/invitations/abcDEF_123-xyz/ HTTP/1.1" 200 ref=/accounts/reset/MQ/c3p0-abc123/'
    redacted = redact_url_secrets(line)
    assert "abcDEF_123-xyz" not in redacted and "c3p0-abc123" not in redacted
    assert "/accounts/invitations/[redacted]/" in redacted and "/accounts/reset/MQ/[redacted]/" in redacted
    assert redact_url_secrets("/accounts/reset/MQ/set-password/") == "/accounts/reset/MQ/set-password/"
    record = logging.makeLogRecord({"msg": "Not Found: %s", "args": ("/accounts/invitations/s3cret/",),
                                    "levelname": "WARNING", "path": "/accounts/invitations/s3cret/"})
    assert "s3cret" not in JsonFormatter().format(record)


def test_staff_demoting_a_member_or_deactivating_a_user_in_the_admin_revokes_their_keys(client, admin_user):
    team, _owner = make_team_with_owner()
    admin, created = admin_with_full_key(team)
    membership = Membership.objects.get(team=team, user=admin)
    client.force_login(admin_user)
    response = client.post(reverse("admin:accounts_membership_change", args=[membership.pk]),
                           {"user": admin.pk, "team": team.pk, "role": "member", "created_0": "2026-01-01",
                            "created_1": "00:00:00"})
    assert response.status_code == 302, response.content.decode()[:2000]
    assert APIKey.objects.get(pk=created.api_key.pk).revoked_at is not None

    other_team, _ = make_team_with_owner()
    other_admin, other_key = admin_with_full_key(other_team)
    page = client.get(reverse("admin:accounts_user_change", args=[other_admin.pk]))
    form = page.context["adminform"].form
    data = {name: value for name, value in form.initial.items() if value is not None and name != "password"}
    data.update({"is_active": "", "groups": [], "user_permissions": [], "date_joined_0": "2026-01-01",
                 "date_joined_1": "00:00:00", "last_login_0": "", "last_login_1": ""})
    data.pop("is_active")
    response = client.post(reverse("admin:accounts_user_change", args=[other_admin.pk]), data)
    assert response.status_code == 302, response.content.decode()[:2000]
    assert APIKey.objects.get(pk=other_key.api_key.pk).revoked_at is not None
