"""
`@metered("api_call", credits=0)`: metering of the project's own API views.

Per call: the team's policy (plan limits and spend cap, cached per process for USAGE_POLICY_CACHE_SECONDS), one
admission by the backend (rate limit, quota, spend cap; see usage.metering.backend), and credits taken only when they
must be (premium endpoints, a `credits` plan past its included amount), because credits must never be spent twice.
"""
from __future__ import annotations

import functools
import logging
import math
import uuid
from dataclasses import dataclass

from django.conf import settings
from django.utils import timezone
from django.utils.translation import gettext as _
from redis.exceptions import RedisError
from rest_framework.request import Request
from rest_framework.response import Response

from accounts.api.mixins import request_team
from accounts.models import APIKey
from billing_site.api_errors import error_response

from .. import ratelimit
from ..models import CreditLedgerEntry
from ..periods import period_for
from ..services.credits import credits_remove
from ..services.errors import InsufficientCreditsError, SpendCapReachedError, metric_label
from ..services.policy import team_metering_policy
from .backend import Admission, CallEvent, get_backend

logger = logging.getLogger(__name__)


@dataclass
class MeteringOutcome:
    admission: Admission
    denied: Response | None = None
    event: CallEvent | None = None


def _deny(code: str, message: str, status: int, admission: Admission, details: dict | None = None,
          retry_after: int | None = None) -> Response:
    headers = admission.rate_headers()
    if retry_after is not None:
        headers["Retry-After"] = str(retry_after)
    return error_response(code, message, status, details, headers=headers)


def _metering_unavailable(*, limit: int) -> MeteringOutcome:
    # Fail closed: an unmetered call would be unbilled and unlimited. Programs retry on 503 + Retry-After.
    return MeteringOutcome(Admission(status=ratelimit.RATE_LIMITED, limit=limit, remaining=0), error_response(
        "metering_unavailable", "Usage metering is briefly unavailable. Please retry in a few seconds.", 503,
        headers={"Retry-After": "5"}))


def meter_request(*, request: Request, metric: str, quantity: int = 1, credits: int = 0) -> MeteringOutcome:
    """
    Admit one API call for the request's team: rate limit, quota, spend cap, credits. Returns the outcome; when
    `denied` is set, answer with it (429 or 402) and do not run the view.
    """
    team = request_team(request)
    try:
        # Inside the Redis guard too: the plan behind the policy is read through the cache (issue 11: a team whose
        # policy was not cached in this process answered 500 while Redis was down).
        policy = team_metering_policy(team=team)
    except RedisError:
        logger.exception("metering policy unavailable (Redis) for team %s", team.pk, extra={"team_id": team.pk})
        return _metering_unavailable(limit=0)
    period = period_for()
    api_key: APIKey | None = getattr(request, "api_key", None)
    user = getattr(request, "user", None)
    # The key is ours (never the client's X-Request-ID): a client must not be able to make calls count once.
    event = CallEvent(team_id=team.pk, metric=metric, quantity=quantity, idempotency_key=f"call:{uuid.uuid4().hex}",
                      occurred_at=timezone.now().isoformat(), api_key_id=api_key.pk if api_key else None,
                      user_id=user.pk if user is not None and user.is_authenticated else None,
                      metadata={"path": request.path[:200]})
    backend = get_backend()
    try:
        admission = backend.admit(policy=policy, event=event, period=period, defer=credits > 0)
    except RedisError:
        # Fail closed: an unmetered call would be unbilled and unlimited. Programs retry on 503 + Retry-After.
        logger.exception("metering unavailable (Redis) for team %s", team.pk, extra={"team_id": team.pk})
        return _metering_unavailable(limit=policy.rate_limit_per_second)
    if admission.status == ratelimit.RATE_LIMITED:
        retry_after = max(1, math.ceil(admission.retry_after_ms / 1000))
        return MeteringOutcome(admission, _deny(
            "rate_limited",
            f"Too many requests: your plan allows {admission.limit} per second. Retry in {retry_after} s, or upgrade "
            f"for a higher limit.",
            429, admission, {"limit_per_second": admission.limit, "retry_after_seconds": retry_after},
            retry_after=retry_after))
    if admission.status == ratelimit.SPEND_CAP:
        error = SpendCapReachedError(metric=metric, cap_units=policy.cap_units.get(metric, 0))
        return MeteringOutcome(admission, _deny(error.code, error.user_message, 402, admission, error.extra))
    if admission.status == ratelimit.NEEDS_PAYMENT:
        included = policy.included.get(metric, 0)
        over_units = 0
        if policy.overage == "credits":
            over_units = min(quantity, max(0, admission.used_before + quantity - included))
        cost = credits + over_units * settings.USAGE_CREDITS_PER_OVERAGE_UNIT
        if cost > 0:
            try:
                credits_remove(team=team, amount=cost, reason=CreditLedgerEntry.Reason.USAGE,
                               reference=event.idempotency_key, note=f"{request.path[:200]} ×{quantity}")
            except InsufficientCreditsError as error:
                if over_units and not credits:
                    error.user_message = _(
                        "Your plan's %(included)s included %(metric)s for this month are used up and the team has no "
                        "credits left. Buy credits at %(buy_credits_url)s or upgrade your plan at %(upgrade_url)s."
                    ) % {"included": included, "metric": metric_label(metric), **error.extra}
                    error.code = "quota_exceeded"
                return MeteringOutcome(admission, _deny(error.code, error.user_message, 402, admission, error.extra))
        admission.used_after = backend.record(event=event, period=period)
        admission.status = ratelimit.ADMITTED
    return MeteringOutcome(admission, None, event)


def _find_request(args) -> Request:
    for arg in args[:2]:
        if isinstance(arg, Request):
            return arg
    raise TypeError("@metered decorates DRF handlers: put it under @api_view or on an APIView method.")


def metered(metric: str = "api_call", credits: int = 0, quantity: int = 1):
    """
    Meter a DRF handler: `@metered("api_call")` on an APIView method (or under `@api_view`). Every call is rate
    limited per team (429 + Retry-After), counted against the plan's included amount, paid from credits past it on a
    `credits` plan (402 when none are left), held to the team's spend cap on a metered plan (402), and costs `credits`
    credits on every plan when set. Answers carry X-RateLimit-Limit/Remaining/Reset.
    """
    if credits < 0 or quantity <= 0:
        raise ValueError("credits must be >= 0 and quantity > 0")

    def decorator(handler):
        @functools.wraps(handler)
        def wrapper(*args, **kwargs):
            request = _find_request(args)
            outcome = meter_request(request=request, metric=metric, quantity=quantity, credits=credits)
            if outcome.denied is not None:
                return outcome.denied
            response = handler(*args, **kwargs)
            for name, value in outcome.admission.rate_headers().items():
                response[name] = value
            return response

        wrapper.metered_metric = metric
        wrapper.metered_credits = credits
        return wrapper

    return decorator
