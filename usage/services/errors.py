"""The usage app's domain errors; the API answers them as 400/402 with the ways out (buy credits, upgrade)."""
from django.conf import settings
from django.urls import reverse
from django.utils.translation import gettext as _

from billing_site.errors import ApplicationError, BillingError


def way_out_urls() -> dict:
    """Where a team that hit a limit can go: buy credits, upgrade, see its billing, raise its spend cap (absolute)."""
    return {
        "buy_credits_url": settings.SITE_URL + reverse("billing:pricing") + "#credit-packs",
        "upgrade_url": settings.SITE_URL + reverse("billing:pricing"),
        "billing_url": settings.SITE_URL + reverse("billing:overview"),
        # The spend cap form is on the usage page, not on /billing/.
        "spend_cap_url": settings.SITE_URL + reverse("usage:overview"),
    }


class InsufficientCreditsError(ApplicationError):
    """Not enough credits for this operation. 402, with the ways out (buy credits, upgrade) in `extra`."""

    http_status = 402

    def __init__(self, *, balance: int, required: int, user_message: str | None = None):
        urls = way_out_urls()
        message = user_message or _(
            "Not enough credits: this needs %(required)s and the team has %(balance)s. "
            "Buy credits at %(buy_credits_url)s or upgrade your plan at %(upgrade_url)s."
        ) % {"required": required, "balance": balance, **urls}
        super().__init__("insufficient_credits", message, http_status=402,
                         extra={"balance": balance, "required": required, **urls})
        self.balance = balance
        self.required = required


def metric_label(metric: str) -> str:
    """`api_call` -> "API calls" in the active language (the catalog's meter name)."""
    from billing.templatetags.billing_words import metric_label as label

    return label(metric)


class SpendCapReachedError(BillingError):
    def __init__(self, *, metric: str, cap_units: int):
        urls = way_out_urls()
        super().__init__(
            "spend_cap_reached",
            _("Your team's spend cap allows %(cap_units)s %(metric)s beyond the plan this month and it is reached. "
              "The team's owner can raise the cap at %(spend_cap_url)s.")
            % {"cap_units": cap_units, "metric": metric_label(metric), **urls},
            extra={"metric": metric, "cap_units": cap_units, **urls},
        )


class UsageEventInvalidError(ApplicationError):
    """A usage event in a request is invalid; `extra` names its index in the batch and the reason."""

    def __init__(self, *, index: int | None, field: str, reason: str):
        where = f"events[{index}].{field}" if index is not None else field
        super().__init__("invalid_usage_event", f"{where}: {reason}", http_status=400,
                         extra={"index": index, "field": field, "reason": reason})
