"""
Demo billing data for `make run`: the demo customer's team gets a Stripe customer, a saved Visa card and a few
paid one-time payments (credit packs) that staff can refund from the back office. Idempotent: keys derive from
the team and the payment's number, and payments already made are not made again.
"""
from django.core.management.base import BaseCommand

from accounts.models import Membership, Team
from billing.catalog import load_catalog
from billing.selectors import team_saved_cards
from billing.services import customer_get_or_create
from billing.services.mirror import mirror_resync
from billing.stripe_gateway.customers import customer_update, payment_method_attach
from billing.stripe_gateway.payments import charge_list, payment_intent_create
from accounts.management.commands.demo_setup import DEMO_CUSTOMER_EMAIL



class Command(BaseCommand):
    help = "Give the demo team a Stripe customer, a card and a few refundable payments."

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
        existing = charge_list(customer_id=customer_id)
        catalog = load_catalog()
        packs = [catalog.credit_pack_for_lookup_key(k) for k in ("credits_10", "credits_50", "credits_10")]
        cards = team_saved_cards(team=team)
        for number, pack in enumerate(packs[len(existing):], start=len(existing)):
            intent = payment_intent_create(
                params={"amount": pack.amounts["usd"], "currency": "usd", "customer": customer_id,
                        "payment_method": cards[0]["id"], "confirm": True, "off_session": True,
                        "payment_method_types": ["card"], "description": f"{pack.name} (demo)",
                        "metadata": {"team_id": str(team.pk), "kind": "credit_pack", "lookup_key": pack.lookup_key,
                                     "credits": str(pack.credits)}},
                idempotency_key=f"demo:payment:{team.pk}:{number}",
            )
            mirror_resync(object_type="payment_intent", object_id=intent["id"])
            if intent.get("latest_charge"):
                mirror_resync(object_type="charge", object_id=intent["latest_charge"])
            self.stdout.write(f"  demo payment {intent['id']}: {pack.name} {intent['status']}")
        self.stdout.write(self.style.SUCCESS(f"billing_demo: team {team.pk} → {customer_id}, payments ready."))
