from drf_spectacular.utils import extend_schema
from rest_framework import generics, status
from rest_framework.permissions import SAFE_METHODS
from rest_framework.response import Response
from rest_framework.views import APIView

from billing_site.errors import NotFoundError

from .. import selectors, services
from ..models import APIKey
from .permissions import SessionOnly
from .mixins import TeamScopedAPIMixin, request_membership, request_team
from .serializers import APIKeyCreatedSerializer, APIKeyCreateInputSerializer, APIKeySerializer, MeSerializer


class MeAPI(APIView):
    # Any key may ask who it acts for (a usage-only program checks its team this way).
    required_scope = (APIKey.Scope.READ, APIKey.Scope.USAGE)

    @extend_schema(responses=MeSerializer)
    def get(self, request):
        membership = request_membership(request)
        team = request_team(request)
        data = {
            "id": request.user.id,
            "email": request.user.email,
            "full_name": request.user.full_name,
            "language": request.user.language,
            "teams": selectors.user_teams(user=request.user) if membership else [],
            "current_team_id": team.id,
            "role": membership.role if membership else None,
        }
        return Response(MeSerializer(data).data)


class KeyManagementPermissionsMixin:
    """Listing keys follows the scopes (read); minting and revoking need a person signed in, never a key."""

    def get_permissions(self):
        permissions = super().get_permissions()
        if self.request is not None and self.request.method not in SAFE_METHODS:
            permissions.append(SessionOnly())
        return permissions


class APIKeyListCreateAPI(KeyManagementPermissionsMixin, TeamScopedAPIMixin, generics.ListAPIView):
    serializer_class = APIKeySerializer
    ordering_fields = ["created", "name", "last_used_at"]

    def get_queryset(self):
        if getattr(self, "swagger_fake_view", False):  # schema generation has no team to scope by
            return APIKey.objects.none()
        return selectors.team_api_keys(team=self.team)

    @extend_schema(
        request=APIKeyCreateInputSerializer, responses={201: APIKeyCreatedSerializer},
        description="Mint a key (owner or admin, signed in: an API key cannot mint keys). `scope` defaults to "
                    "`usage` (metered calls and usage events only); choose `read` or `full` only when needed.",
    )
    def post(self, request):
        payload = APIKeyCreateInputSerializer(data=request.data)
        payload.is_valid(raise_exception=True)
        self.require_team_manager()
        created = services.api_key_create(team=self.team, created_by=request.user, **payload.validated_data)
        body = APIKeySerializer(created.api_key).data | {"key": created.raw_key}
        return Response(body, status=status.HTTP_201_CREATED, headers={"Cache-Control": "no-store"})


class APIKeyDetailAPI(KeyManagementPermissionsMixin, TeamScopedAPIMixin, APIView):
    def _get_key(self, key_id: int):
        api_key = selectors.team_api_keys(team=self.team).filter(pk=key_id).first()
        if api_key is None:
            raise NotFoundError("not_found", "API key not found.")
        return api_key

    @extend_schema(responses=APIKeySerializer)
    def get(self, request, key_id: int):
        return Response(APIKeySerializer(self._get_key(key_id)).data)

    @extend_schema(responses={200: APIKeySerializer},
                   description="Revoke the key. Revoked keys are kept for the record.")
    def delete(self, request, key_id: int):
        self.require_team_manager()
        api_key = services.api_key_revoke(api_key=self._get_key(key_id), revoked_by=request.user)
        return Response(APIKeySerializer(api_key).data)
