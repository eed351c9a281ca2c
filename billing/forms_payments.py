"""
The payment history's vocabulary (kinds and statuses, as the customer reads them) and the one parser of its filters,
shared by the page (/billing/payments/) and the API (/api/v1/payments/): both accept the same values and refuse the
same mistakes (an unknown status or kind, a date that is not a date, a range that ends before it starts).
"""
from dataclasses import dataclass
from datetime import date, datetime, time, timedelta

from django import forms
from django.db import models
from django.utils import timezone
from django.utils.dateparse import parse_date, parse_datetime
from django.utils.translation import gettext_lazy as _


class PaymentKind(models.TextChoices):
    SUBSCRIPTION = "subscription", _("Subscription")
    CREDIT_PACK = "credit_pack", _("Credit pack")
    ONE_TIME = "one_time", _("One-time payment")


class PaymentStatus(models.TextChoices):
    """Stripe's charge status, refined by what was refunded since (a refunded charge is still `succeeded` there)."""
    SUCCEEDED = "succeeded", _("Paid")
    PARTIALLY_REFUNDED = "partially_refunded", _("Partially refunded")
    REFUNDED = "refunded", _("Refunded")
    PENDING = "pending", _("Processing")
    FAILED = "failed", _("Failed")


@dataclass(frozen=True)
class PaymentFilters:
    status: str = ""
    kind: str = ""
    created_gte: datetime | None = None
    created_lte: datetime | None = None


class _InstantField(forms.Field):
    """An ISO 8601 date-time, or a date (the page's date inputs): `end_of_day` makes a date include its whole day."""

    def __init__(self, *, end_of_day: bool, **kwargs):
        self.end_of_day = end_of_day
        super().__init__(required=False, **kwargs)

    def to_python(self, value):
        text = str(value or "").strip()
        if not text:
            return None
        if len(text) > 40:  # the longest ISO 8601 date-time is 32 characters
            raise forms.ValidationError(_("Enter a date (YYYY-MM-DD) or an ISO 8601 date and time."), code="invalid")
        instant = day = None
        try:
            if ":" in text:
                # An unencoded "+00:00" in a query string arrives as " 00:00".
                instant = parse_datetime(text.replace(" ", "+", 1) if text.count(" ") == 1 and "T" in text else text)
            else:
                # Before parse_datetime, which would read a bare date as its midnight (and lose end_of_day).
                day = parse_date(text)
        except ValueError:  # well-formed but impossible, e.g. 2026-02-30
            pass
        if instant is not None:
            return instant if timezone.is_aware(instant) else timezone.make_aware(instant)
        if day is None:
            raise forms.ValidationError(_("Enter a date (YYYY-MM-DD) or an ISO 8601 date and time."), code="invalid")
        return _day_bound(day, end_of_day=self.end_of_day)


def _day_bound(day: date, *, end_of_day: bool) -> datetime:
    if end_of_day:
        return timezone.make_aware(datetime.combine(day + timedelta(days=1), time.min)) - timedelta(microseconds=1)
    return timezone.make_aware(datetime.combine(day, time.min))


class PaymentFilterForm(forms.Form):
    status = forms.ChoiceField(label=_("Status"), required=False,
                               choices=[("", _("Any status")), *PaymentStatus.choices])
    kind = forms.ChoiceField(label=_("Kind"), required=False, choices=[("", _("Any kind")), *PaymentKind.choices])
    created_gte = _InstantField(label=_("From"), end_of_day=False)
    created_lte = _InstantField(label=_("To"), end_of_day=True)

    def clean(self):
        cleaned = super().clean()
        start, end = cleaned.get("created_gte"), cleaned.get("created_lte")
        if start and end and start > end:
            self.add_error("created_lte", forms.ValidationError(_("The end date is before the start date."),
                                                                code="invalid"))
        return cleaned

    def filters(self) -> PaymentFilters:
        """The filters that parsed (all of them when the form is valid): the page still lists with the good ones."""
        cleaned = getattr(self, "cleaned_data", {}) or {}
        return PaymentFilters(status=cleaned.get("status") or "", kind=cleaned.get("kind") or "",
                              created_gte=cleaned.get("created_gte"), created_lte=cleaned.get("created_lte"))

    def first_error(self) -> str:
        """`created_gte: Enter a date...`: the parameter's name, as programs send it, and the first problem."""
        for name, errors in self.errors.items():
            return str(errors[0]) if name == "__all__" else f"{name}: {errors[0]}"
        return ""
