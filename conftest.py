"""Project-wide pytest fixtures: the Stripe emulator over real HTTP, and database-kind markers."""
import os
import uuid
from pathlib import Path

import pytest
from django.conf import settings


def pytest_configure(config):
    # A Redis cache outlives the test run: give this session its own key prefix (see _cache_cleared).
    if settings.CACHES["default"]["BACKEND"].endswith("RedisCache"):
        settings.CACHES["default"]["KEY_PREFIX"] = f"test-{uuid.uuid4().hex[:12]}"


def pytest_collection_modifyitems(config, items):
    if settings.USING_POSTGRES:
        return
    skip = pytest.mark.skip(reason="needs PostgreSQL (set DATABASE_URL); SQLite has no row locks")
    for item in items:
        if "postgres" in item.keywords:
            item.add_marker(skip)


@pytest.fixture(scope="session")
def stripe_emulator_server():
    """One emulator per test session, on an ephemeral port, reached over real HTTP."""
    from stripe_emulator.testing import start_emulator

    server = start_emulator(port=0, webhook_retry_scale=0.0005)
    yield server
    server.stop()


@pytest.fixture
def stripe_emulator(stripe_emulator_server, settings):
    """A clean emulator for each test, with the project pointed at it."""
    stripe_emulator_server.reset()
    settings.STRIPE_API_BASE = stripe_emulator_server.url
    yield stripe_emulator_server


@pytest.fixture(autouse=True)
def _celery_eager_unless_worker(request):
    """
    Tasks run in-process in tests, except tests marked `celery_worker`, which run a real worker on the broker.

    Celery reads the namespaced key (CELERY_TASK_ALWAYS_EAGER, from Django settings) before the plain one, so both
    are set: with REDIS_URL set the settings say "not eager" and the plain key alone would be ignored.
    """
    from billing_site.celery import app

    eager = "celery_worker" not in request.keywords
    keys = ("task_always_eager", "CELERY_TASK_ALWAYS_EAGER", "task_eager_propagates", "CELERY_TASK_EAGER_PROPAGATES")
    previous = {key: app.conf.get(key) for key in keys}
    app.conf.task_always_eager = app.conf.CELERY_TASK_ALWAYS_EAGER = eager
    # Like a worker: a task's exception is recorded on its result, not raised into the caller.
    app.conf.task_eager_propagates = app.conf.CELERY_TASK_EAGER_PROPAGATES = False
    yield
    for key, value in previous.items():
        app.conf[key] = value


@pytest.fixture(autouse=True)
def _staff_second_factor_only_where_tested(request, settings):
    """
    The staff second factor (STAFF_OTP_REQUIRED, always on outside tests) is on only in tests marked `staff_otp`:
    the back-office tests log staff in with force_login and test the back office, not the login.
    """
    settings.STAFF_OTP_REQUIRED = "staff_otp" in request.keywords


@pytest.fixture(autouse=True)
def _no_stripe_call_in_a_transaction(settings):
    # The project's rule, enforced in every test: a Stripe call with a database transaction open (other than the
    # test case's own) raises instead of only being logged (billing/stripe_gateway/deferred_reads.py).
    settings.STRIPE_CALL_IN_TRANSACTION_RAISES = True


@pytest.fixture(autouse=True)
def _fast_password_hashing(settings):
    # PBKDF2's deliberate slowness is for attackers, not for the test suite.
    settings.PASSWORD_HASHERS = ["django.contrib.auth.hashers.MD5PasswordHasher"]


@pytest.fixture(autouse=True)
def _djstripe_account_memo_cleared():
    # Each test starts from its own database state: a remembered dj-stripe account from another test may be gone.
    from billing.services.mirror import djstripe_account_memo_clear

    djstripe_account_memo_clear()
    yield
    djstripe_account_memo_clear()


@pytest.fixture(autouse=True)
def _cache_cleared():
    # Cached reads are keyed by row id (e.g. a team's plan for 60 s), and SQLite reuses ids after a test rolls back:
    # a value cached by one test could answer for another test's new row. Only the in-process cache is cleared; a
    # Redis cache is also the Celery broker's database (FLUSHDB would drop queue bindings), and it gets a fresh key
    # prefix per test session instead (pytest_configure), so an earlier run's values are never read.
    from django.core.cache import caches
    from django.core.cache.backends.locmem import LocMemCache

    if isinstance(caches["default"], LocMemCache):
        caches["default"].clear()
    yield


@pytest.fixture
def screenshots_dir(tmp_path) -> Path:
    """
    Where browser tests save their screenshots: a temporary directory, so a test run never rewrites tracked files;
    `SCREENSHOTS_DIR=docs/screenshots` (a path from the project root, or absolute) refreshes the committed ones.
    """
    target = Path(os.environ["SCREENSHOTS_DIR"]) if os.environ.get("SCREENSHOTS_DIR") else tmp_path / "screenshots"
    target.mkdir(parents=True, exist_ok=True)
    return target
