"""The usage app's domain errors; the API answers them as 400/402 with the ways out (buy credits, upgrade)."""
from django.conf import settings
from django.urls import reverse

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
        message = user_message or (
            f"Not enough credits: this needs {required} and the team has {balance}. "
            f"Buy credits at {urls['buy_credits_url']} or upgrade your plan at {urls['upgrade_url']}."
        )
        super().__init__("insufficient_credits", message, http_status=402,
                         extra={"balance": balance, "required": required, **urls})
        self.balance = balance
        self.required = required


class SpendCapReachedError(BillingError):
    def __init__(self, *, metric: str, cap_units: int):
        urls = way_out_urls()
        super().__init__(
            "spend_cap_reached",
            f"Your team's spend cap allows {cap_units} {metric} beyond the plan this month and it is reached. "
            f"The team's owner can raise the cap at {urls['spend_cap_url']}.",
            extra={"metric": metric, "cap_units": cap_units, **urls},
        )


class UsageEventInvalidError(ApplicationError):
    """A usage event in a request is invalid; `extra` names its index in the batch and the reason."""

    def __init__(self, *, index: int | None, field: str, reason: str):
        where = f"events[{index}].{field}" if index is not None else field
        super().__init__("invalid_usage_event", f"{where}: {reason}", http_status=400,
                         extra={"index": index, "field": field, "reason": reason})
