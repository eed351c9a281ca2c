"""
Metering of the project's own API views: `@metered("api_call", credits=0)`.

- `decorator`: the decorator and `meter_request` (rate limit, quota, spend cap, credits; 429/402/503 answers);
- `backend`: where the counters live (`RedisBackend`: one round trip per call; `LocalBackend` without Redis);
- `buffer`: moving buffered call events from Redis to the database (`buffer_flush`).

Built on `usage.services` (credits, event store, policy); nothing in `usage.services` imports this package.
"""
from .buffer import buffer_flush, buffer_length
from .decorator import meter_request, metered

__all__ = ["buffer_flush", "buffer_length", "meter_request", "metered"]
