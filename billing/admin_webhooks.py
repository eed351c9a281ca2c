"""Admin for stored Stripe events (BO builds the full console on top). Replay runs the same service as the CLI."""
from django.contrib import admin, messages

from .models import WebhookEvent
from .services.webhooks import webhook_event_replay


@admin.register(WebhookEvent)
class WebhookEventAdmin(admin.ModelAdmin):
    list_display = ("stripe_event_id", "type", "status", "attempts", "source", "stripe_customer_id", "received_at",
                    "processed_at")
    list_filter = ("status", "source", "type", "livemode")
    search_fields = ("stripe_event_id", "stripe_object_id", "stripe_customer_id", "type")
    date_hierarchy = "received_at"
    readonly_fields = [f.name for f in WebhookEvent._meta.fields]
    actions = ["replay_selected"]

    def has_add_permission(self, request) -> bool:
        return False  # events come from Stripe only

    def has_delete_permission(self, request, obj=None) -> bool:
        return False  # the event log is the audit trail of what Stripe told us

    @admin.action(description="Replay selected events", permissions=["change"])
    def replay_selected(self, request, queryset):
        results: dict[str, int] = {}
        for event in queryset.order_by("stripe_created", "id"):
            status = webhook_event_replay(event_id=event.pk)
            results[status] = results.get(status, 0) + 1
        summary = ", ".join(f"{count} {status}" for status, count in sorted(results.items()))
        self.message_user(request, f"Replayed: {summary}", messages.INFO)
