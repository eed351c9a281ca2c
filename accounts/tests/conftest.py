import pytest


@pytest.fixture
def seat_limit(monkeypatch):
    """Set the seats every team's plan allows (the free plan has one) without depending on billing's data."""

    def set_limit(seats: int | None) -> None:
        monkeypatch.setattr("accounts.selectors.SEAT_LIMIT_PROVIDER", lambda *, team: seats)

    return set_limit
