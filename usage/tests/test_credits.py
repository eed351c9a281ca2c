import pytest
from django.db import IntegrityError, connection, transaction

from accounts.tests.factories import TeamFactory, make_team_with_owner
from billing_site.errors import ApplicationError
from usage import selectors, services
from usage.models import CreditBalance, CreditLedgerEntry
from usage.services import InsufficientCreditsError

pytestmark = pytest.mark.django_db
Reason = CreditLedgerEntry.Reason


def ledger_sum(team) -> int:
    return sum(CreditLedgerEntry.objects.filter(team=team).values_list("delta", flat=True))


def test_signup_grants_three_credits_once():
    team, owner = make_team_with_owner()
    assert selectors.credits_balance(team=team) == 3
    entry = CreditLedgerEntry.objects.get(team=team)
    assert (entry.reason, entry.delta, entry.balance_after, entry.created_by) == (Reason.SIGNUP_GRANT, 3, 3, owner)
    services.credits_signup_grant(team=team, user=owner)  # a replayed hook grants nothing more
    assert selectors.credits_balance(team=team) == 3 and CreditLedgerEntry.objects.filter(team=team).count() == 1


def test_grant_is_idempotent_on_team_reason_reference():
    team = TeamFactory()
    first = services.credits_grant(team=team, amount=10, reason=Reason.PURCHASE, reference="cs_test_1")
    again = services.credits_grant(team=team, amount=10, reason=Reason.PURCHASE, reference="cs_test_1")
    assert again.pk == first.pk
    assert selectors.credits_balance(team=team) == 10
    assert selectors.credits_purchased_for(team=team, reference="cs_test_1") == 10
    assert selectors.credits_purchased_for(team=team, reference="cs_other") == 0
    # The same reference under another reason is another movement.
    services.credits_grant(team=team, amount=5, reason=Reason.STAFF_GRANT, reference="cs_test_1")
    assert selectors.credits_balance(team=team) == 15 == ledger_sum(team)


def test_remove_never_goes_below_zero_and_records_nothing_when_short():
    team = TeamFactory()
    services.credits_grant(team=team, amount=5, reason=Reason.STAFF_GRANT, reference="s1")
    entry = services.credits_remove(team=team, amount=4, reason=Reason.USAGE, reference="call:1")
    assert (entry.delta, entry.balance_after) == (-4, 1)
    with pytest.raises(InsufficientCreditsError) as caught:
        services.credits_remove(team=team, amount=2, reason=Reason.USAGE, reference="call:2")
    assert caught.value.http_status == 402
    assert caught.value.extra["balance"] == 1 and caught.value.extra["required"] == 2
    assert "/pricing/" in caught.value.user_message
    assert selectors.credits_balance(team=team) == 1 == ledger_sum(team)
    assert not CreditLedgerEntry.objects.filter(reference="call:2").exists()


def test_remove_replay_returns_the_original_even_when_the_balance_is_now_short():
    team = TeamFactory()
    services.credits_grant(team=team, amount=3, reason=Reason.STAFF_GRANT, reference="s1")
    first = services.credits_remove(team=team, amount=3, reason=Reason.USAGE, reference="call:x")
    again = services.credits_remove(team=team, amount=3, reason=Reason.USAGE, reference="call:x")
    assert again.pk == first.pk and selectors.credits_balance(team=team) == 0


def test_remove_from_a_team_without_balance_row_is_insufficient():
    team = TeamFactory()
    with pytest.raises(InsufficientCreditsError):
        services.credits_remove(team=team, amount=1, reason=Reason.USAGE, reference="call:1")


def test_partial_removal_takes_what_is_there_and_records_the_shortfall():
    team = TeamFactory()
    services.credits_grant(team=team, amount=10, reason=Reason.PURCHASE, reference="pi_1")
    services.credits_remove(team=team, amount=7, reason=Reason.USAGE, reference="call:1")
    entry = services.credits_remove(team=team, amount=10, reason=Reason.REFUND_CLAWBACK, reference="re_1",
                                    allow_partial=True)
    assert entry.delta == -3 and entry.balance_after == 0
    assert entry.metadata == {"requested": 10, "shortfall": 7}
    empty = services.credits_remove(team=team, amount=4, reason=Reason.STAFF_REMOVAL, reference="staff:9",
                                    allow_partial=True)
    assert empty.delta == 0 and empty.metadata["shortfall"] == 4
    assert selectors.credits_balance(team=team) == 0 == ledger_sum(team)


@pytest.mark.parametrize("amount", [0, -1, 1.5, True])
def test_invalid_amounts_are_refused(amount):
    team = TeamFactory()
    with pytest.raises(ApplicationError):
        services.credits_grant(team=team, amount=amount, reason=Reason.STAFF_GRANT, reference="x")
    with pytest.raises(ApplicationError):
        services.credits_remove(team=team, amount=amount, reason=Reason.USAGE, reference="x")


def test_unknown_reason_is_refused():
    with pytest.raises(ApplicationError):
        services.credits_grant(team=TeamFactory(), amount=1, reason="gift", reference="x")


def test_database_refuses_a_negative_balance():
    team = TeamFactory()
    CreditBalance.objects.create(team=team, balance=1)
    with pytest.raises(IntegrityError), transaction.atomic():
        CreditBalance.objects.filter(team=team).update(balance=-1)


def test_grant_inside_a_failed_outer_transaction_leaves_nothing():
    team = TeamFactory()
    with pytest.raises(RuntimeError), transaction.atomic():
        services.credits_grant(team=team, amount=10, reason=Reason.PURCHASE, reference="cs_rollback")
        raise RuntimeError("webhook handler failed after the grant")
    assert selectors.credits_balance(team=team) == 0
    assert not CreditLedgerEntry.objects.filter(team=team).exists()
    assert connection.in_atomic_block  # pytest-django's test transaction is still usable
