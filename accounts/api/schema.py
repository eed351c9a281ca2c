"""OpenAPI description of the API-key authentication, so the schema tells client authors how to authenticate."""
from drf_spectacular.extensions import OpenApiAuthenticationExtension


class APIKeyAuthenticationScheme(OpenApiAuthenticationExtension):
    target_class = "accounts.authentication.APIKeyAuthentication"
    name = "apiKey"

    def get_security_definition(self, auto_schema):
        return {
            "type": "http",
            "scheme": "bearer",
            "bearerFormat": "sk_<prefix>.<secret>",
            "description": "A team API key created on the API keys page or with POST /api/v1/api-keys/.",
        }
