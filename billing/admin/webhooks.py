"""
The webhook console (BO) on top of the billing core's WebhookEvent: a list built for 1,000,000 events (exact-id
search on indexed columns, a type filter that never scans the table, no full counts), a detail page with the
pretty-printed payload, and replay of one or many events through `webhook_event_replay`, permission-checked and
audited by billing.backoffice.support.webhook_events_replay. The only admin of the model.
"""
import json

from django.contrib import admin, messages
from django.http import Http404
from django.shortcuts import get_object_or_404, redirect
from django.template.response import TemplateResponse
from django.urls import path, reverse
from django.utils.html import format_html

from billing.admin.mixins import ExactIdSearchMixin, ReadOnlyAdminMixin, RetryStateColumnsMixin
from billing.backoffice.audit import StaffContext
from billing.backoffice.support import webhook_events_replay
from billing.models import WebhookEvent
from billing.webhooks.registry import HANDLERS
from billing_site.errors import ApplicationError, PermissionDeniedError


class EventTypeFilter(admin.SimpleListFilter):
    """The types the project handles (from the handler registry): no SELECT DISTINCT over a million rows."""

    title = "type"
    parameter_name = "type"

    def lookups(self, request, model_admin):
        return [(t, t) for t in sorted(HANDLERS)]

    def queryset(self, request, queryset):
        return queryset.filter(type=self.value()) if self.value() else queryset


@admin.register(WebhookEvent)
class WebhookConsoleAdmin(RetryStateColumnsMixin, ReadOnlyAdminMixin, ExactIdSearchMixin, admin.ModelAdmin):
    # Read-only: events come from Stripe only and are the record of what Stripe told us; replay is the one action.
    list_display = ["stripe_event_id", "type", "object_id", "status_badge", "attempts", "short_error", "received_at",
                    "processed_at", "customer_link"]
    list_filter = ["status", EventTypeFilter, "source", "livemode"]
    search_fields = ["=stripe_event_id"]  # the search box; the lookups are `exact_search`
    exact_search = [("stripe_event_id", ("evt_",)), ("stripe_customer_id", ("cus_",)), ("stripe_object_id", None)]
    search_help_text = "Exact evt_, object id (ch_, in_, sub_…) or cus_ id."
    list_per_page = 50
    ordering = ["-received_at", "-id"]
    actions = ["replay_selected"]
    change_form_template = "admin/billing/webhookevent/detail.html"

    def get_queryset(self, request):
        # The list never needs the payload: leave the big JSON column in the table.
        qs = super().get_queryset(request)
        return qs.defer("payload") if request.resolver_match and request.resolver_match.url_name.endswith(
            "changelist") else qs

    @admin.display(description="Object")
    def object_id(self, obj):
        return obj.stripe_object_id

    @admin.display(description="Customer")
    def customer_link(self, obj):
        if not obj.stripe_customer_id:
            return ""
        return format_html('<a href="{}?q={}">{}</a>', reverse("admin:billing_customeraccount_changelist"),
                           obj.stripe_customer_id, obj.stripe_customer_id)

    @admin.action(description="Replay selected events")
    def replay_selected(self, request, queryset):
        ids = list(queryset.order_by("stripe_created", "id").values_list("stripe_event_id", flat=True)[:500])
        results = webhook_events_replay(staff=StaffContext.from_request(request), event_ids=ids)
        summary: dict[str, int] = {}
        for outcome in results.values():
            summary[outcome] = summary.get(outcome, 0) + 1
        messages.info(request, "Replayed: " + ", ".join(f"{n} {s}" for s, n in sorted(summary.items())))

    def get_urls(self):
        return [path("<int:pk>/replay/", self.admin_site.admin_view(self.replay_view),
                     name="billing_webhookevent_replay")] + super().get_urls()

    def replay_view(self, request, pk: int):
        if request.method != "POST":
            raise Http404
        event = get_object_or_404(WebhookEvent, pk=pk)
        try:
            results = webhook_events_replay(staff=StaffContext.from_request(request), event_ids=[event.stripe_event_id])
        except PermissionDeniedError:
            raise
        except ApplicationError as error:
            messages.error(request, error.user_message)
        else:
            messages.success(request, f"Replayed {event.stripe_event_id}: {results[event.stripe_event_id]}")
        return redirect("admin:billing_webhookevent_change", pk)

    def change_view(self, request, object_id, form_url="", extra_context=None):
        event = get_object_or_404(WebhookEvent, pk=object_id)
        if not self.has_view_permission(request, event):
            raise Http404
        return TemplateResponse(request, self.change_form_template, {
            **self.admin_site.each_context(request), "opts": self.model._meta, "original": event,
            "title": f"{event.type} {event.stripe_event_id}", "event": event,
            "payload": json.dumps(event.payload, indent=2, sort_keys=True),
            "can_replay": request.user.has_perm("billing.replay_webhooks"),
        })

