"""
Customer-facing words for the project's internal values: metric keys, Stripe statuses, catalog names. Templates
(pages and emails) load this library instead of printing `api_call`, `trialing` or `past_due`.
"""
from django import template
from django.utils import formats
from django.utils.translation import gettext as _, pgettext

from ..catalog import load_catalog

register = template.Library()


@register.filter
def metric_label(metric: str) -> str:
    """`api_call` -> "API calls" (the catalog's meter name, in the active language)."""
    for meter in load_catalog().meters:
        if meter.metric == metric or meter.event_name == metric:
            return meter.label
    return {"api_call": _("API calls")}.get(metric, metric.replace("_", " "))


@register.filter
def subscription_status(summary: dict) -> str:
    """A subscription's status in words: "Trial until 14 Dec", "Active", "Payment overdue"."""
    status = summary.get("status") if isinstance(summary, dict) else summary
    if status == "trialing" and isinstance(summary, dict) and summary.get("trial_end"):
        return _("Trial until %(date)s") % {"date": formats.date_format(summary["trial_end"], "DATE_FORMAT")}
    return {
        "active": pgettext("subscription", "Active"), "trialing": pgettext("subscription", "Trial"),
        "past_due": pgettext("subscription", "Payment overdue"), "unpaid": pgettext("subscription", "Unpaid"),
        "canceled": pgettext("subscription", "Canceled"), "incomplete": pgettext("subscription", "Awaiting payment"),
        "incomplete_expired": pgettext("subscription", "Expired"), "paused": pgettext("subscription", "Paused"),
    }.get(status, status or "")


@register.filter
def invoice_status(status: str) -> str:
    return {
        "draft": pgettext("invoice", "Draft"), "open": pgettext("invoice", "Due"), "paid": pgettext("invoice", "Paid"),
        "void": pgettext("invoice", "Void"), "uncollectible": pgettext("invoice", "Uncollectible"),
    }.get(status, status or "")


@register.filter
def plan_display_name(plan_key: str) -> str:
    """A plan's name in the active language from its catalog key (emails carry the key, not the words)."""
    try:
        return load_catalog().plan(plan_key).display_name
    except KeyError:
        return plan_key
