"""Forms of the back office's confirmed actions. Amounts typed by people are converted to integer minor units here."""
import uuid

from django import forms

from billing.models import RefundRequest
from billing_site.money import MoneyParseError, money_parse_minor


def minor_from_text(text: str, currency: str) -> int:
    """'49.90' (or '49,90') in `currency` -> 4990, as a form error when it is not an amount of that currency."""
    try:
        return money_parse_minor(text, currency)
    except MoneyParseError as error:
        raise forms.ValidationError(str(error)) from None


class ActionTokenForm(forms.Form):
    # One token per opened form: a double submit reuses it, so the ledger/Stripe see the same reference twice.
    action_token = forms.CharField(widget=forms.HiddenInput, max_length=64)

    def __init__(self, *args, **kwargs):
        kwargs.setdefault("initial", {}).setdefault("action_token", uuid.uuid4().hex)
        super().__init__(*args, **kwargs)


class RefundRequestForm(forms.Form):
    amount = forms.CharField(label="Amount", help_text="In the payment's currency, e.g. 49.90. Default: everything "
                             "still refundable.")
    currency = forms.CharField(max_length=3, help_text="Must be the payment's currency.")
    reason = forms.ChoiceField(choices=RefundRequest.Reason.choices)
    note = forms.CharField(widget=forms.Textarea(attrs={"rows": 3}), required=False,
                           help_text="Internal note (never sent to the customer).")

    def clean(self):
        cleaned = super().clean()
        if "amount" in cleaned and "currency" in cleaned:
            try:
                cleaned["amount_minor"] = minor_from_text(cleaned["amount"], cleaned["currency"])
            except forms.ValidationError as error:
                self.add_error("amount", error)
        return cleaned


class DecisionForm(forms.Form):
    note = forms.CharField(widget=forms.Textarea(attrs={"rows": 2}), required=False)


class CreditsForm(ActionTokenForm):
    amount = forms.IntegerField(min_value=1, help_text="Whole credits.")
    note = forms.CharField(widget=forms.Textarea(attrs={"rows": 2}), help_text="Why (internal).")


class ConfirmForm(forms.Form):
    confirm = forms.BooleanField(required=True, label="Yes, do it")


class CancelSubscriptionForm(forms.Form):
    subscription_id = forms.ChoiceField(label="Subscription")
    when = forms.ChoiceField(choices=[("period_end", "At the end of the current period"),
                                      ("now", "Now (Finance only): service stops immediately")])
    note = forms.CharField(widget=forms.Textarea(attrs={"rows": 2}), required=False)

    def __init__(self, *args, subscriptions=(), **kwargs):
        super().__init__(*args, **kwargs)
        self.fields["subscription_id"].choices = [(s, s) for s in subscriptions]


class ExtendTrialForm(forms.Form):
    subscription_id = forms.ChoiceField(label="Subscription")
    days = forms.IntegerField(min_value=1, max_value=365)
    note = forms.CharField(widget=forms.Textarea(attrs={"rows": 2}), required=False)

    def __init__(self, *args, subscriptions=(), **kwargs):
        super().__init__(*args, **kwargs)
        self.fields["subscription_id"].choices = [(s, s) for s in subscriptions]


class ResendReceiptForm(ActionTokenForm):
    charge_id = forms.ChoiceField(label="Payment")

    def __init__(self, *args, charges=(), **kwargs):
        super().__init__(*args, **kwargs)
        self.fields["charge_id"].choices = [(c, c) for c in charges]


class ReplayEventsForm(forms.Form):
    event_ids = forms.MultipleChoiceField(widget=forms.CheckboxSelectMultiple, label="Events")

    def __init__(self, *args, events=(), **kwargs):
        super().__init__(*args, **kwargs)
        self.fields["event_ids"].choices = list(events)
