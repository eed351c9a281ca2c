"""
The email outbox (billing.emails) for staff: every team and staff email with its status, attempts, last error and
next attempt, read-only. The one action re-sends parked (or failed) rows through
billing.backoffice.support.outbound_emails_resend, permission-checked (`billing.resend_outbound_email`) and audited.
"""
from django.contrib import admin, messages
from django.utils import timezone

from billing.admin.mixins import FastListMixin, ReadOnlyAdminMixin, RetryStateColumnsMixin, team_360_link
from billing.backoffice.audit import StaffContext
from billing.backoffice.support import outbound_emails_resend
from billing.models import OutboundEmail


@admin.register(OutboundEmail)
class OutboundEmailAdmin(RetryStateColumnsMixin, ReadOnlyAdminMixin, FastListMixin, admin.ModelAdmin):
    short_error_length = 60
    # What staff act on first (status, attempts, last error, next attempt) fits at 1280 px beside the admin's
    # navigation; recipients, context and the full traceback are on the row's page.
    list_display = ["what", "team_link", "status_badge", "attempts", "short_error", "next_attempt"]
    list_display_links = ["what"]
    list_filter = ["status", "kind"]
    list_select_related = ["team"]
    search_fields = ["=template"]  # the search box; the lookups are in get_search_results
    search_help_text = "Row id, team id (team:42), template (receipt, usage/email/quota_80) or dedupe key."
    list_per_page = 50
    ordering = ["-created_at", "-id"]
    actions = ["resend_selected"]
    fields = ["kind", "team", "template", "recipients", "status", "attempts", "next_attempt_at", "created_at",
              "sent_at", "dedupe_key", "context", "last_error"]

    def get_search_results(self, request, queryset, search_term):
        # Exact matches on indexed or small columns only: the outbox may hold millions of sent rows.
        term = (search_term or "").strip()
        if not term:
            return queryset, False
        if term.isdigit():
            return queryset.filter(pk=int(term)), False
        if term.startswith("team:") and term[5:].isdigit():
            return queryset.filter(team_id=int(term[5:])), False
        if ":" in term:
            return queryset.filter(dedupe_key=term), False
        return queryset.filter(template=term), False

    @admin.display(description="Team", ordering="team__name")
    def team_link(self, obj):
        return team_360_link(obj.team, empty="staff")

    @admin.display(description="Email", ordering="-id")
    def what(self, obj):
        return f"#{obj.pk} {obj.subject_hint}"

    @admin.display(description="Next attempt", ordering="next_attempt_at")
    def next_attempt(self, obj):
        # Short, in the staff member's time zone (the admin activates it): the list must fit beside the navigation.
        if obj.next_attempt_at is None:
            return "-"
        when = timezone.localtime(obj.next_attempt_at)
        return when.strftime("%H:%M:%S" if when.date() == timezone.localdate() else "%Y-%m-%d %H:%M")

    @admin.action(description="Re-send selected parked or failed emails")
    def resend_selected(self, request, queryset):
        ids = list(queryset.order_by("id").values_list("pk", flat=True)[:500])
        results = outbound_emails_resend(staff=StaffContext.from_request(request), email_ids=ids)
        summary: dict[str, int] = {}
        for outcome in results.values():
            summary[outcome] = summary.get(outcome, 0) + 1
        messages.info(request, "Emails: " + ", ".join(f"{n} {s}" for s, n in sorted(summary.items())))

    class Media:
        css = {"all": ["css/backoffice.css"]}
