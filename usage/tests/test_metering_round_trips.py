"""
The metered hot path's cost claims, counted rather than timed: ONE Redis round trip (one EVALSHA) per admitted or
refused call once the team's counter exists, no database query beyond what the unmetered twin makes, and 503 with
Retry-After whenever Redis cannot answer (including a connection the server dropped, which is retried once).
"""
import socket
import threading

import pytest
import redis
from django.db import connection
from django.test.utils import CaptureQueriesContext
from django.urls import reverse

from usage import ratelimit, services

pytestmark = pytest.mark.django_db
PING = reverse("api:demo-ping")
METERED = reverse("api:demo-metered-ping")


def _command_names(raw: bytes) -> list[bytes]:
    """The command names in one write: RESP arrays `*<n>` then n bulk strings `$<len>`, `<value>`."""
    names, lines, i = [], raw.split(b"\r\n"), 0
    while i < len(lines) and lines[i].startswith(b"*"):
        names.append(lines[i + 2].upper())
        i += 1 + 2 * int(lines[i][1:])
    return names


@pytest.fixture
def redis_commands(monkeypatch):
    """Every round trip any redis-py connection makes in this process: one entry per write, with its commands."""
    trips: list[list[bytes]] = []
    original = redis.connection.AbstractConnection.send_packed_command

    def counting(self, command, check_health=True):
        chunks = command if isinstance(command, list) else [command]
        raw = b"".join(c if isinstance(c, bytes) else bytes(c) for c in chunks)
        trips.append(_command_names(raw))
        return original(self, command, check_health)

    monkeypatch.setattr(redis.connection.AbstractConnection, "send_packed_command", counting)
    return trips


@pytest.fixture
def production_policy_cache(settings):
    # As deployed: limits cached per process (the test default of 0 would read the plan on every call).
    settings.USAGE_POLICY_CACHE_SECONDS = 30
    services.policy_cache_clear()
    yield
    services.policy_cache_clear()


def test_one_redis_round_trip_per_metered_call(api_key_client, needs_redis, set_plan, production_policy_cache,
                                               redis_commands):
    set_plan(api_key_client.team, "pro")
    assert api_key_client.get(METERED).status_code == 200  # first call: loads the policy, seeds the counter
    redis_commands.clear()
    for _ in range(5):
        assert api_key_client.get(METERED).status_code == 200
    assert redis_commands == [[b"EVALSHA"]] * 5
    # The unmetered twin makes none.
    redis_commands.clear()
    assert api_key_client.get(PING).status_code == 200
    assert redis_commands == []


def test_a_refused_call_is_also_one_round_trip(api_key_client, needs_redis, set_plan, production_policy_cache,
                                               redis_commands):
    set_plan(api_key_client.team, "free", rate=1)
    assert api_key_client.get(METERED).status_code == 200
    redis_commands.clear()
    assert api_key_client.get(METERED).status_code == 429
    assert redis_commands == [[b"EVALSHA"]]


def test_metering_adds_no_database_query(api_key_client, needs_redis, set_plan, production_policy_cache):
    set_plan(api_key_client.team, "pro")
    for path in (PING, METERED):  # warm: policy cached, counter seeded
        api_key_client.get(path)
    with CaptureQueriesContext(connection) as plain:
        assert api_key_client.get(PING).status_code == 200
    with CaptureQueriesContext(connection) as metered:
        assert api_key_client.get(METERED).status_code == 200
    assert len(metered.captured_queries) == len(plain.captured_queries)


def test_a_connection_the_server_dropped_is_retried_once_on_a_new_one(api_key_client, needs_redis, set_plan):
    set_plan(api_key_client.team, "pro")
    assert api_key_client.get(METERED).status_code == 200
    from django.conf import settings

    stale = ratelimit._thread_connection(settings.USAGE_REDIS_URL)
    stale._sock.shutdown(socket.SHUT_RDWR)  # as after a Redis restart: the old socket is dead
    response = api_key_client.get(METERED)
    assert response.status_code == 200
    assert ratelimit._thread_connection(settings.USAGE_REDIS_URL)._sock is not None


@pytest.fixture
def hanging_up_server():
    """Accepts connections and closes them at once: a Redis that dies under us."""
    listener = socket.socket()
    listener.bind(("127.0.0.1", 0))
    listener.listen(16)
    stop = threading.Event()

    def serve():
        listener.settimeout(0.2)
        while not stop.is_set():
            try:
                accepted, _ = listener.accept()
            except OSError:
                continue
            accepted.close()

    thread = threading.Thread(target=serve, daemon=True)
    thread.start()
    yield f"redis://127.0.0.1:{listener.getsockname()[1]}/0"
    stop.set()
    thread.join(2)
    listener.close()


def test_redis_hanging_up_answers_503_with_retry_after(api_key_client, needs_redis, settings, set_plan,
                                                       production_policy_cache, hanging_up_server):
    set_plan(api_key_client.team, "pro")
    assert api_key_client.get(METERED).status_code == 200  # policy cached while Redis was fine
    settings.USAGE_REDIS_URL = hanging_up_server
    try:
        answers = [api_key_client.get(METERED) for _ in range(3)]
    finally:
        ratelimit._redis_clients.pop(hanging_up_server, None)
    assert [a.status_code for a in answers] == [503] * 3
    assert all(a["Retry-After"] == "5" for a in answers)
    assert answers[0].json()["error"]["code"] == "metering_unavailable"
    assert api_key_client.get(PING).status_code == 200  # unmetered views keep working
