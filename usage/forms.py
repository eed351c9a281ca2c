from django import forms
from django.utils.translation import gettext_lazy as _

from billing.catalog import load_catalog
from billing_site.money import MoneyParseError, money_parse_minor


class SpendCapForm(forms.Form):
    spend_cap = forms.DecimalField(
        label=_("Most overage per month"), required=False, min_value=0, decimal_places=2, max_digits=12,
        help_text=_("In the currency below; leave empty for no cap. Past the cap, metered calls answer HTTP 402."))
    currency = forms.ChoiceField(label=_("Currency"), choices=())

    def __init__(self, *args, **kwargs):
        super().__init__(*args, **kwargs)
        self.fields["currency"].choices = [(c, c.upper()) for c in load_catalog().currencies]

    def clean(self):
        cleaned = super().clean()
        value, currency = cleaned.get("spend_cap"), cleaned.get("currency")
        cleaned["spend_cap_minor"] = None
        if value is not None and currency:
            try:
                cleaned["spend_cap_minor"] = money_parse_minor(value, currency)
            except MoneyParseError as error:
                self.add_error("spend_cap", str(error))
        return cleaned

    def spend_cap_minor(self) -> int | None:
        """The cap in integer minor units of the chosen currency (zero-decimal currencies included)."""
        return self.cleaned_data["spend_cap_minor"]
