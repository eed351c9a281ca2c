"""Refund requests in the admin: the request form (from a payment), approve / reject / retry / cancel, the list."""
import threading

from django.contrib import admin, messages
from django.http import Http404
from django.shortcuts import get_object_or_404, redirect
from django.template.response import TemplateResponse
from django.urls import path, reverse
from django.utils.html import format_html

from billing.admin.dunning import safe_next
from billing.admin.forms import DecisionForm, RefundRequestForm, minor_to_input
from billing.admin.mixins import (ExactIdSearchMixin, ReadOnlyAdminMixin, admin_refusal, mirror_search_link,
                                  team_360_link)
from billing.backoffice import refunds as refund_services
from billing.backoffice.audit import StaffContext
from billing.models import CreditNote, RefundRequest
from billing_site.errors import ApplicationError, PermissionDeniedError
from billing_site.money import format_money

_list_request = threading.local()


class StatusFilter(admin.SimpleListFilter):
    """The list opens on the requests waiting for approval; "All" is an explicit choice (a search looks at all)."""

    title = "status"
    parameter_name = "status__exact"

    def lookups(self, request, model_admin):
        return [("all", "All"), *RefundRequest.Status.choices]

    def value(self):
        value = super().value()
        if value is None and not self.request_has_search:
            return RefundRequest.Status.REQUESTED
        return value

    def __init__(self, request, params, model, model_admin):
        self.request_has_search = bool(request.GET.get("q"))
        super().__init__(request, params, model, model_admin)

    def choices(self, changelist):
        for lookup, title in self.lookup_choices:
            yield {"selected": self.value() == str(lookup) or (lookup == "all" and self.value() is None),
                   "query_string": changelist.get_query_string({self.parameter_name: lookup}),
                   "display": title}

    def queryset(self, request, queryset):
        value = self.value()
        if value and value != "all":
            return queryset.filter(status=value)
        return queryset


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
                    "approved_by", "created", "queue_approve"]
    list_filter = [StatusFilter, "reason", "currency"]
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
        return mirror_search_link(model="charge", stripe_id=obj.stripe_charge_id)

    @admin.display(description="Amount", ordering="amount_minor")
    def amount(self, obj):
        return obj.amount_display

    @admin.display(description="")
    def queue_approve(self, obj):
        """Approval in one step from the queue (the service still checks permission and four eyes)."""
        request = getattr(_list_request, "request", None)
        if (request is None or obj.status != RefundRequest.Status.REQUESTED
                or not request.user.has_perm("billing.approve_refund") or obj.requested_by_id == request.user.pk):
            return ""
        from django.middleware.csrf import get_token

        return format_html(
            '<form method="post" class="bo-inline" action="{}"><input type="hidden" name="csrfmiddlewaretoken" '
            'value="{}"><input type="hidden" name="next" value="{}"><button type="submit" class="button default '
            'bo-approve" data-rr="{}">Approve</button></form>',
            reverse("admin:billing_refundrequest_decide", args=[obj.pk, "approve"]), get_token(request),
            request.get_full_path(), obj.pk)

    def changelist_view(self, request, extra_context=None):
        # The per-row Approve button depends on who looks (permission, requester): keep the request for this
        # thread while the list renders (the admin instance is shared between threads).
        _list_request.request = request
        try:
            response = super().changelist_view(request, extra_context)
            if hasattr(response, "render") and not getattr(response, "is_rendered", True):
                response.render()
            return response
        finally:
            _list_request.request = None

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
            "threshold_display": format_money(
                refund_services.refund_approval_threshold(currency=refund_request.currency), refund_request.currency),
            "charge_amount_display": format_money(refund_request.charge_amount_minor, refund_request.currency),
            "credit_note": CreditNote.objects.filter(stripe_id=refund_request.stripe_credit_note_id).first()
            if refund_request.stripe_credit_note_id else None,
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
        back = safe_next(request, reverse("admin:billing_refundrequest_change", args=[refund_request.pk]))
        try:
            service(staff=StaffContext.from_request(request), refund_request_id=refund_request.pk, note=note)
        except PermissionDeniedError as error:
            return admin_refusal(request, self.admin_site, message=error.user_message, back=back)
        except ApplicationError as error:
            messages.error(request, f"#{refund_request.pk}: {error.user_message}")
        else:
            refund_request.refresh_from_db()
            messages.success(request, f"#{refund_request.pk} ({refund_request.amount_display}): {done_message}")
        return redirect(back)

    def request_view(self, request, charge_id: str):
        """
        Step 2 of a refund (step 1 is choosing the payment on the 360 page): amount (default: what is still
        refundable, in the charge's currency, with the staff locale's decimal separator), reason, note. A payment of
        a subscription invoice is refunded through a credit note on that invoice.
        """
        if not request.user.has_perm("billing.view_refundrequest"):
            return admin_refusal(request, self.admin_site, message="You cannot see refunds.",
                                 back=reverse("admin:index"))
        try:
            charge = refund_services.charge_for_refund(charge_id=charge_id, refresh=request.method == "GET")
        except ApplicationError as error:
            if error.http_status == 404:
                raise Http404(error.user_message) from error
            raise
        facts = refund_services.charge_refund_facts(charge=charge)
        invoice_id = refund_services.charge_invoice_id(charge=charge)
        language = getattr(request, "LANGUAGE_CODE", "") or "en"
        initial = {"amount": minor_to_input(facts.refundable_minor, facts.currency, language),
                   "currency": facts.currency, "reason": RefundRequest.Reason.REQUESTED_BY_CUSTOMER}
        form = RefundRequestForm(request.POST or None, initial=initial, currency=facts.currency,
                                 example=minor_to_input(4990, facts.currency, language), credit_note=bool(invoice_id))
        back = (reverse("admin:billing_customeraccount_change", args=[facts.team.pk]) if facts.team
                else reverse("admin:billing_refundrequest_changelist"))
        if request.method == "POST" and form.is_valid():
            try:
                refund_request = refund_services.refund_request_create(
                    staff=StaffContext.from_request(request), charge_id=charge.id,
                    amount_minor=form.cleaned_data["amount_minor"], currency=form.cleaned_data["currency"],
                    reason=form.cleaned_data["reason"], note=form.cleaned_data["note"], invoice_id=invoice_id,
                    credit_to_balance=bool(form.cleaned_data.get("credit_to_balance")))
            except PermissionDeniedError as error:
                return admin_refusal(request, self.admin_site, message=error.user_message, back=back)
            except refund_services.RefundInputError as error:
                field = "currency" if error.code == "currency_mismatch" else (
                    None if error.code in ("charge_not_refundable", "charge_disputed", "invoice_mismatch",
                                           "balance_needs_invoice") else "amount")
                form.add_error(None if field == "currency" else field, error.user_message)
            except ApplicationError as error:
                form.add_error(None, error.user_message)
            else:
                what = "Credit note" if refund_request.is_credit_note else "Refund"
                if refund_request.status == RefundRequest.Status.REQUESTED:
                    messages.success(request, f"{what} request #{refund_request.pk} for "
                                              f"{refund_request.amount_display} created: it now needs approval by "
                                              "someone else with the approve permission.")
                else:
                    messages.success(request, f"{what} request #{refund_request.pk} for "
                                              f"{refund_request.amount_display} approved and sent to Stripe.")
                return redirect("admin:billing_refundrequest_change", refund_request.pk)
        return TemplateResponse(request, "admin/billing/refundrequest/request_form.html", {
            **self.admin_site.each_context(request), "opts": self.model._meta,
            "title": f"Refund {facts.amount_display} payment", "form": form, "facts": facts, "charge": charge,
            "invoice_id": invoice_id, "back": back, "from_360": request.GET.get("from") == "360",
            "threshold_display": format_money(
                refund_services.refund_approval_threshold(currency=facts.currency), facts.currency),
        })
