from django import forms
from django.utils.translation import gettext_lazy as _

from billing.catalog import load_catalog


class SpendCapForm(forms.Form):
    spend_cap = forms.DecimalField(
        label=_("Most overage per month"), required=False, min_value=0, decimal_places=2, max_digits=12,
        help_text=_("In the currency below; leave empty for no cap. Past the cap, metered calls answer HTTP 402."))
    currency = forms.ChoiceField(label=_("Currency"), choices=())

    def __init__(self, *args, **kwargs):
        super().__init__(*args, **kwargs)
        self.fields["currency"].choices = [(c, c.upper()) for c in load_catalog().currencies]

    def spend_cap_minor(self) -> int | None:
        value = self.cleaned_data["spend_cap"]
        # Both catalog currencies have 2 decimal places: whole minor units, never a float.
        return None if value is None else int(value * 100)
