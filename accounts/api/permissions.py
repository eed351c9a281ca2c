"""
What an API key may reach. A view declares the scope it needs with `required_scope`; without it, safe methods need
`read` and the others `full`. A key's scope grants:

- `full`: every view (but never key management: accounts.api.views refuses keys there);
- `read`: views that need `read`, with safe methods only;
- `usage`: views that declare `usage` (metered calls, usage events).

A view may accept several scopes with a tuple (e.g. `("read", "usage")` for "who am I"). Session users (the pages,
people) are not limited by scopes; their team role is checked by the views and services.
"""
from django.utils.translation import gettext_lazy as _
from rest_framework.permissions import SAFE_METHODS, BasePermission

from ..models import APIKey

Scope = APIKey.Scope


def view_required_scopes(*, view, method: str) -> frozenset[str]:
    declared = getattr(view, "required_scope", None)
    if declared is None:
        return frozenset({Scope.READ}) if method in SAFE_METHODS else frozenset({Scope.FULL})
    if isinstance(declared, str):
        return frozenset({declared})
    return frozenset(declared)


def api_key_scope_allows(*, key_scope: str, required: frozenset[str], method: str) -> bool:
    if key_scope == Scope.FULL:
        return True
    if key_scope == Scope.READ:
        return Scope.READ in required and method in SAFE_METHODS
    return key_scope in required


class APIKeyScopePermission(BasePermission):
    """Installed globally (REST_FRAMEWORK["DEFAULT_PERMISSION_CLASSES"]) after IsAuthenticated."""

    message = _("This API key's scope does not allow this request.")
    code = "insufficient_scope"

    def has_permission(self, request, view) -> bool:
        api_key = getattr(request, "api_key", None)
        if api_key is None:
            return True
        required = view_required_scopes(view=view, method=request.method)
        return api_key_scope_allows(key_scope=api_key.scope, required=required, method=request.method)


class SessionOnly(BasePermission):
    """For requests only a person may make (minting or revoking keys): an API key is refused, whatever its scope."""

    message = _("API keys cannot manage API keys. Sign in on the API keys page.")
    code = "session_required"

    def has_permission(self, request, view) -> bool:
        return getattr(request, "api_key", None) is None
