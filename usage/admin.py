"""Read-only admin views of usage records (ledgers are append-only: corrections go through usage.services)."""
from django.contrib import admin

from billing.admin.mixins import ReadOnlyAdminMixin

from .models import (CreditBalance, CreditLedgerEntry, MeterDriftCheck, MeterReport, TeamUsagePolicy, UsageAlert,
                     UsageEvent, UsagePeriodClose)


class ReadOnlyAdmin(ReadOnlyAdminMixin, admin.ModelAdmin):
    pass


@admin.register(CreditLedgerEntry)
class CreditLedgerEntryAdmin(ReadOnlyAdmin):
    list_display = ["created", "team", "delta", "balance_after", "reason", "reference", "created_by"]
    list_filter = ["reason"]
    search_fields = ["reference", "team__name", "team__billing_email", "note"]
    list_select_related = ["team", "created_by"]
    date_hierarchy = "created"


@admin.register(CreditBalance)
class CreditBalanceAdmin(ReadOnlyAdmin):
    list_display = ["team", "balance", "updated"]
    search_fields = ["team__name", "team__billing_email"]
    list_select_related = ["team"]


@admin.register(UsageEvent)
class UsageEventAdmin(ReadOnlyAdmin):
    list_display = ["occurred_at", "team", "metric", "quantity", "source", "api_key", "idempotency_key"]
    list_filter = ["metric", "source"]
    search_fields = ["idempotency_key", "team__name"]
    list_select_related = ["team", "api_key"]
    date_hierarchy = "occurred_at"
    show_full_result_count = False  # the table is large: skip COUNT(*) on every page


@admin.register(MeterReport)
class MeterReportAdmin(ReadOnlyAdmin):
    list_display = ["id", "team", "metric", "period_start", "quantity", "kind", "status", "attempts", "sent_at"]
    list_filter = ["status", "kind", "metric"]
    search_fields = ["team__name", "stripe_customer_id"]
    list_select_related = ["team"]


@admin.register(MeterDriftCheck)
class MeterDriftCheckAdmin(ReadOnlyAdmin):
    list_display = ["created", "team", "metric", "period_start", "project_total", "stripe_total", "outcome"]
    list_filter = ["outcome"]
    list_select_related = ["team"]


@admin.register(UsageAlert)
class UsageAlertAdmin(ReadOnlyAdmin):
    list_display = ["created", "team", "kind", "metric", "period_start", "sent_to"]
    list_filter = ["kind"]
    list_select_related = ["team"]


@admin.register(UsagePeriodClose)
class UsagePeriodCloseAdmin(ReadOnlyAdmin):
    list_display = ["period_start", "team", "metric", "used", "included", "overage", "plan_key"]
    list_select_related = ["team"]


@admin.register(TeamUsagePolicy)
class TeamUsagePolicyAdmin(ReadOnlyAdmin):
    list_display = ["team", "spend_cap_minor", "currency", "updated_by", "updated"]
    list_select_related = ["team", "updated_by"]
