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


def minor_to_input(amount_minor: int, currency: str, language: str) -> str:
    """4990 USD -> "49.90" (en) or "49,90" (pt-br): the value a person edits, with the locale's decimal separator and
    no grouping (money_parse_minor reads either separator back)."""
    from babel.numbers import format_decimal

    from billing_site.money import _babel_locale, currency_exponent, minor_to_decimal

    exponent = currency_exponent(currency)
    pattern = "0." + "0" * exponent if exponent else "0"
    return format_decimal(minor_to_decimal(amount_minor, currency), format=pattern, locale=_babel_locale(language))


class RefundRequestForm(forms.Form):
    amount = forms.CharField(label="Amount")
    # Always the charge's currency, carried so a form opened before the charge changed cannot refund in another
    # currency; never typed by staff.
    currency = forms.CharField(max_length=3, widget=forms.HiddenInput)
    reason = forms.ChoiceField(choices=RefundRequest.Reason.choices)
    credit_to_balance = forms.BooleanField(
        required=False, label="Credit the customer's balance instead of the card",
        help_text="The credit note then pays the customer's next invoices; nothing goes back to the card.")
    note = forms.CharField(widget=forms.Textarea(attrs={"rows": 3}), required=False,
                           help_text="Internal note (never sent to the customer).")

    def __init__(self, *args, currency: str = "usd", example: str = "49.90", credit_note: bool = False, **kwargs):
        super().__init__(*args, **kwargs)
        self.fields["amount"].label = f"Amount ({currency.upper()})"
        self.fields["amount"].help_text = (f"In {currency.upper()}, e.g. {example}. Default: everything still "
                                           "refundable.")
        if not credit_note:
            del self.fields["credit_to_balance"]

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
        # (charge id, "date · amount · description"): staff pick a payment they can recognise.
        self.fields["charge_id"].choices = [c if isinstance(c, tuple) else (c, c) for c in charges]


class ReplayEventsForm(forms.Form):
    event_ids = forms.MultipleChoiceField(widget=forms.CheckboxSelectMultiple, label="Events")

    def __init__(self, *args, events=(), **kwargs):
        super().__init__(*args, **kwargs)
        self.fields["event_ids"].choices = list(events)
