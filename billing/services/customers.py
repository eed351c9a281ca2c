"""
The team ↔ Stripe customer link: created lazily, exactly one per team even when first checkouts race.

`BillingProfile.stripe_customer_id` is the one source of truth for the link; every reader goes through
`billing.selectors.team_stripe_customer_id` / `customer_team`. dj-stripe's `Customer.subscriber` is a copy kept for
dj-stripe's own views and the back office's joins: only the two services below (link, unlink) write either side,
and always both together, so they cannot disagree.
"""
import logging
from contextlib import contextmanager

from django.db import connection, transaction
from django.utils import timezone

from accounts.models import Team

from .. import stripe_gateway  # noqa: F401  (package import keeps `stripe` confined to it)
from ..models import BillingProfile
from ..selectors import team_plan_cache_clear
from ..stripe_gateway import customers as customers_gateway
from .mirror import mirror_customer_subscriber_set, mirror_store

logger = logging.getLogger(__name__)


def billing_profile_get(*, team: Team) -> BillingProfile:
    """The team's billing profile row, created on first use (a unique OneToOne makes racing creators agree)."""
    profile, _ = BillingProfile.objects.get_or_create(team=team)
    return profile


# Class id of the session-level advisory lock that serialises a team's first customer creation (PostgreSQL). Any
# constant works; it only has to differ from the audit chain's key (billing/backoffice/audit.py).
_CUSTOMER_CREATION_LOCK_CLASS = 7311


@contextmanager
def _customer_creation_lock(team_id: int):
    """
    Serialise the creators of one team's customer WITHOUT a transaction: a session-level advisory lock is held by the
    connection, not by an open transaction, so no row lock or snapshot stays open across the Stripe calls (issue 11:
    a transaction held across them made SQLite answer "database is locked"). If the process dies, PostgreSQL drops
    the lock with the connection. SQLite has no such lock: there the team-derived idempotency key makes racing
    creators get the same customer from Stripe.
    """
    if connection.vendor != "postgresql":
        yield
        return
    key = [_CUSTOMER_CREATION_LOCK_CLASS, team_id % 2_147_483_647]
    with connection.cursor() as cursor:
        cursor.execute("SELECT pg_advisory_lock(%s, %s)", key)
    try:
        yield
    finally:
        with connection.cursor() as cursor:
            cursor.execute("SELECT pg_advisory_unlock(%s, %s)", key)


def customer_get_or_create(*, team: Team) -> str:
    """
    The team's Stripe customer id, creating the customer on first use.

    Be careful changing this: three layers keep it to one customer per team.
    1. Creators of one team's customer queue on a session-level advisory lock (PostgreSQL); the second finds the
       link the first wrote. No database transaction is open during the Stripe calls: the link is written in its own
       short transaction afterwards (locks in order: Team row, then its BillingProfile row).
    2. The Stripe idempotency key `customer:team:<id>:<generation>` is derived from the team, so even without the
       lock (SQLite) or after a crash that lost our row, Stripe answers a retry with the same customer.
    3. Before creating, a search by `metadata.team_id` adopts a customer Stripe already has for this team (our row
       was lost more than 24 hours ago, past the idempotency key's lifetime).
    """
    profile = billing_profile_get(team=team)
    if profile.stripe_customer_id:
        return profile.stripe_customer_id
    with _customer_creation_lock(team.pk):
        profile.refresh_from_db(fields=["stripe_customer_id", "customer_generation"])
        if profile.stripe_customer_id:
            return profile.stripe_customer_id
        generation = profile.customer_generation
        # Stripe calls: outside any transaction.
        existing = [c for c in customers_gateway.customer_search_by_team(team_id=team.pk) if not c.get("deleted")]
        if existing and generation == 0:
            # Oldest first: if two were ever made, keep the first one consistently.
            customer = sorted(existing, key=lambda c: (c.get("created") or 0, c["id"]))[0]
            logger.warning("adopting existing stripe customer %s for team %s", customer["id"], team.pk)
        else:
            customer = customers_gateway.customer_create(
                team_id=team.pk,
                email=team.billing_email,
                name=team.name,
                idempotency_key=f"customer:team:{team.pk}:{generation}",
            )
        with transaction.atomic():
            Team.objects.select_for_update().filter(pk=team.pk).first()
            profile = BillingProfile.objects.select_for_update().get(pk=profile.pk)
            if profile.stripe_customer_id:
                # Linked meanwhile (SQLite, no advisory lock): the same idempotency key gave the same customer.
                return profile.stripe_customer_id
            profile.stripe_customer_id = customer["id"]
            profile.save(update_fields=["stripe_customer_id", "updated"])
        # The mirror may re-read related objects from Stripe: after the commit, never inside it. A failure here
        # leaves the link (the source of truth) in place; the customer.created webhook mirrors it again.
        mirror_customer_link(team=team, customer=customer)
    logger.info("team %s linked to stripe customer %s", team.pk, customer["id"])
    return customer["id"]


def mirror_customer_link(*, team: Team, customer: dict) -> None:
    """Mirror the customer into dj-stripe and make it the team's subscriber there (the only one)."""
    mirror_store(kind="customer", data=customer)
    mirror_customer_subscriber_set(stripe_customer_id=customer["id"], team_id=team.pk)


@transaction.atomic
def customer_unlink(*, stripe_customer_id: str) -> Team | None:
    """
    The customer was deleted on Stripe: forget the link on both sides (our profile and dj-stripe's subscriber), so
    every reader agrees the team has no customer and the next checkout creates a fresh one. Safe to run twice.
    """
    # dj-stripe's copy is cleared even when no profile points at the customer any more (a replay, a late event):
    # a deleted customer never stays any team's subscriber.
    mirror_customer_subscriber_set(stripe_customer_id=stripe_customer_id, team_id=None)
    profile = BillingProfile.objects.select_for_update().filter(stripe_customer_id=stripe_customer_id).first()
    if profile is None:
        return None
    profile.stripe_customer_id = None
    profile.customer_generation += 1
    profile.save(update_fields=["stripe_customer_id", "customer_generation", "updated"])
    # The pipeline clears the plan cache of the event's team, found through the link this just removed.
    team_id = profile.team_id
    transaction.on_commit(lambda: team_plan_cache_clear(team_id=team_id))
    logger.warning("stripe customer %s deleted: unlinked from team %s", stripe_customer_id, team_id)
    return profile.team


def billing_profile_flag_dispute(*, stripe_customer_id: str | None, note: str) -> Team | None:
    """Flag the team of a disputed charge for staff (first flag time kept, note replaced); None if no team."""
    if not stripe_customer_id:
        return None
    profile = BillingProfile.objects.filter(stripe_customer_id=stripe_customer_id).select_related("team").first()
    if profile is None:
        return None
    profile.dispute_flagged_at = profile.dispute_flagged_at or timezone.now()
    profile.dispute_note = note
    profile.save(update_fields=["dispute_flagged_at", "dispute_note", "updated"])
    return profile.team
