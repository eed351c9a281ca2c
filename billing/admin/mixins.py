"""
`ReadOnlyAdminMixin`: the back office changes nothing through the admin's own add/change/delete: refund requests
move through their decisions, the audit trail is append-only, events and the dj-stripe mirror come from Stripe,
teams from signup. Every change is a service call behind a confirmed action, permission-checked and audited.

What makes an admin list fast on a million rows:

- `CappedCountPaginator`: Django's paginator runs COUNT(*) over the whole filtered result on every list page (a
  sequential scan at a million rows, `show_full_result_count = False` only drops the second, unfiltered count). We
  count at most `cap` rows (`SELECT COUNT(*) FROM (... LIMIT cap)`, an index-only walk); past it the list says
  "10,000" and pages up to there, which is as far as anyone pages.
- `ExactIdSearchMixin`: the admin's `=field` search is `iexact` (UPPER(col) = UPPER(term), no index). Stripe ids are
  case-sensitive and unique: match them exactly, and route by prefix (ch_ → id, pi_ → payment_intent_id, ...) so
  the query hits one index instead of an OR across joins.

`team_360_link`: every list that shows a team links it to its Customer 360 page the same way.
"""
from django.contrib import admin
from django.core.paginator import Paginator
from django.db.models import Q
from django.urls import reverse
from django.utils.functional import cached_property
from django.utils.html import format_html


class ReadOnlyAdminMixin:
    """No add, change or delete for anyone, superusers included; `view` permission still opens lists and pages."""

    # `obj=None` on add as well: the mixin also wraps dj-stripe's admins, and inlines take `obj` there.
    def has_add_permission(self, request, obj=None) -> bool:
        return False

    def has_change_permission(self, request, obj=None) -> bool:
        return False

    def has_delete_permission(self, request, obj=None) -> bool:
        return False


class CappedCountPaginator(Paginator):
    cap = 10_000

    @cached_property
    def count(self) -> int:
        object_list = self.object_list
        if hasattr(object_list, "order_by"):
            return object_list.order_by()[: self.cap].count()
        return len(object_list)


class FastListMixin:
    paginator = CappedCountPaginator
    show_full_result_count = False


class ExactIdSearchMixin(FastListMixin):
    # (lookup, prefixes): the lookup applies when the term starts with one of the prefixes (None: always).
    exact_search: list[tuple[str, tuple[str, ...] | None]] = [("id", None)]

    def get_search_results(self, request, queryset, search_term):
        term = (search_term or "").strip()
        if not term:
            return queryset, False
        condition = Q()
        for lookup, prefixes in self.exact_search:
            if prefixes is None or term.startswith(prefixes):
                condition |= Q(**{lookup: term})
        if not condition:
            return queryset.none(), False
        return queryset.filter(condition), False


class RetryStateColumnsMixin:
    """The status badge and the last error's last line, for rows that retry (webhook events, outbound emails)."""

    short_error_length = 80

    @admin.display(description="Status", ordering="status")
    def status_badge(self, obj):
        return format_html('<span class="bo-status {}">{}</span>', obj.status, obj.get_status_display())

    @admin.display(description="Last error")
    def short_error(self, obj):
        last_line = ((obj.last_error or "").strip().splitlines() or [""])[-1]
        return format_html('<span class="bo-error">{}</span>', last_line[:self.short_error_length]) \
            if last_line else "-"


def team_360_link(team, *, empty: str = "") -> str:
    """A link to `team`'s Customer 360 page, or `empty` when there is no team (pass the related object: no query)."""
    if team is None:
        return empty
    return format_html('<a href="{}">{}</a>', reverse("admin:billing_customeraccount_change", args=[team.pk]),
                       team.name)


def mirror_search_link(*, model: str, stripe_id: str) -> str:
    """A Stripe id linking to a search for it in dj-stripe's read-only admin of `model` (e.g. "invoice")."""
    return format_html('<a href="{}?q={}"><code>{}</code></a>', reverse(f"admin:djstripe_{model}_changelist"),
                       stripe_id, stripe_id)


def admin_refusal(request, admin_site, *, message: str, back: str, title: str = "Not allowed"):
    """
    A refused action (missing permission, four eyes) answered inside the admin: its own page with the reason and a
    way back, status 403 (the refusal is already in the audit trail), instead of the customer site's error page.
    """
    from django.template.response import TemplateResponse

    return TemplateResponse(request, "admin/billing/refused.html", {
        **admin_site.each_context(request), "title": title, "message": message, "back": back,
    }, status=403)
