"""
The numeric fields the checkout and plan-change pages post. `int(request.POST[...])` answered 500 for `abc`; these
forms turn any value that is not a whole number in range into a 400 with the field's message (issue 10).
"""
from django import forms
from django.utils.translation import gettext_lazy as _

from billing_site.errors import ApplicationError


class CheckoutStartForm(forms.Form):
    # The range the checkout service enforces too (1 to 100 packs or seats per checkout).
    quantity = forms.IntegerField(label=_("Quantity"), min_value=1, max_value=100, required=False)


class PlanChangeConfirmForm(forms.Form):
    # Unix seconds of the preview the user confirmed; the service refuses one older than an hour.
    proration_date = forms.IntegerField(label=_("Preview time"), min_value=0, max_value=2**40, required=False)


def form_cleaned_or_400(form: forms.Form, *, code: str) -> dict:
    """The form's cleaned data, or an ApplicationError (400) carrying the first field's message."""
    if form.is_valid():
        return form.cleaned_data
    name, errors = next(iter(form.errors.items()))
    raise ApplicationError(code, f"{form.fields[name].label}: {errors[0]}" if name in form.fields else errors[0],
                           http_status=400)
