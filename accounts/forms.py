from django import forms
from django.contrib.auth import password_validation
from django.contrib.auth.forms import AuthenticationForm
from django.utils.translation import gettext_lazy as _

from .models import APIKey, Membership, User


class EmailAuthenticationForm(AuthenticationForm):
    """Django's login form with an email input (the username is the email address)."""

    def __init__(self, request=None, *args, **kwargs):
        super().__init__(request, *args, **kwargs)
        self.fields["username"].label = _("Email")
        self.fields["username"].widget = forms.EmailInput(attrs={"autocomplete": "email", "autofocus": True})
        self.fields["password"].label = _("Password")


class SignupForm(forms.Form):
    email = forms.EmailField(label=_("Email"), widget=forms.EmailInput(attrs={"autocomplete": "email"}))
    password = forms.CharField(
        label=_("Password"), strip=False, help_text=_("At least 8 characters, not only digits, not a common password."),
        widget=forms.PasswordInput(attrs={"autocomplete": "new-password"}),
    )
    team_name = forms.CharField(
        label=_("Team name"), max_length=120, required=False,
        help_text=_("You can invite colleagues to this team later."),
        widget=forms.TextInput(attrs={"autocomplete": "organization"}),
    )

    def clean_email(self):
        # No "already taken" error here: the page must not reveal which addresses have an account
        # (services.user_signup emails the owner of an existing address instead).
        return self.cleaned_data["email"].strip().lower()

    def clean(self):
        cleaned = super().clean()
        password = cleaned.get("password")
        if password:
            try:
                password_validation.validate_password(password, User(email=cleaned.get("email", "")))
            except forms.ValidationError as error:
                self.add_error("password", error)
        return cleaned


class InvitationForm(forms.Form):
    email = forms.EmailField(label=_("Email"), widget=forms.EmailInput(attrs={"autocomplete": "off"}))
    role = forms.ChoiceField(
        label=_("Role"),
        choices=[(Membership.Role.MEMBER, _("Member")), (Membership.Role.ADMIN, _("Admin"))],
        initial=Membership.Role.MEMBER,
    )


class APIKeyForm(forms.Form):
    name = forms.CharField(label=_("Name"), max_length=100)
    scope = forms.ChoiceField(
        label=_("Scope"), choices=APIKey.Scope.choices, initial=APIKey.Scope.USAGE, required=False,
        help_text=_("Usage is the default: enough for a program that makes metered calls and reports usage events. "
                    "Choose read or full only when the program needs them; the scope cannot be widened later."),
    )
    expires_at = forms.DateTimeField(
        label=_("Expires"), required=False, help_text=_("Date and time in UTC. Leave empty for no expiry."),
        widget=forms.DateTimeInput(attrs={"type": "datetime-local"}, format="%Y-%m-%dT%H:%M"),
    )

    def clean_scope(self):
        # Left out (an older form, a script), the key gets the narrowest scope, never a wider one.
        return self.cleaned_data.get("scope") or APIKey.Scope.USAGE


class OTPTokenForm(forms.Form):
    otp_token = forms.CharField(
        label=_("Code"), max_length=16, strip=True,
        help_text=_("The 6-digit code from your authenticator app, or one of your recovery codes."),
        widget=forms.TextInput(attrs={"autocomplete": "one-time-code", "inputmode": "numeric", "autofocus": True}),
    )
