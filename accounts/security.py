"""Hooks the security packages call: django-axes' username, django-otp's money-power rule."""
from django.conf import settings

from .models import User


def axes_username(request, credentials: dict | None) -> str:
    """The login the lockout counter is kept for: the email as the login form sends it, stripped and lower case."""
    field = settings.AXES_USERNAME_FORM_FIELD
    value = (credentials or {}).get(field) or (request.POST.get(field) if request is not None else None) or ""
    return str(value).strip().lower()


def user_has_money_powers(*, user: User) -> bool:
    """Staff who can move money (refunds, credits, webhook replays) must log in with a second factor."""
    if not (user.is_authenticated and user.is_active and user.is_staff):
        return False
    return user.is_superuser or any(user.has_perm(perm) for perm in settings.STAFF_MONEY_PERMISSIONS)
