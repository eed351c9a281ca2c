"""The one DRF exception handler: every error answers {"error": {"code", "message"}} with the right status."""
import pytest
from django.core.exceptions import PermissionDenied, ValidationError as DjangoValidationError
from django.http import Http404
from rest_framework import exceptions
from rest_framework.test import APIRequestFactory

from billing_site.api_errors import exception_handler
from billing_site.errors import ApplicationError, BillingError, NotFoundError, PermissionDeniedError


def handle(exc):
    request = APIRequestFactory().get("/api/v1/anything/")
    return exception_handler(exc, {"request": request, "view": None})


@pytest.mark.parametrize(
    ("exc", "status", "code", "message"),
    [
        (ApplicationError("email_taken", "Taken."), 400, "email_taken", "Taken."),
        (NotFoundError("not_found", "Team not found."), 404, "not_found", "Team not found."),
        (PermissionDeniedError("forbidden", "No."), 403, "forbidden", "No."),
        (BillingError("card_declined", "Your card was declined."), 402, "card_declined", "Your card was declined."),
        (ApplicationError("slow_down", "Too many.", http_status=429), 429, "slow_down", "Too many."),
        (Http404(), 404, "not_found", "Not found."),
        (PermissionDenied(), 403, "permission_denied", "You do not have permission to perform this action."),
        (exceptions.NotAuthenticated(), 401, "not_authenticated", "Authentication credentials were not provided."),
        (exceptions.AuthenticationFailed("Bad key.", code="invalid_api_key"), 401, "invalid_api_key", "Bad key."),
        (exceptions.MethodNotAllowed("PUT"), 405, "method_not_allowed", 'Method "PUT" not allowed.'),
        (exceptions.ValidationError({"quantity": ["Must be positive."]}), 400, "invalid",
         "quantity: Must be positive."),
        (exceptions.ValidationError({"non_field_errors": ["Pick one."]}), 400, "invalid", "Pick one."),
        (DjangoValidationError({"amount": ["Too big."]}), 400, "invalid", "amount: Too big."),
    ],
)
def test_every_error_uses_the_envelope(exc, status, code, message):
    response = handle(exc)
    assert response.status_code == status
    assert response.data["error"]["code"] == code
    assert response.data["error"]["message"] == message


def test_application_error_details_and_headers_reach_the_client():
    error = ApplicationError("rate_limited", "Slow down.", http_status=429, extra={"limit_per_second": 2})
    error.headers = {"Retry-After": "1"}
    response = handle(error)
    assert response.data == {"error": {"code": "rate_limited", "message": "Slow down.",
                                       "details": {"limit_per_second": 2}}}
    assert response["Retry-After"] == "1"


def test_throttled_keeps_retry_after():
    response = handle(exceptions.Throttled(wait=3))
    assert response.status_code == 429 and response["Retry-After"] == "3"
    assert response.data["error"]["code"] == "throttled"


def test_validation_details_list_every_field():
    response = handle(exceptions.ValidationError({"a": ["x"], "b": ["y"]}))
    assert set(response.data["error"]["details"]) == {"a", "b"}


def test_unexpected_exception_is_a_500_envelope_without_internals(caplog):
    response = handle(RuntimeError("database password is hunter2"))
    assert response.status_code == 500
    assert response.data == {"error": {"code": "server_error", "message": "Something went wrong on our side."}}
    assert "hunter2" not in str(response.data)
    assert any("Unhandled API error" in record.message for record in caplog.records)


def test_page_views_show_the_user_message_with_its_status(client, db):
    from accounts.tests.factories import make_team_with_owner
    from django.urls import reverse

    team, owner = make_team_with_owner()
    other_team, _ = make_team_with_owner()
    client.force_login(owner)
    response = client.post(reverse("accounts:switch_team", args=[other_team.id]))
    assert response.status_code == 404
    assert "Team not found." in response.content.decode()
