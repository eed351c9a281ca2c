"""
The API's JSON parser, installed as DRF's default: bounded in size and depth, so that no body answers 500.

DRF reads the request stream itself, so Django's DATA_UPLOAD_MAX_MEMORY_SIZE does not apply to API bodies: the
limit is API_MAX_BODY_BYTES, checked here (bodies without a Content-Length, read up to the limit) and by
billing_site.middleware.APIBodySizeLimitMiddleware (declared lengths, before anything is read). A deeply nested
document used to raise RecursionError, which fell through the exception handler; it is now a 400.
"""
import json

from django.conf import settings
from django.utils.translation import gettext_lazy as _
from rest_framework import status
from rest_framework.exceptions import APIException, ParseError
from rest_framework.parsers import JSONParser


class RequestBodyTooLarge(APIException):
    status_code = status.HTTP_413_REQUEST_ENTITY_TOO_LARGE
    default_detail = _("The request body is too large.")
    default_code = "request_too_large"


def json_depth_exceeds(value, *, max_depth: int) -> bool:
    """Whether a parsed document nests containers deeper than max_depth (iterative: no recursion to exhaust)."""
    stack = [(value, 1)]
    while stack:
        node, depth = stack.pop()
        if isinstance(node, dict):
            children = node.values()
        elif isinstance(node, list):
            children = node
        else:
            continue
        if depth > max_depth:
            return True
        stack.extend((child, depth + 1) for child in children if isinstance(child, dict | list))
    return False


def _reject_constant(name: str):
    # NaN and Infinity are not JSON (RFC 8259); Python accepts them by default and they break amounts downstream.
    raise ValueError(f"{name} is not valid JSON")


class BoundedJSONParser(JSONParser):
    def parse(self, stream, media_type=None, parser_context=None):
        limit = settings.API_MAX_BODY_BYTES
        raw = stream.read(limit + 1) if stream is not None else b""
        if len(raw) > limit:
            raise RequestBodyTooLarge()
        encoding = (parser_context or {}).get("encoding", settings.DEFAULT_CHARSET)
        try:
            data = json.loads(raw.decode(encoding), parse_constant=_reject_constant)
        except RecursionError as exc:
            raise ParseError(_("JSON parse error - the document is nested too deeply.")) from exc
        except ValueError as exc:  # also UnicodeDecodeError
            raise ParseError(_("JSON parse error - %(error)s") % {"error": exc}) from exc
        if json_depth_exceeds(data, max_depth=settings.API_MAX_JSON_DEPTH):
            raise ParseError(
                _("JSON parse error - the document is nested deeper than %(depth)d levels.")
                % {"depth": settings.API_MAX_JSON_DEPTH}
            )
        return data
