"""One DRF exception handler: every API error answers {"error": {"code", "message"}} (plus details when useful)."""
import logging

from django.core.exceptions import PermissionDenied, ValidationError as DjangoValidationError
from django.http import Http404
from django.utils.translation import gettext as _
from rest_framework import exceptions, status
from rest_framework.response import Response
from rest_framework.views import exception_handler as drf_exception_handler

from .errors import ApplicationError

logger = logging.getLogger(__name__)


def _first_message(detail) -> str:
    if isinstance(detail, dict):
        for key, value in detail.items():
            message = _first_message(value)
            return message if key == "non_field_errors" else f"{key}: {message}"
    if isinstance(detail, list) and detail:
        return _first_message(detail[0])
    return str(detail)


def error_response(code: str, message: str, http_status: int, details=None, headers=None) -> Response:
    body = {"error": {"code": code, "message": message}}
    if details is not None:
        body["error"]["details"] = details
    return Response(body, status=http_status, headers=headers)


def not_found_handler(request, exception):
    """
    `handler404`: an /api/ URL that matches no route (e.g. a non-numeric id where the route takes one) answers in the
    API's error shape like every other API 404; pages keep the site's 404 page.
    """
    from django.http import JsonResponse
    from django.views.defaults import page_not_found

    if request.path.startswith("/api/"):
        return JsonResponse({"error": {"code": "not_found", "message": "Not found."}}, status=404)
    return page_not_found(request, exception)


def exception_handler(exc, context):
    if isinstance(exc, ApplicationError):
        details = exc.extra or None
        # An error may carry response headers (e.g. Retry-After on 429) as an optional `headers` attribute.
        headers = getattr(exc, "headers", None)
        return error_response(exc.code, exc.user_message, exc.http_status, details, headers=headers)
    if isinstance(exc, DjangoValidationError):
        exc = exceptions.ValidationError(exc.message_dict if hasattr(exc, "error_dict") else exc.messages)
    if isinstance(exc, Http404):
        return error_response("not_found", _("Not found."), status.HTTP_404_NOT_FOUND)
    if isinstance(exc, PermissionDenied):
        exc = exceptions.PermissionDenied()

    response = drf_exception_handler(exc, context)
    if response is None:
        logger.exception("Unhandled API error", exc_info=exc)
        return error_response("server_error", _("Something went wrong on our side."), 500)

    if isinstance(exc, exceptions.ValidationError):
        return error_response(
            "invalid", _first_message(exc.detail), response.status_code, exc.detail, headers=response.headers
        )
    code = getattr(exc, "default_code", "error")
    if isinstance(exc.detail, dict | list):
        message = _first_message(exc.detail)
    else:
        code = getattr(exc.detail, "code", code) or code
        message = str(exc.detail)
    return Response(
        {"error": {"code": code, "message": message}},
        status=response.status_code,
        headers={k: v for k, v in response.items()},
    )
