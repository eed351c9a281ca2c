import re
import uuid

from .logging import request_id_var

_SAFE_REQUEST_ID = re.compile(r"^[A-Za-z0-9._-]{1,64}$")


class RequestIdMiddleware:
    """Gives every request an id (the proxy's X-Request-ID when it is sane) for logs, audit rows and the response."""

    def __init__(self, get_response):
        self.get_response = get_response

    def __call__(self, request):
        incoming = request.headers.get("X-Request-ID", "")
        request.request_id = incoming if _SAFE_REQUEST_ID.match(incoming) else uuid.uuid4().hex
        token = request_id_var.set(request.request_id)
        try:
            response = self.get_response(request)
        finally:
            request_id_var.reset(token)
        response["X-Request-ID"] = request.request_id
        return response


class ApplicationErrorMiddleware:
    """Pages show an ApplicationError's user message with its status (404 for unknown ids, 403, 402...)."""

    def __init__(self, get_response):
        self.get_response = get_response

    def __call__(self, request):
        return self.get_response(request)

    def process_exception(self, request, exception):
        from django.shortcuts import render

        from .errors import ApplicationError

        if not isinstance(exception, ApplicationError) or request.path.startswith("/api/"):
            return None
        return render(
            request, "error.html", {"code": exception.code, "message": exception.user_message},
            status=exception.http_status,
        )


class APIBodySizeLimitMiddleware:
    """
    API requests declaring a body larger than API_MAX_BODY_BYTES answer 413 in the API's error shape before anything
    reads the body (DRF reads the stream itself, so Django's own upload limit does not protect the API). Bodies sent
    without a length are bounded by billing_site.parsers.BoundedJSONParser while it reads them.
    """

    def __init__(self, get_response):
        self.get_response = get_response

    def __call__(self, request):
        from django.conf import settings
        from django.http import JsonResponse

        if request.path.startswith("/api/"):
            try:
                declared = int(request.META.get("CONTENT_LENGTH") or 0)
            except ValueError:
                declared = 0  # Django reads an unparsable length as no body too
            if declared > settings.API_MAX_BODY_BYTES:
                return JsonResponse(
                    {"error": {"code": "request_too_large", "message": "The request body is too large."}},
                    status=413,
                )
        return self.get_response(request)
