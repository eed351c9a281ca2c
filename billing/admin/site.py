"""
The admin site as the staff console (issue 14): the home page is a work queue (refund requests waiting for approval
with their count, recent failed refunds, recent parked webhook events and emails, dunning cases), the back-office
pages come first in the app list, and dj-stripe's ~60 mirror models form one "Stripe mirror (read-only)" section
that only staff with `billing.browse_stripe_mirror` (Finance) see listed. Dates are shown in the staff member's time
zone.

Django's default `admin.site` is kept (every app registers on it); this module sets its index template and wraps
three of its methods once, from billing/admin/__init__.py.
"""
import zoneinfo
from functools import wraps

from django.contrib import admin
from django.template.response import TemplateResponse
from django.utils import timezone

from billing.admin.mixins import admin_refusal
from billing.backoffice.selectors import backoffice_home
from billing_site.errors import PermissionDeniedError

# Set by static/js/backoffice-tz.js from the browser (Intl API); an unknown or missing zone means UTC.
TIME_ZONE_COOKIE = "bo_tz"
MIRROR_SECTION = "Stripe mirror (read-only)"
# Order of the sections: the back office first, then the people, usage, and the rest; the mirror last.
APP_ORDER = {"billing": 0, "accounts": 1, "usage": 2}
# Order inside the back-office section: the pages staff open every day first.
BILLING_MODEL_ORDER = ["customeraccount", "refundrequest", "dunningsubscription", "creditnote", "webhookevent",
                       "outboundemail", "auditentry", "reconciliationdrift", "reconciliationrun"]


def staff_time_zone(request) -> zoneinfo.ZoneInfo | None:
    name = (request.COOKIES.get(TIME_ZONE_COOKIE) or "").strip()
    if not name or len(name) > 64:
        return None
    try:
        return zoneinfo.ZoneInfo(name)
    except (zoneinfo.ZoneInfoNotFoundError, ValueError):
        return None


def staff_permissions_preload(user) -> None:
    """
    Load a staff member's permissions in one query instead of ModelBackend's two (their own, then their groups'),
    into the cache ModelBackend reads (`_perm_cache`, the same "app_label.codename" set it would build). Every admin
    page of a Support or Finance user checks permissions; the page budget is 15 queries.
    """
    from django.contrib.auth.models import Permission
    from django.db.models import Q

    if not user.is_authenticated or not user.is_active or user.is_superuser or hasattr(user, "_perm_cache"):
        return
    rows = (Permission.objects.filter(Q(user=user) | Q(group__user=user))
            .values_list("content_type__app_label", "codename").distinct())
    user._perm_cache = {f"{app_label}.{codename}" for app_label, codename in rows}


def _back(request) -> str:
    from django.urls import reverse
    from django.utils.http import url_has_allowed_host_and_scheme

    referer = request.META.get("HTTP_REFERER") or ""
    if referer and url_has_allowed_host_and_scheme(referer, allowed_hosts={request.get_host()}):
        return referer
    return reverse("admin:index")


def _in_staff_time_zone(view):
    """
    Run an admin view (and render its template) in the staff member's time zone, then go back to the default; answer
    a refusal inside the admin.
    """

    @wraps(view)
    def wrapper(request, *args, **kwargs):
        staff_permissions_preload(request.user)
        zone = staff_time_zone(request)
        if zone is not None:
            timezone.activate(zone)
        try:
            try:
                response = view(request, *args, **kwargs)
            except PermissionDeniedError as error:
                # Any refusal a service raises (already audited) is answered inside the admin, never by the
                # customer site's error page.
                response = admin_refusal(request, admin.site, message=error.user_message, back=_back(request))
            if zone is not None and isinstance(response, TemplateResponse) and not response.is_rendered:
                response.render()
            return response
        finally:
            if zone is not None:
                timezone.deactivate()

    return wrapper


def _app_list(original):
    def get_app_list(request, app_label=None):
        apps = original(request, app_label)
        show_mirror = request.user.has_perm("billing.browse_stripe_mirror")
        result = []
        for app in apps:
            if app["app_label"] == "djstripe":
                if not show_mirror:
                    continue
                app = {**app, "name": MIRROR_SECTION}
            elif app["app_label"] == "billing":
                rank = {name: i for i, name in enumerate(BILLING_MODEL_ORDER)}
                app = {**app, "name": "Back office",
                       "models": sorted(app["models"], key=lambda m: (rank.get(m["object_name"].lower(), 99),
                                                                      m["name"]))}
            result.append(app)
        result.sort(key=lambda a: (a["app_label"] == "djstripe", APP_ORDER.get(a["app_label"], 50), a["name"]))
        return result

    return get_app_list


def _index(original):
    def index(request, extra_context=None):
        context = dict(extra_context or {})
        context["backoffice"] = backoffice_home()
        context["can_approve"] = request.user.has_perm("billing.approve_refund")
        return original(request, context)

    return index


def staff_console_install(site: admin.AdminSite) -> None:
    """Idempotent: wrap the site's methods once."""
    if getattr(site, "_staff_console_installed", False):
        return
    site._staff_console_installed = True
    site.index_template = "admin/billing/index.html"
    site.get_app_list = _app_list(site.get_app_list)
    site.index = _index(site.index)
    original_admin_view = site.admin_view
    site.admin_view = lambda view, cacheable=False: original_admin_view(_in_staff_time_zone(view), cacheable)
