"""Receivers of other packages' signals: one-line calls into services."""
from axes.signals import user_locked_out
from django.dispatch import receiver

from . import services


@receiver(user_locked_out, dispatch_uid="accounts.login_lockout_record")
def _login_locked_out(sender, request, username, ip_address, **kwargs):
    services.login_lockout_record(username=username, ip_address=ip_address, path=getattr(request, "path", ""))
