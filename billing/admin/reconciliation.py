"""Reconciliation in the admin: runs, the drift they found, and a repair (resync) action per row."""
from django.contrib import admin, messages
from django.shortcuts import redirect
from django.urls import path, reverse
from django.utils.html import format_html

from billing.admin.mixins import FastListMixin, ReadOnlyAdminMixin, team_360_link
from billing.backoffice.audit import StaffContext
from billing.backoffice.reconciliation import reconciliation_drift_repair
from billing.models import ReconciliationDrift, ReconciliationRun
from billing_site.errors import ApplicationError, PermissionDeniedError


@admin.register(ReconciliationRun)
class ReconciliationRunAdmin(ReadOnlyAdminMixin, FastListMixin, admin.ModelAdmin):
    # Runs and drift are written by the reconciliation service; staff start a run or repair a drift, nothing else.
    list_display = ["id", "started_at", "finished_at", "status", "drift_count", "triggered_by", "since"]
    list_filter = ["status", "triggered_by"]
    readonly_fields = [f.name for f in ReconciliationRun._meta.fields]
    change_list_template = "admin/billing/reconciliationrun/change_list.html"

    def get_urls(self):
        return [path("run/", self.admin_site.admin_view(self.run_view), name="billing_reconciliationrun_run")] + \
            super().get_urls()

    def run_view(self, request):
        if request.method != "POST":
            return redirect("admin:billing_reconciliationrun_changelist")
        if not request.user.has_perm("billing.run_reconciliation"):
            raise PermissionDeniedError("permission_denied", "Running reconciliation needs billing.run_reconciliation.")
        from billing.backoffice.tasks import reconcile_task
        from billing_site.celery import task_send

        if not task_send(reconcile_task, what="reconciliation run from the admin"):
            messages.error(request, "The task queue is unreachable; reconciliation did not start. Try again in a "
                                    "minute (the nightly run is not affected).")
            return redirect("admin:billing_reconciliationrun_changelist")
        messages.success(request, "Reconciliation started; drift appears below as it is found.")
        return redirect("admin:billing_reconciliationrun_changelist")


@admin.register(ReconciliationDrift)
class ReconciliationDriftAdmin(ReadOnlyAdminMixin, FastListMixin, admin.ModelAdmin):
    list_display = ["id", "detected_at", "kind", "object_link", "team_link", "local_value", "stripe_value", "status",
                    "repair_button"]
    list_filter = ["status", "kind", "object_type"]
    search_fields = ["=object_id"]
    list_select_related = ["team"]
    readonly_fields = [f.name for f in ReconciliationDrift._meta.fields]
    actions = ["repair_selected"]

    @admin.display(description="Object")
    def object_link(self, obj):
        return format_html("<code>{}</code> {}", obj.object_id, obj.object_type)

    @admin.display(description="Team")
    def team_link(self, obj):
        return team_360_link(obj.team)

    @admin.display(description="")
    def repair_button(self, obj):
        if obj.status != ReconciliationDrift.Status.OPEN:
            return ""
        return format_html('<form method="post" action="{}"><input type="hidden" name="csrfmiddlewaretoken" '
                           'value="__csrf__"><button type="submit">Repair (resync)</button></form>',
                           reverse("admin:billing_reconciliationdrift_repair", args=[obj.pk]))

    def changelist_view(self, request, extra_context=None):
        response = super().changelist_view(request, extra_context)
        if hasattr(response, "render"):
            from django.middleware.csrf import get_token

            response.render()
            response.content = response.content.replace(b"__csrf__", get_token(request).encode())
        return response

    def get_urls(self):
        return [path("<int:pk>/repair/", self.admin_site.admin_view(self.repair_view),
                     name="billing_reconciliationdrift_repair")] + super().get_urls()

    def _repair(self, request, pk: int) -> None:
        try:
            reconciliation_drift_repair(staff=StaffContext.from_request(request), drift_id=pk)
        except PermissionDeniedError:
            raise
        except ApplicationError as error:
            messages.error(request, f"Drift #{pk}: {error.user_message}")
        else:
            messages.success(request, f"Drift #{pk} repaired.")

    def repair_view(self, request, pk: int):
        if request.method == "POST":
            self._repair(request, pk)
        return redirect("admin:billing_reconciliationdrift_changelist")

    @admin.action(description="Repair selected (resync from Stripe)")
    def repair_selected(self, request, queryset):
        for drift in queryset.filter(status=ReconciliationDrift.Status.OPEN).order_by("pk")[:200]:
            self._repair(request, drift.pk)
