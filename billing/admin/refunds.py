"""Refund requests in the admin: the request form (from a payment), approve / reject / retry / cancel, the list."""
from django.contrib import admin, messages
from django.http import Http404
from django.shortcuts import get_object_or_404, redirect
from django.template.response import TemplateResponse
from django.urls import path, reverse
from django.utils.html import format_html

from billing.admin.forms import DecisionForm, RefundRequestForm
from billing.admin.mixins import ExactIdSearchMixin, ReadOnlyAdminMixin, team_360_link
from billing.backoffice import refunds as refund_services
from billing.backoffice.audit import StaffContext
from billing.models import RefundRequest
from billing_site.errors import ApplicationError, PermissionDeniedError
from billing_site.money import minor_to_decimal

DECISIONS = {
    "approve": (refund_services.refund_request_approve, "Approved: the refund is being sent to Stripe."),
    "reject": (refund_services.refund_request_reject, "Rejected."),
    "retry": (refund_services.refund_request_retry, "Sent to Stripe again."),
    "cancel": (refund_services.refund_request_cancel, "Canceled."),
}


@admin.register(RefundRequest)
class RefundRequestAdmin(ReadOnlyAdminMixin, ExactIdSearchMixin, admin.ModelAdmin):
    # Read-only: a request is opened from a payment (the request form), never blank, and changes state only through
    # the decisions below.
    list_display = ["id", "team_link", "charge_link", "amount", "status_badge", "reason", "requested_by",
                    "approved_by", "created"]
    list_filter = ["status", "reason", "currency"]
    search_fields = ["=stripe_charge_id"]  # the search box; the lookups are `exact_search`
    exact_search = [("stripe_charge_id", ("ch_", "py_")), ("stripe_refund_id", ("re_",)),
                    ("stripe_payment_intent_id", ("pi_",)), ("stripe_customer_id", ("cus_",)),
                    ("team__name__icontains", None)]
    list_select_related = ["team", "requested_by", "approved_by"]
    list_per_page = 50
    actions = ["approve_selected", "reject_selected", "retry_selected"]
    change_form_template = "admin/billing/refundrequest/detail.html"

    @admin.display(description="Team", ordering="team__name")
    def team_link(self, obj):
        return team_360_link(obj.team, empty="—")

    @admin.display(description="Charge")
    def charge_link(self, obj):
        return format_html('<a href="{}?q={}"><code>{}</code></a>', reverse("admin:djstripe_charge_changelist"),
                           obj.stripe_charge_id, obj.stripe_charge_id)

    @admin.display(description="Amount", ordering="amount_minor")
    def amount(self, obj):
        return obj.amount_display

    @admin.display(description="Status", ordering="status")
    def status_badge(self, obj):
        return format_html('<span class="bo-status {}">{}</span>', obj.status, obj.get_status_display())

    # ------------------------------------------------------------------ bulk decisions (each through the service)
    def _bulk(self, request, queryset, decision):
        service, _ = DECISIONS[decision]
        staff = StaffContext.from_request(request)
        done = 0
        for refund_request in queryset.order_by("pk"):
            try:
                service(staff=staff, refund_request_id=refund_request.pk)
                done += 1
            except ApplicationError as error:
                messages.error(request, f"#{refund_request.pk}: {error.user_message}")
        if done:
            messages.success(request, f"{decision.title()}: {done} request(s).")

    @admin.action(description="Approve selected refund requests")
    def approve_selected(self, request, queryset):
        self._bulk(request, queryset, "approve")

    @admin.action(description="Reject selected refund requests")
    def reject_selected(self, request, queryset):
        self._bulk(request, queryset, "reject")

    @admin.action(description="Retry selected failed refunds")
    def retry_selected(self, request, queryset):
        self._bulk(request, queryset, "retry")

    # ------------------------------------------------------------------ pages
    def get_urls(self):
        wrap = self.admin_site.admin_view
        return [
            path("new/<str:charge_id>/", wrap(self.request_view), name="billing_refundrequest_new"),
            path("<int:pk>/decide/<str:decision>/", wrap(self.decide_view), name="billing_refundrequest_decide"),
        ] + super().get_urls()

    def change_view(self, request, object_id, form_url="", extra_context=None):
        refund_request = get_object_or_404(
            RefundRequest.objects.select_related("team", "requested_by", "approved_by", "decided_by"), pk=object_id)
        if not self.has_view_permission(request, refund_request):
            raise Http404
        user = request.user
        can_approve = user.has_perm("billing.approve_refund")
        context = {
            **self.admin_site.each_context(request), "opts": self.model._meta, "original": refund_request,
            "title": f"Refund request #{refund_request.pk}", "rr": refund_request,
            "decision_form": DecisionForm(),
            "can_approve": can_approve and refund_request.status == RefundRequest.Status.REQUESTED
            and refund_request.requested_by_id != user.pk,
            "own_request": refund_request.requested_by_id == user.pk,
            "can_reject": can_approve and refund_request.status == RefundRequest.Status.REQUESTED,
            "can_retry": can_approve and refund_request.status == RefundRequest.Status.FAILED
            and not refund_request.stripe_refund_id,
            "can_cancel": refund_request.status in (RefundRequest.Status.REQUESTED, RefundRequest.Status.FAILED)
            and not refund_request.stripe_refund_id and (can_approve or refund_request.requested_by_id == user.pk),
            "threshold": refund_services.refund_approval_threshold(currency=refund_request.currency),
        }
        return TemplateResponse(request, self.change_form_template, context)

    def decide_view(self, request, pk: int, decision: str):
        if request.method != "POST" or decision not in DECISIONS:
            raise Http404
        refund_request = get_object_or_404(RefundRequest, pk=pk)
        if not self.has_view_permission(request, refund_request):
            raise Http404
        form = DecisionForm(request.POST)
        note = form.cleaned_data["note"] if form.is_valid() else ""
        service, done_message = DECISIONS[decision]
        try:
            service(staff=StaffContext.from_request(request), refund_request_id=refund_request.pk, note=note)
        except PermissionDeniedError:
            raise
        except ApplicationError as error:
            messages.error(request, error.user_message)
        else:
            messages.success(request, done_message)
        return redirect("admin:billing_refundrequest_change", refund_request.pk)

    def request_view(self, request, charge_id: str):
        """The refund form: amount defaults to what is still refundable, in the charge's currency."""
        if not request.user.has_perm("billing.view_refundrequest"):
            raise PermissionDeniedError("permission_denied", "You cannot see refunds.")
        try:
            charge = refund_services.charge_for_refund(charge_id=charge_id, refresh=request.method == "GET")
        except ApplicationError as error:
            if error.http_status == 404:
                raise Http404(error.user_message) from error
            raise
        facts = refund_services.charge_refund_facts(charge=charge)
        initial = {"amount": str(minor_to_decimal(facts.refundable_minor, facts.currency)),
                   "currency": facts.currency, "reason": RefundRequest.Reason.REQUESTED_BY_CUSTOMER}
        form = RefundRequestForm(request.POST or None, initial=initial)
        if request.method == "POST" and form.is_valid():
            try:
                refund_request = refund_services.refund_request_create(
                    staff=StaffContext.from_request(request), charge_id=charge.id,
                    amount_minor=form.cleaned_data["amount_minor"], currency=form.cleaned_data["currency"],
                    reason=form.cleaned_data["reason"], note=form.cleaned_data["note"])
            except PermissionDeniedError:
                raise
            except refund_services.RefundInputError as error:
                field = "currency" if error.code == "currency_mismatch" else (
                    None if error.code in ("charge_not_refundable", "charge_disputed") else "amount")
                form.add_error(field, error.user_message)
            except ApplicationError as error:
                form.add_error(None, error.user_message)
            else:
                if refund_request.status == RefundRequest.Status.REQUESTED:
                    messages.success(request, f"Refund request #{refund_request.pk} created: it now needs approval "
                                              "by someone else with the approve permission.")
                else:
                    messages.success(request, f"Refund request #{refund_request.pk} approved and sent to Stripe.")
                return redirect("admin:billing_refundrequest_change", refund_request.pk)
        return TemplateResponse(request, "admin/billing/refundrequest/request_form.html", {
            **self.admin_site.each_context(request), "opts": self.model._meta,
            "title": f"Refund {charge.id}", "form": form, "facts": facts, "charge": charge,
            "threshold": refund_services.refund_approval_threshold(currency=facts.currency),
        })
