from rest_framework import serializers

from ..models import APIKey, Membership


class MembershipSerializer(serializers.ModelSerializer):
    team_id = serializers.IntegerField(source="team.id")
    team_name = serializers.CharField(source="team.name")

    class Meta:
        model = Membership
        fields = ["team_id", "team_name", "role"]


class MeSerializer(serializers.Serializer):
    id = serializers.IntegerField()
    email = serializers.EmailField()
    full_name = serializers.CharField()
    language = serializers.CharField()
    teams = MembershipSerializer(many=True)
    current_team_id = serializers.IntegerField(allow_null=True)
    role = serializers.CharField(allow_null=True, help_text="Role in the current team; null for API keys.")


class APIKeySerializer(serializers.ModelSerializer):
    """An API key as listed: never its hash or secret."""

    created_by = serializers.EmailField(source="created_by.email", allow_null=True, default=None)
    is_active = serializers.BooleanField(read_only=True)

    class Meta:
        model = APIKey
        fields = ["id", "name", "prefix", "scope", "created_by", "created", "last_used_at", "expires_at", "revoked_at",
                  "is_active"]
        read_only_fields = fields


class APIKeyCreateInputSerializer(serializers.Serializer):
    name = serializers.CharField(max_length=100)
    scope = serializers.ChoiceField(
        choices=APIKey.Scope.choices, default=APIKey.Scope.USAGE,
        help_text="usage (default: metered calls and usage events only), read (read-only) or full.",
    )
    expires_at = serializers.DateTimeField(required=False, allow_null=True)


class APIKeyCreatedSerializer(APIKeySerializer):
    key = serializers.CharField(help_text="The full secret. Shown only in this response; store it now.")

    class Meta(APIKeySerializer.Meta):
        fields = APIKeySerializer.Meta.fields + ["key"]
