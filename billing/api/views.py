"""Billing API: plans, the team's subscription, Checkout and portal sessions, invoices and payments."""
from django.utils.translation import gettext as _
from drf_spectacular.utils import OpenApiParameter, PolymorphicProxySerializer, extend_schema
from rest_framework import status
from rest_framework.exceptions import ValidationError
from rest_framework.permissions import AllowAny
from rest_framework.response import Response
from rest_framework.views import APIView

from accounts.api.mixins import TeamScopedAPIMixin
from billing_site.errors import ApplicationError, BillingError, NotFoundError

from .. import selectors
from ..catalog import load_catalog
from ..services import checkout as checkout_services
from ..services import subscriptions as subscription_services
from . import serializers as s


def _subscription_payload(team) -> dict:
    summary = selectors.subscription_summary(selectors.team_subscription(team=team))
    if summary is None:
        raise NotFoundError("no_subscription", _("Your team has no active subscription."))
    plan = summary.pop("plan")
    summary["plan"] = {"key": plan.key if plan else "", "name": plan.name if plan else "",
                       "lookup_key": summary.pop("lookup_key"), "interval": summary.pop("interval")}
    summary.pop("default_payment_method", None)
    return s.SubscriptionOutputSerializer(summary).data


_CURRENCY = OpenApiParameter("currency", str, OpenApiParameter.QUERY, enum=list(load_catalog().currencies),
                             description="Prices in this currency (default: the catalog's default currency).")


class PlansApi(APIView):
    permission_classes = [AllowAny]

    @extend_schema(parameters=[_CURRENCY], responses=s.PlanListSerializer,
                   description="The catalog's plans and credit packs with their prices in one currency.")
    def get(self, request):
        currency = checkout_services.currency_validate(request.query_params.get("currency"))
        table = selectors.pricing_table(currency=currency)
        results = []
        for row in table["plans"]:
            plan = row["plan"]
            results.append(s.PlanSerializer({
                "key": plan.key, "name": plan.name, "description": plan.description, "seats": plan.seats,
                "rate_limit_per_second": plan.rate_limit_per_second, "included": plan.included,
                "overage": plan.overage, "contact_sales": plan.contact_sales,
                "prices": [{"lookup_key": p["lookup_key"], "interval": p["interval"], "amount": p["amount"],
                            "currency": currency} for p in row["prices"]],
            }).data)
        packs = [{"lookup_key": r["pack"].lookup_key, "name": r["pack"].name, "credits": r["pack"].credits,
                  "amount": r["amount"], "currency": currency} for r in table["credit_packs"]]
        return Response({"count": len(results), "next": None, "previous": None, "results": results,
                         "credit_packs": packs})


class SubscriptionApi(TeamScopedAPIMixin, APIView):
    # Documented error answers beyond the common ones (billing_site/openapi.py): Stripe's card errors and outages.
    openapi_error_statuses = {"patch": (402, 503), "delete": (402, 503)}

    @extend_schema(responses=s.SubscriptionOutputSerializer, description="The team's current subscription (404 without one).")
    def get(self, request):
        return Response(_subscription_payload(self.team))

    @extend_schema(
        request=s.SubscriptionChangeInputSerializer,
        responses=PolymorphicProxySerializer(
            component_name="SubscriptionChangeResult",
            serializers=[s.ChangePreviewOutputSerializer, s.SubscriptionOutputSerializer],
            resource_type_field_name=None,
        ),
        description="Without `proration_date`: the proration preview. With the preview's `proration_date`: the "
                    "change (flat price and metered overage price together), charged exactly as previewed.",
    )
    def patch(self, request):
        """Without proration_date: the preview. With the preview's proration_date: the change, charged as shown."""
        self.require_team_manager()
        data = s.SubscriptionChangeInputSerializer(data=request.data)
        data.is_valid(raise_exception=True)
        if "proration_date" not in data.validated_data:
            preview = subscription_services.subscription_change_preview(
                team=self.team, lookup_key=data.validated_data["lookup_key"])
            return Response({"preview": {"lookup_key": preview.lookup_key, "amount_due": preview.amount_due,
                                         "currency": preview.currency, "proration_date": preview.proration_date,
                                         "lines": preview.lines}})
        updated = subscription_services.subscription_change(team=self.team, **data.validated_data)
        if updated.get("pending_update"):
            # Not paid (declined, or the bank wants 3-D Secure): the plan is unchanged; the change applies if the
            # open invoice is paid before the pending update expires.
            raise BillingError("payment_incomplete", _(
                "The payment for this change did not go through, so your plan was not changed. The change is made "
                "if the open invoice is paid within 23 hours."))
        return Response(_subscription_payload(self.team))

    @extend_schema(request=None, responses={200: s.SubscriptionOutputSerializer},
                   description="Cancel at the end of the current period.")
    def delete(self, request):
        self.require_team_manager()
        subscription_services.subscription_cancel_at_period_end(team=self.team)
        return Response(_subscription_payload(self.team))


class SubscriptionResumeApi(TeamScopedAPIMixin, APIView):
    openapi_error_statuses = {"post": (402, 503)}

    @extend_schema(request=None, responses=s.SubscriptionOutputSerializer,
                   description="Undo a scheduled cancellation.")
    def post(self, request):
        self.require_team_manager()
        subscription_services.subscription_resume(team=self.team)
        return Response(_subscription_payload(self.team))


class CheckoutSessionApi(TeamScopedAPIMixin, APIView):
    openapi_error_statuses = {"post": (409, 503)}  # 409: a second checkout for a plan (use PATCH /subscription/)

    @extend_schema(
        request=s.CheckoutSessionInputSerializer, responses={201: s.CheckoutSessionOutputSerializer},
        parameters=[OpenApiParameter("Idempotency-Key", str, OpenApiParameter.HEADER, required=False,
                                     description="Repeating a request with the same key returns the same session.")],
        description="A Stripe Checkout Session: subscription mode for plan prices, payment mode for credit packs.",
    )
    def post(self, request):
        self.require_team_manager()
        data = s.CheckoutSessionInputSerializer(data=request.data)
        data.is_valid(raise_exception=True)
        user = request.user if getattr(request.user, "is_authenticated", False) else None
        try:
            start = checkout_services.checkout_session_start(
                team=self.team, user=user, request_token=request.headers.get("Idempotency-Key", ""),
                **data.validated_data,
            )
        except NotFoundError as error:
            # An unknown lookup key is a bad request for the API (the page answers 404).
            raise ApplicationError(error.code, error.user_message, http_status=400) from error
        return Response(s.CheckoutSessionOutputSerializer({"id": start.id, "url": start.url}).data,
                        status=status.HTTP_201_CREATED)


class PortalSessionApi(TeamScopedAPIMixin, APIView):
    openapi_error_statuses = {"post": (503,)}

    @extend_schema(request=None, responses={201: s.PortalSessionOutputSerializer},
                   description="A Stripe Customer Portal session URL for the team.")
    def post(self, request):
        self.require_team_manager()
        url = subscription_services.portal_session_start(team=self.team)
        return Response(s.PortalSessionOutputSerializer({"url": url}).data, status=status.HTTP_201_CREATED)


class InvoiceListApi(TeamScopedAPIMixin, APIView):
    @extend_schema(
        parameters=[OpenApiParameter("page", int, OpenApiParameter.QUERY, required=False)],
        responses=s.InvoicePageSerializer, description="The team's invoices, newest first, with PDF links.",
    )
    def get(self, request):
        from rest_framework.pagination import PageNumberPagination

        paginator = PageNumberPagination()
        page = paginator.paginate_queryset(selectors.team_invoices(team=self.team), request, view=self)
        return paginator.get_paginated_response(s.InvoiceOutputSerializer(page, many=True).data)


def _payment_payload(payment: selectors.PaymentRow, request) -> dict:
    from django.urls import reverse

    return {
        "id": payment.id, "payment_intent": payment.payment_intent, "status": payment.status, "kind": payment.kind,
        "amount": payment.amount_minor, "amount_refunded": payment.amount_refunded_minor,
        "currency": payment.currency, "description": payment.description, "receipt_url": payment.receipt_url or None,
        "invoice": payment.invoice_id, "created": payment.created,
        "card": {"brand": payment.card_brand, "last4": payment.card_last4} if payment.card_last4 else None,
        "refunds": [{"id": r.id, "amount": r.amount_minor, "currency": r.currency, "status": r.status,
                     "reason": r.reason or None, "created": r.created} for r in payment.refunds],
        "receipt_pdf": request.build_absolute_uri(reverse("billing:payment_receipt", args=[payment.id]))
        if payment.has_receipt else None,
    }


def _payment_filters(request):
    """The page's filter form, read from the query string: anything it refuses is a 400 in the error shape."""
    from ..forms_payments import PaymentFilterForm

    form = PaymentFilterForm(request.query_params)
    if not form.is_valid():
        raise ApplicationError("invalid_filter", form.first_error(), http_status=400,
                               extra={"fields": {name: [str(e) for e in errors] for name, errors in form.errors.items()}})
    return form.filters()


_PAYMENT_FILTER_PARAMETERS = [
    OpenApiParameter("status", str, OpenApiParameter.QUERY, required=False,
                     enum=["succeeded", "partially_refunded", "refunded", "pending", "failed"]),
    OpenApiParameter("kind", str, OpenApiParameter.QUERY, required=False,
                     enum=["subscription", "credit_pack", "one_time"]),
    OpenApiParameter("created_gte", str, OpenApiParameter.QUERY, required=False,
                     description="ISO 8601 date (from its first instant) or date-time."),
    OpenApiParameter("created_lte", str, OpenApiParameter.QUERY, required=False,
                     description="ISO 8601 date (up to its last instant) or date-time."),
    OpenApiParameter("ordering", str, OpenApiParameter.QUERY, required=False,
                     enum=["created", "-created", "amount", "-amount"], description="Default: -created."),
    OpenApiParameter("page", int, OpenApiParameter.QUERY, required=False),
]


class PaymentListApi(TeamScopedAPIMixin, APIView):
    @extend_schema(operation_id="v1_payments_list", parameters=_PAYMENT_FILTER_PARAMETERS,
                   responses=s.PaymentPageSerializer,
                   description="The team's charges (one per payment attempt) with refunds and receipt links, newest "
                               "first. An unknown status or kind, or a date that does not parse, answers 400.")
    def get(self, request):
        from rest_framework.pagination import PageNumberPagination

        filters = _payment_filters(request)
        ordering = request.query_params.get("ordering", "-created")
        if ordering.lstrip("-") not in ("created", "amount"):
            raise ValidationError({"ordering": "Order by created or amount (prefix - for descending)."})
        rows = selectors.team_payments(team=self.team, status=filters.status, kind=filters.kind,
                                       created_gte=filters.created_gte, created_lte=filters.created_lte,
                                       ordering=ordering)
        paginator = PageNumberPagination()
        page = paginator.paginate_queryset(rows, request, view=self)
        return paginator.get_paginated_response(
            s.PaymentOutputSerializer([_payment_payload(p, request) for p in page], many=True).data)


class PaymentDetailApi(TeamScopedAPIMixin, APIView):
    @extend_schema(responses=s.PaymentOutputSerializer,
                   parameters=[OpenApiParameter("payment_id", str, OpenApiParameter.PATH,
                                                description="Charge id (ch_...) or payment intent id (pi_...).")],
                   description="One of the team's payments.")
    def get(self, request, payment_id: str):
        payment = selectors.team_payment(team=self.team, payment_id=payment_id)
        if payment is None:
            raise NotFoundError("not_found", _("Payment not found."))
        return Response(s.PaymentOutputSerializer(_payment_payload(payment, request)).data)
