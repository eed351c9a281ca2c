"""
Dunning: subscriptions past due or unpaid, each with its failed invoice (attempt count, Stripe's next retry), the
customer's card, and the actions: retry payment now, email a card-update link, pause collection, cancel. The same
buttons appear on the Customer 360 page. Views are thin: the services in billing.backoffice.dunning check the
permission (403 + audit) and audit the change.
"""
import uuid

from django.contrib import admin, messages
from django.http import Http404, HttpResponseNotAllowed
from django.shortcuts import redirect
from django.template.response import TemplateResponse
from django.urls import path, reverse
from django.utils.http import url_has_allowed_host_and_scheme
from djstripe import models as djstripe_models

from billing.admin.mixins import ReadOnlyAdminMixin, admin_refusal
from billing.backoffice import dunning, selectors
from billing.backoffice.audit import StaffContext
from billing.models import DunningSubscription
from billing_site.errors import ApplicationError, PermissionDeniedError

DUNNING_PERMISSIONS = ["retry_invoice_payment", "send_payment_update_email", "pause_subscription",
                       "cancel_subscription_at_period_end", "cancel_subscription_now"]


def dunning_perms(user) -> dict:
    return {name: user.has_perm(f"billing.{name}") for name in DUNNING_PERMISSIONS}


def safe_next(request, default: str) -> str:
    target = request.POST.get("next") or request.GET.get("next") or ""
    if target and url_has_allowed_host_and_scheme(target, allowed_hosts={request.get_host()},
                                                  require_https=request.is_secure()):
        return target
    return default


def _run(staff, team, subscription, action: str, request) -> str:
    if action == "retry":
        invoice_id = request.POST.get("invoice_id") or (subscription.stripe_data or {}).get("latest_invoice") or ""
        data = dunning.invoice_payment_retry(staff=staff, team=team, invoice_id=invoice_id)
        return f"Invoice {invoice_id} paid ({data.get('status')})."
    if action == "email":
        to = dunning.payment_update_email_send(staff=staff, team=team, subscription_id=subscription.id,
                                               action_token=request.POST.get("action_token") or "")
        return f"Card-update link emailed to {to}."
    if action == "pause":
        dunning.subscription_pause(staff=staff, team=team, subscription_id=subscription.id,
                                   note=request.POST.get("note") or "")
        return f"Payment collection paused for {subscription.id}: new invoices are voided until it is resumed."
    raise Http404


@admin.register(DunningSubscription)
class DunningAdmin(ReadOnlyAdminMixin, admin.ModelAdmin):
    change_list_template = "admin/billing/dunning/list.html"

    def get_urls(self):
        wrap = self.admin_site.admin_view
        return [
            path("<str:subscription_id>/do/<str:action>/", wrap(self.action_view),
                 name="billing_dunningsubscription_action"),
        ] + super().get_urls()

    def changelist_view(self, request, extra_context=None):
        if not self.has_view_permission(request):
            raise Http404
        return TemplateResponse(request, self.change_list_template, {
            **self.admin_site.each_context(request), "opts": self.model._meta,
            "title": "Dunning: subscriptions past due or unpaid", "cases": selectors.dunning_cases(),
            "perms_dunning": dunning_perms(request.user), "action_token": uuid.uuid4().hex,
        })

    def change_view(self, request, object_id, form_url="", extra_context=None):
        subscription = (djstripe_models.Subscription.objects.select_related("customer")
                        .filter(djstripe_id=object_id if str(object_id).isdigit() else -1).first())
        if subscription is None or subscription.customer is None or not subscription.customer.subscriber_id:
            raise Http404
        return redirect("admin:billing_customeraccount_change", subscription.customer.subscriber_id)

    def action_view(self, request, subscription_id: str, action: str):
        if request.method != "POST":
            return HttpResponseNotAllowed(["POST"])
        if not self.has_view_permission(request):
            raise Http404
        subscription = (djstripe_models.Subscription.objects.select_related("customer__subscriber")
                        .filter(id=subscription_id).first())
        if subscription is None or subscription.customer is None or subscription.customer.subscriber is None:
            raise Http404
        back = safe_next(request, reverse("admin:billing_dunningsubscription_changelist"))
        try:
            message = _run(StaffContext.from_request(request), subscription.customer.subscriber, subscription,
                           action, request)
        except PermissionDeniedError as error:
            return admin_refusal(request, self.admin_site, message=error.user_message, back=back)
        except ApplicationError as error:
            # Refusals (403, already audited) and Stripe's answers are shown inside the admin, on the same page.
            messages.error(request, error.user_message)
        else:
            messages.success(request, message)
        return redirect(back)
