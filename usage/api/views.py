"""Usage API: ingest events, read the period summary, the credit ledger, the spend cap; demo metered endpoints."""
from django.conf import settings
from drf_spectacular.utils import OpenApiParameter, extend_schema
from rest_framework import generics, status
from rest_framework.exceptions import ValidationError
from rest_framework.pagination import PageNumberPagination
from rest_framework.response import Response
from rest_framework.views import APIView

from accounts.api.mixins import TeamScopedAPIMixin, request_membership, request_team
from billing_site.errors import PermissionDeniedError

from .. import selectors, services
from ..metering.decorator import metered
from ..models import CreditLedgerEntry, TeamUsagePolicy
from .serializers import (CreditLedgerEntrySerializer, SpendCapInputSerializer, SpendCapOutputSerializer,
                          UsageEventsInput, UsageEventsOutput, UsageSummarySerializer)


class UsageSummaryAPI(TeamScopedAPIMixin, APIView):
    @extend_schema(responses=UsageSummarySerializer,
                   description="This period per metric (used, included, remaining, overage), credits, daily series "
                               "and a per-API-key breakdown.")
    def get(self, request):
        return Response(selectors.usage_period_summary(team=self.team))


class UsageEventIngestAPI(TeamScopedAPIMixin, APIView):
    required_scope = "usage"  # usage-scoped API keys reach this (accounts/api/permissions.py)
    # Beyond the common error answers (billing_site/openapi.py): out of credits or over the spend cap.
    openapi_error_statuses = {"post": (402,)}

    @extend_schema(
        request=UsageEventsInput,
        responses={201: UsageEventsOutput, 200: UsageEventsOutput},
        parameters=[OpenApiParameter("Idempotency-Key", str, OpenApiParameter.HEADER,
                                     description="Required for a single event (a body without `events`).")],
        description=(
            "Record usage: one event (`{metric, quantity, occurred_at}` + `Idempotency-Key` header) or a batch "
            "(`{events: [{idempotency_key, metric, quantity, occurred_at}, ...]}`, at most 1,000). All or nothing: "
            "an invalid event answers 400 with its index and reason and nothing is stored. A repeated key counts "
            "once and answers with the original event (`duplicate: true`). 201 when something new was stored, "
            "200 when everything was a repeat."
        ),
    )
    def post(self, request):
        data = request.data
        api_key = getattr(request, "api_key", None)
        user = request.user if getattr(request.user, "is_authenticated", False) else None
        if isinstance(data, dict) and "events" in data:
            result = services.usage_events_ingest(team=self.team, events=data["events"], api_key=api_key, user=user)
            body = {"events": result.events, "created": result.created, "duplicates": result.duplicates}
            return Response(body, status=status.HTTP_201_CREATED if result.created else status.HTTP_200_OK)
        key = request.headers.get("Idempotency-Key", "")
        result = services.usage_events_ingest(team=self.team, events=[data], api_key=api_key, user=user,
                                              single_key=key)
        return Response(result.events[0], status=status.HTTP_201_CREATED if result.created else status.HTTP_200_OK)


class CreditsPagination(PageNumberPagination):
    page_size = 25
    page_size_query_param = "page_size"
    max_page_size = 200

    def get_page_size(self, request):
        # DRF silently falls back to the default for `page_size=abc` or 0: a client's mistake should be told (400).
        raw = request.query_params.get(self.page_size_query_param)
        if raw is None:
            return self.page_size
        if not (raw.isascii() and raw.isdigit() and len(raw) <= 6 and 1 <= int(raw) <= self.max_page_size):
            raise ValidationError({self.page_size_query_param: f"A whole number from 1 to {self.max_page_size}."})
        return int(raw)

    def get_schema_operation_parameters(self, view):
        parameters = super().get_schema_operation_parameters(view)
        for parameter in parameters:
            if parameter["name"] == self.page_size_query_param:
                parameter["schema"].update(minimum=1, maximum=self.max_page_size)
        return parameters


class CreditsAPI(TeamScopedAPIMixin, generics.ListAPIView):
    """`{"balance": int, "count", "next", "previous", "results": [ledger entries, newest first]}`."""

    serializer_class = CreditLedgerEntrySerializer
    pagination_class = CreditsPagination
    filter_backends: list = []

    def get_queryset(self):
        queryset = selectors.credit_ledger(team=self.team)
        reason = self.request.query_params.get("reason")
        if reason and reason not in CreditLedgerEntry.Reason.values:
            # Checked, not passed to the query: PostgreSQL refuses some strings outright (NUL), which was a 500.
            raise ValidationError({"reason": f"One of: {', '.join(CreditLedgerEntry.Reason.values)}."})
        return queryset.filter(reason=reason) if reason else queryset

    @extend_schema(parameters=[OpenApiParameter("reason", str, OpenApiParameter.QUERY, required=False,
                                                enum=list(CreditLedgerEntry.Reason.values))])
    def get(self, request, *args, **kwargs):
        return super().get(request, *args, **kwargs)

    def list(self, request, *args, **kwargs):
        response = super().list(request, *args, **kwargs)
        response.data = {"balance": selectors.credits_balance(team=self.team), **response.data}
        return response


class SpendCapAPI(TeamScopedAPIMixin, APIView):
    @extend_schema(responses=SpendCapOutputSerializer)
    def get(self, request):
        policy = TeamUsagePolicy.objects.filter(team=self.team).first()
        return Response({"spend_cap_minor": policy.spend_cap_minor if policy else None,
                         "currency": policy.currency if policy else "usd"})

    @extend_schema(request=SpendCapInputSerializer, responses=SpendCapOutputSerializer,
                   description="Owner only (signed in; API keys cannot change it).")
    def put(self, request):
        payload = SpendCapInputSerializer(data=request.data)
        payload.is_valid(raise_exception=True)
        membership = request_membership(request)
        if membership is None:
            raise PermissionDeniedError("forbidden", "Only the team's owner, signed in, can change the spend cap.")
        policy = services.team_spend_cap_set(team=self.team, set_by=request.user, **payload.validated_data)
        return Response({"spend_cap_minor": policy.spend_cap_minor, "currency": policy.currency})


class DemoPingAPI(APIView):
    """Unmetered trivial view (the baseline of the metering benchmark)."""
    required_scope = "usage"  # usage-scoped API keys reach this (accounts/api/permissions.py)

    @extend_schema(responses={200: dict})
    def get(self, request):
        return Response({"ok": True})


class DemoMeteredPingAPI(APIView):
    """The same trivial view, metered as one `api_call`."""
    required_scope = "usage"  # usage-scoped API keys reach this (accounts/api/permissions.py)
    # Metered calls: past the plan with no credits (402), over the rate limit (429), usage store down (503).
    openapi_error_statuses = {"get": (402, 404, 429, 503)}

    @extend_schema(responses={200: dict})
    @metered("api_call")
    def get(self, request):
        return Response({"ok": True})


class DemoPremiumAPI(APIView):
    """A premium operation: costs USAGE_PREMIUM_CREDITS_PER_CALL credits per call on every plan (402 without)."""
    required_scope = "usage"  # usage-scoped API keys reach this (accounts/api/permissions.py)
    openapi_error_statuses = {"post": (402, 404, 429, 503)}

    @extend_schema(request=None, responses={200: dict})
    @metered("api_call", credits=settings.USAGE_PREMIUM_CREDITS_PER_CALL)
    def post(self, request):
        return Response({"ok": True, "result": "premium answer",
                         "credits_balance": selectors.credits_balance(team=request_team(request))})
