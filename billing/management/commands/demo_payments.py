"""
`python manage.py demo_payments`: a few payments to refund in the `make run` demo, made through the gateway (the
emulator by default), mirrored into dj-stripe's tables, plus Support and Finance staff users. Idempotent: payments
use idempotency keys derived from the team and are skipped when the team already has them.
"""
import secrets

from django.contrib.auth.models import Group
from django.core.management.base import BaseCommand, CommandError
from djstripe import models as djstripe_models

from accounts.models import Membership, Team, User
from billing.extensions import credit_ledger
from billing.services.mirror import mirror_store
from billing.stripe_gateway.refunds import payment_intent_create_confirmed

DEMO_CUSTOMER_EMAIL = "demo@example.com"
STAFF = [("support@example.com", "Sam Support", "Support"), ("finance@example.com", "Fran Finance", "Finance"),
         ("finance2@example.com", "Flo Finance", "Finance")]
# (amount in minor units, currency, description, credits granted): one above REFUND_APPROVAL_THRESHOLD for four eyes.
PAYMENTS = [
    (4900, "usd", "Order #1001", 0),
    (79000, "usd", "Annual services (above the approval threshold)", 0),
    (19900, "brl", "Pedido #1002", 0),
    (3900, "usd", "Credit pack: 50 credits", 50),
]


class Command(BaseCommand):
    help = "Create demo payments (to refund) for the demo team and Support/Finance staff users."

    def add_arguments(self, parser):
        parser.add_argument("--team-id", type=int, help="Team to pay for (default: the team of demo@example.com).")
        parser.add_argument("--password", help="Password for the staff users (default: a new random one).")

    def handle(self, *args, team_id=None, password=None, **options):
        team = self._team(team_id)
        password = password or secrets.token_urlsafe(9)
        for email, name, group in STAFF:
            user = User.objects.filter(email=email).first() or User.objects.create_user(
                email=email, password=password, full_name=name, is_staff=True)
            user.is_staff = True
            user.set_password(password)
            user.save()
            user.groups.add(Group.objects.get(name=group))
        self.stdout.write(f"Staff users ({password}): " + ", ".join(f"{e} ({g})" for e, _n, g in STAFF))

        from billing.services import customer_get_or_create

        customer_id = customer_get_or_create(team=team)
        existing = djstripe_models.Charge.objects.filter(customer_id=customer_id).count()
        if existing >= len(PAYMENTS):
            self.stdout.write(f"Team {team.pk} already has {existing} payments: nothing to do.")
            return
        for n, (amount, currency, description, credits) in enumerate(PAYMENTS, start=1):
            payment_intent = payment_intent_create_confirmed(
                customer_id=customer_id, amount_minor=amount, currency=currency, payment_method="pm_card_visa",
                idempotency_key=f"demo_payment:team:{team.pk}:{n}", description=description,
                metadata={"demo": "true"})
            charge = payment_intent["latest_charge"]
            mirror_store(kind="payment_intent", data={**payment_intent, "latest_charge": charge["id"]})
            mirror_store(kind="charge", data=charge)
            if credits:
                credit_ledger().grant(team=team, amount=credits, reason="purchase", reference=payment_intent["id"],
                                      note="demo credit pack")
            self.stdout.write(f"  {charge['id']}: {amount} {currency} ({description})")
        self.stdout.write(self.style.SUCCESS(f"Demo payments ready for team '{team.name}' (id {team.pk}): refund them "
                                             "from /admin/billing/customeraccount/."))

    def _team(self, team_id):
        if team_id:
            team = Team.objects.filter(pk=team_id).first()
        else:
            team = Team.objects.filter(memberships__user__email=DEMO_CUSTOMER_EMAIL,
                                       memberships__role=Membership.Role.OWNER).first()
        if team is None:
            raise CommandError("No demo team: run `manage.py demo_setup` first (or pass --team-id).")
        return team
