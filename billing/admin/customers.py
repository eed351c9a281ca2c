"""
Customer 360: one admin page per team with everything support needs, and the confirmed support actions.
Views are thin: they validate a form and call a service in billing.backoffice; the services check permissions.
"""
import uuid

from django.contrib import admin, messages
from django.db.models import OuterRef, Subquery
from django.http import Http404
from django.shortcuts import get_object_or_404, redirect
from django.template.response import TemplateResponse
from django.urls import path, reverse
from django.utils.html import format_html
from djstripe import models as djstripe_models

from billing.admin.forms import (
    CancelSubscriptionForm,
    ConfirmForm,
    CreditsForm,
    ExtendTrialForm,
    ReplayEventsForm,
    ResendReceiptForm,
)
from billing.admin.dunning import dunning_perms
from billing.admin.mixins import FastListMixin, ReadOnlyAdminMixin, admin_refusal
from billing.backoffice import selectors, support
from billing.backoffice.audit import StaffContext
from billing.models import CustomerAccount
from billing_site.errors import ApplicationError, PermissionDeniedError


@admin.register(CustomerAccount)
class CustomerAccountAdmin(ReadOnlyAdminMixin, FastListMixin, admin.ModelAdmin):
    # Read-only: teams are created by signup, and the 360 page changes things only through the actions below.
    list_display = ["name", "billing_email", "stripe_customer", "created", "open_360"]
    search_fields = ["name"]
    search_help_text = ("Team name, billing or member email, any Stripe id: cus_, sub_, in_, ch_, pi_, re_, cn_, "
                        "evt_ (exact), or a card's last 4 digits and an amount: “4242 49.00”.")
    list_per_page = 50
    ordering = ["-id"]
    change_form_template = "admin/billing/customeraccount/customer_360.html"

    def get_queryset(self, request):
        customer_id = (djstripe_models.Customer.objects.filter(subscriber=OuterRef("pk"))
                       .order_by("-created").values("id")[:1])
        return super().get_queryset(request).annotate(stripe_customer_id=Subquery(customer_id))

    def get_search_results(self, request, queryset, search_term):
        term = (search_term or "").strip()
        if not term:
            return queryset, False
        team_ids = selectors.team_ids_for_stripe_id(term=term)
        if team_ids is None:
            team_ids = selectors.team_ids_for_card_and_amount(term=term)
        if team_ids is not None:
            return queryset.filter(pk__in=team_ids), False
        return queryset.filter(selectors.team_search_filter(term=term)), False

    @admin.display(description="Stripe customer")
    def stripe_customer(self, obj):
        if not obj.stripe_customer_id:
            return "—"
        url = reverse("admin:djstripe_customer_changelist") + f"?q={obj.stripe_customer_id}"
        return format_html('<a href="{}">{}</a>', url, obj.stripe_customer_id)

    @admin.display(description="")
    def open_360(self, obj):
        return format_html('<a class="button" href="{}">Open 360</a>',
                           reverse("admin:billing_customeraccount_change", args=[obj.pk]))

    # ------------------------------------------------------------------ the 360 page
    def change_view(self, request, object_id, form_url="", extra_context=None):
        if not str(object_id).isdigit():
            raise Http404("No such customer.")
        # Team, its Stripe customer id and its members in one query (every team has an owner); the page's query
        # budget is tight for staff who are not superusers (Django adds two permission lookups for them).
        memberships = selectors.team_memberships_with_team(team_id=int(object_id))
        if memberships:
            team = memberships[0].team
        else:
            team = self.get_object(request, object_id)
        if team is None or not self.has_view_permission(request, team):
            raise Http404("No such customer.")
        context = {
            **self.admin_site.each_context(request),
            "opts": self.model._meta,
            "title": f"Customer 360: {team.name}",
            "original": team,
            "has_view_permission": True,
            **selectors.customer_360(team=team, memberships=memberships if memberships else None),
            "perms_backoffice": _backoffice_perms(request.user),
            "perms_dunning": dunning_perms(request.user),
            "action_token": uuid.uuid4().hex,
        }
        return TemplateResponse(request, self.change_form_template, context)

    # ------------------------------------------------------------------ support actions
    def get_urls(self):
        wrap = self.admin_site.admin_view
        return [
            path("<int:team_id>/action/<str:action>/", wrap(self.action_view),
                 name="billing_customeraccount_action"),
            path("<int:team_id>/refund/", wrap(self.refund_pick_view), name="billing_customeraccount_refund"),
        ] + super().get_urls()

    def refund_pick_view(self, request, team_id: int):
        """Step 1 of a refund from the 360 page: choose the payment (step 2 is the refund form, then done)."""
        team = get_object_or_404(CustomerAccount, pk=team_id)
        if not self.has_view_permission(request, team):
            raise Http404
        back = reverse("admin:billing_customeraccount_change", args=[team.pk])
        if not request.user.has_perm("billing.request_refund"):
            messages.error(request, "You cannot request refunds.")
            return redirect(back)
        payments = selectors.team_refundable_payments(team=team)
        if request.method == "POST":
            charge_id = request.POST.get("charge_id") or ""
            if any(row.charge.id == charge_id for row in payments):
                return redirect(reverse("admin:billing_refundrequest_new", args=[charge_id]) + "?from=360")
            messages.error(request, "Choose one of the payments below.")
        return TemplateResponse(request, "admin/billing/customeraccount/refund_pick.html", {
            **self.admin_site.each_context(request), "opts": self.model._meta,
            "title": f"Refund a payment: {team.name}", "team": team, "payments": payments, "back": back,
        })

    def action_view(self, request, team_id: int, action: str):
        team = get_object_or_404(CustomerAccount, pk=team_id)
        if not self.has_view_permission(request, team) or action not in ACTIONS:
            raise Http404
        spec = ACTIONS[action]
        context = selectors.customer_360(team=team) if spec.get("needs_context") else {}
        form_kwargs = spec.get("form_kwargs", lambda ctx: {})(context)
        form = spec["form"](request.POST or None, **form_kwargs)
        back = reverse("admin:billing_customeraccount_change", args=[team.pk])
        if request.method == "POST" and form.is_valid():
            try:
                message = spec["run"](StaffContext.from_request(request), team, form.cleaned_data)
            except PermissionDeniedError as error:
                # Answered inside the admin (the refusal is already in the audit trail), not by the site's 403 page.
                return admin_refusal(request, self.admin_site, message=error.user_message, back=back)
            except ApplicationError as error:
                form.add_error(None, error.user_message)
            else:
                messages.success(request, message)
                return redirect(back)
        return TemplateResponse(request, "admin/billing/customeraccount/action.html", {
            **self.admin_site.each_context(request),
            "opts": self.model._meta, "title": f"{spec['title']}: {team.name}", "team": team, "form": form,
            "back": back, "action": action, "danger": spec.get("danger", False), "explain": spec.get("explain", ""),
        })


def _backoffice_perms(user) -> dict:
    names = ["request_refund", "approve_refund", "grant_credits", "remove_credits", "resync_customer",
             "cancel_subscription_at_period_end", "cancel_subscription_now", "extend_trial", "replay_webhooks",
             "resend_receipt"]
    return {name: user.has_perm(f"billing.{name}") for name in names}


def _subscription_ids(ctx):
    return {"subscriptions": [row["subscription"].id for row in ctx.get("subscriptions", [])]}


def _replayable_events(ctx):
    return {"events": [(event.stripe_event_id, f"{event.stripe_event_id} {event.type} ({event.status})")
                       for event in ctx.get("webhook_events", [])]}


ACTIONS = {
    "grant_credits": {
        "title": "Grant credits", "form": CreditsForm,
        "run": lambda staff, team, data: (support.team_credits_grant(
            staff=staff, team=team, amount=data["amount"], note=data["note"], action_token=data["action_token"])
            and f"Granted {data['amount']} credits."),
    },
    "remove_credits": {
        "title": "Remove credits", "form": CreditsForm, "danger": True,
        "run": lambda staff, team, data: (support.team_credits_remove(
            staff=staff, team=team, amount=data["amount"], note=data["note"], action_token=data["action_token"])
            and f"Removed {data['amount']} credits."),
    },
    "resync": {
        "title": "Resync from Stripe", "form": ConfirmForm,
        "explain": "Fetches the customer, subscriptions, invoices, payments from Stripe into the local mirror.",
        "run": lambda staff, team, data: f"Resynced: {support.team_resync(staff=staff, team=team)}",
    },
    "cancel_subscription": {
        "title": "Cancel subscription", "form": CancelSubscriptionForm, "danger": True, "needs_context": True,
        "form_kwargs": _subscription_ids,
        "run": lambda staff, team, data: (support.subscription_cancel(
            staff=staff, team=team, subscription_id=data["subscription_id"],
            at_period_end=data["when"] == "period_end", note=data["note"])
            and f"Subscription {data['subscription_id']} canceled "
                f"{'at period end' if data['when'] == 'period_end' else 'now'}."),
    },
    "extend_trial": {
        "title": "Extend trial", "form": ExtendTrialForm, "needs_context": True, "form_kwargs": _subscription_ids,
        "run": lambda staff, team, data: (support.subscription_trial_extend(
            staff=staff, team=team, subscription_id=data["subscription_id"], days=data["days"], note=data["note"])
            and f"Trial extended by {data['days']} days."),
    },
    "resend_receipt": {
        "title": "Resend receipt", "form": ResendReceiptForm, "needs_context": True,
        "form_kwargs": lambda ctx: {"charges": selectors.receipt_choices(payments=ctx.get("payments", []))},
        "run": lambda staff, team, data: (support.receipt_resend(
            staff=staff, team=team, charge_id=data["charge_id"], action_token=data["action_token"])
            and f"Receipt sent to {team.billing_email}."),
    },
    "replay_events": {
        "title": "Replay webhook events", "form": ReplayEventsForm, "needs_context": True,
        "form_kwargs": _replayable_events,
        "run": lambda staff, team, data: "Replayed: " + ", ".join(
            f"{k}: {v}" for k, v in support.webhook_events_replay(
                staff=staff, event_ids=data["event_ids"], team=team).items()),
    },
}
