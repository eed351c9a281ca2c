"""
Demo billing data for `make run`: the demo customer's team gets a Stripe customer and a saved Visa card (its
default payment method), so the billing page and one-click credit purchases work at once. The payments staff can
refund come from `demo_payments` (the back office's demo). Idempotent: keys derive from the team.
"""
from django.core.management.base import BaseCommand

from accounts.models import Membership, Team
from billing.selectors import team_saved_cards
from billing.services import customer_get_or_create
from billing.stripe_gateway.customers import customer_update, payment_method_attach
from accounts.management.commands.demo_setup import DEMO_CUSTOMER_EMAIL


class Command(BaseCommand):
    help = "Give the demo team a Stripe customer and a saved default card."

    def handle(self, *args, **options):
        team = Team.objects.filter(memberships__user__email=DEMO_CUSTOMER_EMAIL,
                                   memberships__role=Membership.Role.OWNER).first()
        if team is None:
            self.stdout.write("billing_demo: no demo team (run demo_setup first); skipped.")
            return
        customer_id = customer_get_or_create(team=team)
        if not team_saved_cards(team=team):
            card = payment_method_attach(payment_method_id="pm_card_visa", customer_id=customer_id,
                                         idempotency_key=f"demo:card:{team.pk}")
            customer_update(customer_id=customer_id,
                            params={"invoice_settings": {"default_payment_method": card["id"]}},
                            idempotency_key=f"demo:default_card:{team.pk}:{card['id']}")
        self.stdout.write(self.style.SUCCESS(f"billing_demo: team {team.pk} → {customer_id}, card saved."))
