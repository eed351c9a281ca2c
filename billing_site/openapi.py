"""
The OpenAPI schema's error answers (issue 10): every operation documents the 4xx (and the 503 of the metered and
Stripe-backed ones) it can give, all in the one error shape `{"error": {"code", "message", "details"?}}`
(billing_site.api_errors). Installed as a drf-spectacular postprocessing hook; which statuses an operation gives is
read from its view, so a new view is documented by the same rules:

- every operation: 401 (a missing, unknown, revoked or expired key);
- authenticated operations: 403 (a key's scope, a member's role, a key on a session-only operation);
- team-scoped views (`TeamScopedAPIMixin`) and path parameters: 404 (another team's id, an `X-Team-Id` that is not
  the caller's team);
- operations with a body: 400, 413 (above API_MAX_BODY_BYTES) and 415 (a body that is not JSON or a form);
  other unsafe methods and operations with query parameters: 400;
- what a view declares in `openapi_error_statuses` (`{method: (status, ...)}`), e.g. 402 and 429 of metered calls,
  409 of a second checkout for a plan, 503 when Stripe or the rate-limit store is unreachable.
"""
from rest_framework.permissions import AllowAny

ERROR_COMPONENT = "Error"

ERROR_SCHEMA = {
    "type": "object",
    "description": "Every API error. `code` is stable for programs; `message` is safe to show a person.",
    "properties": {
        "error": {
            "type": "object",
            "properties": {
                "code": {"type": "string", "description": "e.g. invalid, not_found, invalid_api_key, "
                                                          "insufficient_scope, insufficient_credits."},
                "message": {"type": "string"},
                "details": {"description": "What was wrong, when useful (the field, the batch index, the "
                                           "ways out of a 402...)."},
            },
            "required": ["code", "message"],
        },
    },
    "required": ["error"],
}

DESCRIPTIONS = {
    400: "The request is invalid (body, query or a business rule): `details` says what.",
    401: "No valid API key or session (unknown, revoked or expired key; its maker no longer a manager).",
    402: "Payment needed: not enough credits, the spend cap is reached, or the card was declined.",
    403: "Not allowed: the key's scope, the member's role, or an operation only a signed-in person may do.",
    404: "Not found: the object does not exist or belongs to another team (the same answer for both).",
    409: "Conflicts with the current state (e.g. the team already has a subscription).",
    413: "The request body is larger than the API accepts.",
    415: "The body's content type is not JSON (or a form).",
    429: "Rate limit or plan quota reached; `Retry-After` says when to retry.",
    503: "Stripe or the usage store is unreachable for a moment; nothing was charged or stored. Retry later.",
}

_BODY_METHODS = {"post", "put", "patch"}


def _views_by_operation(generator) -> dict[tuple[str, str], type]:
    endpoints = getattr(generator, "endpoints", None) or []
    return {(path, method.lower()): getattr(callback, "cls", None) for path, _regex, method, callback in endpoints}


def _statuses(*, view, method: str, operation: dict) -> set[int]:
    from accounts.api.mixins import TeamScopedAPIMixin

    statuses = {401}
    public = view is not None and list(getattr(view, "permission_classes", [])) == [AllowAny]
    if not public:
        statuses.add(403)
    parameters = operation.get("parameters") or []
    if (view is not None and issubclass(view, TeamScopedAPIMixin)) or any(p.get("in") == "path" for p in parameters):
        statuses.add(404)
    if "requestBody" in operation or method in _BODY_METHODS:
        statuses.update({400, 413, 415})
    elif method == "delete" or any(p.get("in") == "query" for p in parameters):
        statuses.add(400)
    declared = getattr(view, "openapi_error_statuses", None) or {}
    statuses.update(declared.get(method, ()))
    return statuses


def error_responses_postprocess(result, generator, request, public):
    """drf-spectacular POSTPROCESSING_HOOKS entry: add the error component and each operation's error answers."""
    result.setdefault("components", {}).setdefault("schemas", {})[ERROR_COMPONENT] = ERROR_SCHEMA
    views = _views_by_operation(generator)
    reference = {"$ref": f"#/components/schemas/{ERROR_COMPONENT}"}
    for path, operations in (result.get("paths") or {}).items():
        for method, operation in operations.items():
            if not isinstance(operation, dict) or "responses" not in operation:
                continue
            for status in sorted(_statuses(view=views.get((path, method)), method=method, operation=operation)):
                operation["responses"].setdefault(str(status), {
                    "description": DESCRIPTIONS[status],
                    "content": {"application/json": {"schema": reference}},
                })
    return result
