"""The one retry backoff: webhook events, outbox emails and refund calls wait base, 2×base, 4×base ... capped."""


def backoff_seconds(*, attempts: int, base: float, cap: float = 3600.0) -> float:
    """How long to wait after `attempts` failed tries (1 → `base`), never more than `cap`."""
    return min(base * 2 ** max(attempts - 1, 0), cap)
