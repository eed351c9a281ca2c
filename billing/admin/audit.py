"""The audit trail: read-only for everyone (superusers included), filterable, exportable as CSV, chain-verifiable."""
import csv

from django.contrib import admin
from django.db import transaction
from django.http import Http404, StreamingHttpResponse
from django.template.response import TemplateResponse
from django.urls import path

from accounts.models import User
from billing.admin.mixins import ExactIdSearchMixin, ReadOnlyAdminMixin, team_360_link
from billing.backoffice.audit import StaffContext, audit_chain_verify, audit_record, staff_require
from billing.models import AuditEntry

CSV_COLUMNS = ["id", "created", "actor_email", "action", "outcome", "target_type", "target_id", "team_id", "before",
               "after", "reason", "request_id", "ip_address", "previous_hash", "entry_hash"]


class ActorFilter(admin.SimpleListFilter):
    """Staff members only (a RelatedFieldListFilter would list every user of the site)."""

    title = "actor"
    parameter_name = "actor"

    def lookups(self, request, model_admin):
        staff = User.objects.filter(is_staff=True).order_by("email").values_list("pk", "email")[:200]
        return [("system", "system (tasks, webhooks)"), *[(str(pk), email) for pk, email in staff]]

    def queryset(self, request, queryset):
        if self.value() == "system":
            return queryset.filter(actor__isnull=True)
        if self.value():
            return queryset.filter(actor_id=self.value())
        return queryset


class _Echo:
    def write(self, value):
        return value


@admin.register(AuditEntry)
class AuditEntryAdmin(ReadOnlyAdminMixin, ExactIdSearchMixin, admin.ModelAdmin):
    # Append-only: nobody adds, edits or deletes through the admin, superusers included (and so no bulk actions).
    # At 1280 px the key columns (id, when, who, action, outcome) stay on screen and never wrap; the rest give way.
    list_display = ["id", "when", "actor_email", "action", "outcome", "team_link", "target", "short_reason"]
    list_filter = [ActorFilter, "action", "outcome", ("created", admin.DateFieldListFilter)]
    search_fields = ["=target_id"]  # the search box; the lookups are `exact_search`
    exact_search = [("target_id", None), ("request_id", None), ("actor_email__iexact", None)]
    list_select_related = ["team"]
    list_per_page = 100
    readonly_fields = [f.name for f in AuditEntry._meta.fields]
    change_list_template = "admin/billing/auditentry/change_list.html"

    @admin.display(description="When", ordering="created")
    def when(self, obj):
        from django.utils import timezone

        return timezone.localtime(obj.created).strftime("%Y-%m-%d %H:%M")

    @admin.display(description="Target")
    def target(self, obj):
        return f"{obj.target_type}:{obj.target_id}"

    @admin.display(description="Team")
    def team_link(self, obj):
        return team_360_link(obj.team)

    @admin.display(description="Reason")
    def short_reason(self, obj):
        return (obj.reason[:60] + "…") if len(obj.reason) > 60 else obj.reason

    def get_urls(self):
        wrap = self.admin_site.admin_view
        return [
            path("export.csv", wrap(self.export_view), name="billing_auditentry_export"),
            path("verify/", wrap(self.verify_view), name="billing_auditentry_verify"),
        ] + super().get_urls()

    def export_view(self, request):
        """CSV of the entries the current filters select (same query string as the list)."""
        if not self.has_view_permission(request):
            raise Http404
        staff = StaffContext.from_request(request)
        staff_require(staff=staff, permission="billing.export_auditentry", attempted="audit_export",
                      target_type="audit_trail", target_id="*")
        changelist = self.get_changelist_instance(request)
        queryset = changelist.get_queryset(request).order_by("id")
        with transaction.atomic():
            audit_record(staff=staff, action=AuditEntry.Action.AUDIT_EXPORTED, target_type="audit_trail",
                         target_id="*", after={"filters": dict(request.GET.items())})
        writer = csv.writer(_Echo())

        def rows():
            yield writer.writerow(CSV_COLUMNS)
            for entry in queryset.iterator(chunk_size=2000):
                yield writer.writerow([getattr(entry, column) for column in CSV_COLUMNS])

        response = StreamingHttpResponse(rows(), content_type="text/csv")
        response["Content-Disposition"] = 'attachment; filename="audit-trail.csv"'
        return response

    def verify_view(self, request):
        if not self.has_view_permission(request):
            raise Http404
        return TemplateResponse(request, "admin/billing/auditentry/verify.html", {
            **self.admin_site.each_context(request), "opts": self.model._meta, "title": "Audit chain check",
            "result": audit_chain_verify(),
        })
