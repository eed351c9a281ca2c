import pytest

from accounts.tests.factories import make_team_with_owner


@pytest.fixture
def team(db):
    team, _owner = make_team_with_owner()
    return team


def emulator_requests(emulator, method: str | None = None, path_prefix: str = "/v1/") -> list[dict]:
    query = f"/_emulator/requests?path_prefix={path_prefix}" + (f"&method={method}" if method else "")
    return emulator.control("GET", query)["data"]
