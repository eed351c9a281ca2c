"""Staff with money powers pass a second factor before the back office opens."""
from urllib.parse import urlencode

from django.conf import settings
from django.shortcuts import redirect
from django.urls import reverse

from .security import user_has_money_powers
from .selectors import user_has_confirmed_otp_device


class StaffSecondFactorMiddleware:
    """
    After django_otp's OTPMiddleware. A staff user who can refund, grant credits or replay webhooks and whose session
    is not verified with a second factor is sent, from any admin page, to the OTP step (a confirmed device) or to
    enrolment (none yet). The admin's own login and logout stay open: the OTP step comes after the password.
    """

    def __init__(self, get_response):
        self.get_response = get_response

    def __call__(self, request):
        if settings.STAFF_OTP_REQUIRED and self._needs_second_factor(request):
            target = "accounts:otp_verify" if user_has_confirmed_otp_device(user=request.user) else "accounts:otp_enrol"
            return redirect(f"{reverse(target)}?{urlencode({'next': request.get_full_path()})}")
        return self.get_response(request)

    @staticmethod
    def _needs_second_factor(request) -> bool:
        admin_root = reverse("admin:index")
        if not request.path.startswith(admin_root):
            return False
        if request.path in (reverse("admin:login"), reverse("admin:logout")):
            return False
        user = request.user
        return user.is_authenticated and not user.is_verified() and user_has_money_powers(user=user)
