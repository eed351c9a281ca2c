"""Credit notes (the project's mirror of Stripe's, see billing/models/credit_notes.py): a read-only list."""
from django.contrib import admin
from django.urls import reverse
from django.utils.html import format_html

from billing.admin.mixins import ExactIdSearchMixin, ReadOnlyAdminMixin, mirror_search_link, team_360_link
from billing.models import CreditNote


@admin.register(CreditNote)
class CreditNoteAdmin(ReadOnlyAdminMixin, ExactIdSearchMixin, admin.ModelAdmin):
    # Read-only: a credit note is issued from a refund request (four eyes) and mirrored from Stripe.
    list_display = ["number_display", "stripe_created", "team_link", "invoice_link", "total", "settled_as", "status",
                    "request_link"]
    list_filter = ["status", "currency"]
    search_fields = ["=stripe_id"]  # the search box; the lookups are `exact_search`
    search_help_text = "Exact cn_, in_, cus_ or re_ id."
    exact_search = [("stripe_id", ("cn_",)), ("stripe_invoice_id", ("in_",)), ("stripe_customer_id", ("cus_",)),
                    ("stripe_refund_id", ("re_",))]
    list_select_related = ["team"]
    list_per_page = 50
    ordering = ["-stripe_created", "-id"]

    @admin.display(description="Credit note", ordering="stripe_id")
    def number_display(self, obj):
        return format_html("<code>{}</code><br><span class='bo-muted'>{}</span>", obj.number or obj.stripe_id,
                           obj.stripe_id)

    @admin.display(description="Team")
    def team_link(self, obj):
        return team_360_link(obj.team, empty="—")

    @admin.display(description="Invoice")
    def invoice_link(self, obj):
        return mirror_search_link(model="invoice", stripe_id=obj.stripe_invoice_id)

    @admin.display(description="Total", ordering="total_minor")
    def total(self, obj):
        return obj.total_display

    @admin.display(description="Settled as")
    def settled_as(self, obj):
        if obj.credit_minor:
            return f"customer balance {obj.credit_display}"
        if obj.refund_minor:
            return f"card refund {obj.refund_display}"
        return "invoice reduced"

    @admin.display(description="Request")
    def request_link(self, obj):
        if not obj.refund_request_id:
            return "—"
        return format_html('<a href="{}">#{}</a>', reverse("admin:billing_refundrequest_change",
                                                           args=[obj.refund_request_id]), obj.refund_request_id)
