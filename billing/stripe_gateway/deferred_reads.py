"""
Stripe reads taken out of a database transaction.

Applying a webhook event is one transaction (row lock, mirror, handlers). Some of it needs Stripe's current state:
a re-retrieve when event order is ambiguous, dj-stripe's own handlers for Checkout Sessions, a handler that reads a
session or a refund. None of those calls may run while the transaction holds its locks (a slow Stripe would hold
row locks for seconds, and on SQLite lock the whole database). So the apply runs under `stripe_reads_deferred()`:

1. The transaction runs with every Stripe HTTP request intercepted at the SDK's HTTP client (`DeferringHttpClient`,
   used by the gateway's client and by dj-stripe's module-level calls alike). A GET whose answer was fetched before
   is answered from that copy; any other GET is recorded as missing and raises `StripeReadDeferred`. A write inside
   is a programming error (`StripeWriteInTransaction`): handlers never write to Stripe.
2. When reads were missing, the caller rolls the whole transaction back, fetches them with no transaction open
   (`StripeReads.fetch_missing`), and runs the apply again with the answers in hand. Handlers are deterministic in
   what they read, so the second round finds everything (a third round covers a read that depends on another).

A storm of current events needs no read at all: one round, no Stripe call.
"""
import contextvars
import logging
import time
from dataclasses import dataclass, field
from typing import Any

logger = logging.getLogger("billing.stripe")

_ACTIVE: contextvars.ContextVar["StripeReads | None"] = contextvars.ContextVar("stripe_reads", default=None)


class StripeReadDeferred(Exception):
    """A Stripe GET inside the transaction whose answer is not fetched yet: roll back, fetch it, run again."""


class StripeCallInTransaction(RuntimeError):
    """A Stripe call while a database transaction is open (tests raise it; production logs it)."""


class StripeWriteInTransaction(RuntimeError):
    """A Stripe write was attempted while an event's transaction was open."""


@dataclass
class _Request:
    client: Any
    method: str
    url: str
    headers: Any
    post_data: Any
    max_network_retries: int | None


@dataclass
class StripeReads:
    """The answers fetched before the transaction, and the requests the last round found missing."""

    answers: dict[tuple, tuple] = field(default_factory=dict)  # key → (response, error, fetched_at)
    missing: dict[tuple, _Request] = field(default_factory=dict)
    fetched: int = 0  # HTTP reads made outside the transaction (for the logs and tests)

    def fetch_missing(self) -> int:
        """Make the missing requests now (no transaction may be open); returns how many were made."""
        requests, self.missing = list(self.missing.items()), {}
        for key, request in requests:
            try:
                response = request.client.request_with_retries_now(
                    request.method, request.url, request.headers, request.post_data, request.max_network_retries)
                self.answers[key] = (response, None, time.time())
            except Exception as error:  # noqa: BLE001 - replayed inside, where the SDK raises it as it would have
                self.answers[key] = (None, error, time.time())
            self.fetched += 1
        return len(requests)


def _key(method: str, url: str, post_data: Any) -> tuple:
    return (method.lower(), url, post_data or "")


def _open_transaction() -> bool:
    """Whether this thread's connection has a transaction open (a test case's own wrapping one does not count)."""
    from django.db import connection

    return any(not getattr(block, "_from_testcase", False) for block in connection.atomic_blocks)


def deferred_answer(*, client, method: str, url: str, headers, post_data, max_network_retries):
    """
    Called by `DeferringHttpClient` for each request: the prefetched answer, or the request is recorded as missing.
    Returns None when no deferral is active (the request goes out as usual). A Stripe call with a transaction open
    anywhere else breaks the project's rule: logged (with STRIPE_CALL_IN_TRANSACTION_RAISES, as the tests run, it
    raises, so a new such path fails its test).
    """
    reads = _ACTIVE.get()
    if reads is None:
        if _open_transaction():
            from django.conf import settings

            logger.error("stripe %s %s called with a database transaction open", method.upper(), url.split("?")[0])
            if getattr(settings, "STRIPE_CALL_IN_TRANSACTION_RAISES", False):
                raise StripeCallInTransaction(f"Stripe {method.upper()} {url} with a database transaction open")
        return None
    if method.lower() != "get":
        logger.error("stripe %s %s attempted inside an event's transaction", method.upper(), url)
        raise StripeWriteInTransaction(f"Stripe {method.upper()} {url} inside a database transaction")
    key = _key(method, url, post_data)
    if key in reads.answers:
        response, error, _ = reads.answers[key]
        if error is not None:
            raise error
        return response
    reads.missing.setdefault(key, _Request(client, method, url, headers, post_data, max_network_retries))
    raise StripeReadDeferred(f"GET {url}")


def atomic_with_stripe_reads(fn, *, rounds: int = 12):
    """
    `fn()` in one transaction whose Stripe reads are fetched before it, with none open (see the module docstring):
    for work that must be atomic but may need Stripe, such as dj-stripe's `sync_from_stripe_data`, which fetches
    related objects (a charge's balance transaction, a session's payment intent) inside its own transaction.
    Already inside a deferral (an event's apply), or inside a caller's transaction that we cannot step out of, it
    just runs `fn()`: the outer round or the caller owns the transaction.
    """
    from django.db import transaction

    if _ACTIVE.get() is not None or _open_transaction():
        return fn()
    reads = StripeReads()
    for round_number in range(1, rounds + 1):
        try:
            with transaction.atomic(), stripe_reads_deferred(reads):
                result = fn()
                if reads.missing:  # deferred and swallowed on the way: never commit what ran without them
                    raise StripeReadDeferred(f"{len(reads.missing)} Stripe reads missing")
            return result
        except Exception:
            if not reads.missing or round_number == rounds:
                raise
            reads.fetch_missing()
    raise AssertionError("unreachable: the last round returns or raises")


class stripe_reads_deferred:  # noqa: N801 - used as a context manager, like transaction.atomic
    """Within this block every Stripe request is answered from `reads` or deferred (see the module docstring)."""

    def __init__(self, reads: StripeReads):
        self.reads = reads
        self._token = None

    def __enter__(self) -> StripeReads:
        self._token = _ACTIVE.set(self.reads)
        return self.reads

    def __exit__(self, *exc_info) -> None:
        _ACTIVE.reset(self._token)
