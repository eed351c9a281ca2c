"""
`make run` only: give every demo staff user with money powers a TOTP device and print its base32 secret beside the
demo password, so people and scripts can log into the back office. Refuses with DJANGO_DEBUG=false: production never
prints a second factor.
"""
from django.conf import settings
from django.core.management.base import BaseCommand, CommandError

from accounts.models import User
from accounts.security import user_has_money_powers
from accounts.services import staff_totp_demo_device


class Command(BaseCommand):
    help = "Development only: TOTP devices for the demo staff users, secrets printed (idempotent)."

    def add_arguments(self, parser):
        parser.add_argument("--password", default="", help="The demo password, printed beside each secret.")

    def handle(self, *args, **options):
        if settings.IS_PRODUCTION:
            raise CommandError("demo_staff_otp runs only with DJANGO_DEBUG=true: production never prints a TOTP secret.")
        staff = [user for user in User.objects.filter(is_staff=True, is_active=True).order_by("email")
                 if user_has_money_powers(user=user)]
        self.stdout.write(self.style.SUCCESS(
            "Demo staff second factor (development only): add each secret to an authenticator app (TOTP, 30 s, "
            "6 digits); the back office asks for a code after the password."
        ))
        for user in staff:
            secret = staff_totp_demo_device(user=user)
            password = f" / {options['password']}" if options["password"] else ""
            self.stdout.write(f"  {user.email}{password}  TOTP secret (base32): {secret}")
