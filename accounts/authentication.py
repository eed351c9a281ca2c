"""DRF authentication for programs: `Authorization: Bearer <api key>`."""
import hmac

from django.utils import timezone
from rest_framework import authentication, exceptions

from .models import APIKey
from .selectors import api_key_creator_may_act
from .services import api_key_hash, api_key_touch

# One message for every failure so that a caller learns nothing about whether a key exists.
INVALID_KEY_MESSAGE = "Invalid API key. Create a new key on the API keys page."


class APIKeyAuthentication(authentication.BaseAuthentication):
    keyword = "Bearer"

    def authenticate(self, request):
        header = authentication.get_authorization_header(request).decode("latin-1")
        if not header:
            return None
        parts = header.split()
        # The scheme is case-insensitive (RFC 9110); other schemes are left to other authenticators.
        if not parts or parts[0].lower() != self.keyword.lower():
            return None
        if len(parts) != 2 or not parts[1].startswith("sk_") or "." not in parts[1]:
            raise exceptions.AuthenticationFailed(INVALID_KEY_MESSAGE, code="invalid_api_key")
        raw_key = parts[1]
        prefix = raw_key[3:].split(".", 1)[0]
        api_key = APIKey.objects.select_related("team", "created_by").filter(prefix=prefix).first()
        # Compare in constant time; hash even when no key matched so timing does not reveal existence.
        expected = api_key.hashed_key if api_key else "0" * 64
        matches = hmac.compare_digest(expected, api_key_hash(raw_key))
        if api_key is None or not matches or api_key.revoked_at is not None:
            raise exceptions.AuthenticationFailed(INVALID_KEY_MESSAGE, code="invalid_api_key")
        if api_key.expires_at is not None and api_key.expires_at <= timezone.now():
            raise exceptions.AuthenticationFailed(INVALID_KEY_MESSAGE, code="invalid_api_key")
        if not api_key_creator_may_act(api_key=api_key):
            # Fails closed even when the service that removed the member, lowered their role or deactivated them
            # missed revoking this key.
            raise exceptions.AuthenticationFailed(INVALID_KEY_MESSAGE, code="invalid_api_key")
        api_key_touch(api_key=api_key)
        request.api_key = api_key
        request.team = api_key.team
        return api_key.created_by, api_key

    def authenticate_header(self, request):
        return self.keyword
