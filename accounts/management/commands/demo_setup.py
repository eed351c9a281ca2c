"""Create the demo superuser and demo team for `make run`. Safe to run again: it reuses what exists."""
import secrets

from django.core.management.base import BaseCommand
from django.db import transaction

from accounts.models import Membership, Team, User
from accounts.services import team_create

DEMO_ADMIN_EMAIL = "admin@example.com"
DEMO_CUSTOMER_EMAIL = "demo@example.com"


class Command(BaseCommand):
    help = "Create the demo back-office superuser and a demo customer team (idempotent)."

    def add_arguments(self, parser):
        parser.add_argument("--password", help="Password for both demo users (default: a new random one).")

    @transaction.atomic
    def handle(self, *args, **options):
        password = options["password"] or secrets.token_urlsafe(9)
        admin = User.objects.filter(email=DEMO_ADMIN_EMAIL).first()
        if admin is None:
            admin = User.objects.create_superuser(email=DEMO_ADMIN_EMAIL, password=password, full_name="Demo Admin")
        else:
            admin.set_password(password)
            admin.save(update_fields=["password"])
        customer = User.objects.filter(email=DEMO_CUSTOMER_EMAIL).first()
        if customer is None:
            customer = User.objects.create_user(email=DEMO_CUSTOMER_EMAIL, password=password, full_name="Dana Demo")
        else:
            customer.set_password(password)
            customer.save(update_fields=["password"])
        team = Team.objects.filter(memberships__user=customer, memberships__role=Membership.Role.OWNER).first()
        if team is None:
            team = team_create(name="Demo Co", billing_email=DEMO_CUSTOMER_EMAIL, owner=customer)
        self.stdout.write(self.style.SUCCESS("Demo users ready (password printed once, not stored in clear):"))
        self.stdout.write(f"  back office: {DEMO_ADMIN_EMAIL} / {password}")
        self.stdout.write(f"  customer:    {DEMO_CUSTOMER_EMAIL} / {password}  (team '{team.name}', id {team.pk})")
