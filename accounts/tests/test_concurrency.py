"""Races that only a real database with row locks can referee (PostgreSQL; skipped on SQLite)."""
import threading

import pytest
from django.db import connection

from accounts import services
from accounts.models import Invitation, Membership
from billing_site.errors import ApplicationError

from .factories import UserFactory, make_team_with_owner

# Real transactions (each thread commits on its own connection). pytest-django runs transactional tests after the
# others in either order, so the flush at their end cannot take rows away from the non-transactional tests.
pytestmark = [pytest.mark.postgres, pytest.mark.django_db(transaction=True)]


def run_at_once(*calls):
    """Start every call in its own thread at the same moment; return each one's result or exception."""
    barrier = threading.Barrier(len(calls))
    results = [None] * len(calls)

    def runner(index, call):
        try:
            barrier.wait()
            results[index] = call()
        except Exception as exc:  # the outcome is what the test asserts on
            results[index] = exc
        finally:
            connection.close()

    threads = [threading.Thread(target=runner, args=(i, call)) for i, call in enumerate(calls)]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join()
    return results


def test_two_invitees_accepting_at_once_cannot_exceed_the_seats(seat_limit):
    seat_limit(3)
    team, owner = make_team_with_owner()
    tokens = []
    for email in ("a@example.com", "b@example.com"):
        _invitation, url = services.invitation_create(team=team, email=email, role="member", invited_by=owner)
        tokens.append((UserFactory(email=email), url.rsplit("/", 2)[-2]))
    seat_limit(2)  # the plan shrank: owner + one member
    results = run_at_once(*[lambda u=user, t=token: services.invitation_accept(token=t, user=u)
                            for user, token in tokens])
    assert sum(isinstance(result, Membership) for result in results) == 1
    refused = [result for result in results if isinstance(result, ApplicationError)]
    assert len(refused) == 1 and refused[0].code == "seat_limit"
    assert team.memberships.count() == 2


def test_two_invitations_at_once_cannot_take_the_same_last_seat(seat_limit):
    seat_limit(2)
    team, owner = make_team_with_owner()
    results = run_at_once(
        lambda: services.invitation_create(team=team, email="x@example.com", role="member", invited_by=owner),
        lambda: services.invitation_create(team=team, email="y@example.com", role="member", invited_by=owner),
    )
    assert sum(isinstance(result, tuple) for result in results) == 1
    assert Invitation.objects.filter(team=team, status=Invitation.Status.PENDING).count() == 1
