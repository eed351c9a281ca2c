"""
The one place that talks to Stripe (with its sibling modules in this package). Everything here:

- configures the SDK from settings on each call (api key, api base, pinned api version, timeouts, network retries),
  so tests that point STRIPE_API_BASE elsewhere are honoured, and dj-stripe's module-level calls use the same;
- requires an idempotency key on every write, built by the caller from its own row (never random per attempt);
- turns Stripe's exceptions into BillingError(code, user_message) and logs status, code and Stripe's request id.
"""
import functools
import inspect
import logging
from collections.abc import Callable
from typing import Any, TypeVar

import stripe
from django.conf import settings
from django.utils.translation import gettext, gettext_lazy, gettext_noop

from billing_site.errors import BillingError

logger = logging.getLogger("billing.stripe")

T = TypeVar("T")

_clients: dict[tuple, stripe.StripeClient] = {}


class DeferringHttpClient(stripe.RequestsClient):
    """
    The SDK's HTTP client for every call (the gateway's StripeClient and dj-stripe's module-level calls): as the
    stock one, except that inside `deferred_reads.stripe_reads_deferred` (an event's transaction) a request is
    answered from the reads fetched before the transaction, or deferred. See deferred_reads.py.
    """

    def request_with_retries(self, method, url, headers, post_data=None, max_network_retries=None, *, _usage=None):
        from .deferred_reads import deferred_answer

        answer = deferred_answer(client=self, method=method, url=url, headers=headers, post_data=post_data,
                                 max_network_retries=max_network_retries)
        if answer is not None:
            return answer
        return super().request_with_retries(method, url, headers, post_data, max_network_retries, _usage=_usage)

    def request_with_retries_now(self, method, url, headers, post_data=None, max_network_retries=None):
        """The request itself, never deferred (deferred_reads fetches the missing reads with this)."""
        return super().request_with_retries(method, url, headers, post_data, max_network_retries)


def _client_settings() -> tuple:
    return (
        settings.STRIPE_SECRET_KEY,
        settings.STRIPE_API_BASE or None,
        settings.STRIPE_API_VERSION,
        settings.STRIPE_TIMEOUT_SECONDS,
        settings.STRIPE_MAX_NETWORK_RETRIES,
    )


def configure_module_sdk() -> None:
    """dj-stripe calls the SDK's module-level API: give it the same base, version, key and retries."""
    api_key, api_base, api_version, timeout, retries = _client_settings()
    stripe.api_key = api_key
    stripe.api_base = api_base or "https://api.stripe.com"
    stripe.api_version = api_version
    stripe.max_network_retries = retries
    if not isinstance(stripe.default_http_client, DeferringHttpClient) or getattr(
        stripe.default_http_client, "_timeout", None
    ) != timeout:
        stripe.default_http_client = DeferringHttpClient(timeout=timeout)


def client() -> stripe.StripeClient:
    """A configured StripeClient, cached per configuration (tests switch STRIPE_API_BASE)."""
    key = _client_settings()
    cached = _clients.get(key)
    if cached is None:
        api_key, api_base, api_version, timeout, retries = key
        cached = stripe.StripeClient(
            api_key,
            stripe_version=api_version,
            base_addresses={"api": api_base} if api_base else None,
            max_network_retries=retries,
            http_client=DeferringHttpClient(timeout=timeout),
        )
        _clients[key] = cached
    configure_module_sdk()
    return cached


def write_options(idempotency_key: str) -> dict:
    """Request options for a write. An idempotency key is mandatory: derive it from the project's own row."""
    if not idempotency_key:
        raise ValueError("Every Stripe write needs an idempotency key derived from the project's own row.")
    return {"idempotency_key": idempotency_key}


# Messages a person may see. Stripe's own card messages are written for end users and are passed through.
# Stripe's card messages (written for card holders, in English), listed so that they are translated: _translate
# passes each through gettext, and an unlisted one is shown as Stripe wrote it.
STRIPE_CARD_MESSAGES = (
    gettext_noop("Your card was declined."),
    gettext_noop("Your card has insufficient funds."),
    gettext_noop("Your card has expired."),
    gettext_noop("Your card's security code is incorrect."),
    gettext_noop("Your card was declined. This transaction requires authentication."),
    gettext_noop("An error occurred while processing your card. Try again in a little bit."),
    gettext_noop("We are unable to authenticate your payment method. Please choose a different payment method and "
                 "try again."),
)
# Translated when the error is made (the request's language is active then): pages and API answers show them as is.
_UNAVAILABLE = gettext_lazy("Our payment provider could not be reached. Nothing was charged; please try again in a minute.")
_GENERIC = gettext_lazy("The payment provider refused this request. Nothing was changed; our team has been told.")


def _translate(error: stripe.StripeError, operation: str) -> BillingError:
    request_id = getattr(error, "request_id", None)
    code = getattr(error, "code", None)
    log_fields = {
        "operation": operation,
        "stripe_request_id": request_id,
        "http_status": getattr(error, "http_status", None),
        "stripe_code": code,
        "stripe_error": type(error).__name__,
    }
    if isinstance(error, stripe.CardError):
        logger.info("stripe card error in %s (request %s): %s", operation, request_id, code, extra=log_fields)
        # Stripe words card messages for the card holder, in English: the common ones have our translation.
        return BillingError(code or "card_declined", gettext(error.user_message or "Your card was declined."),
                            extra={"decline_code": getattr(error, "error", None) and error.error.decline_code})
    if isinstance(error, stripe.APIConnectionError | stripe.RateLimitError) or (
        isinstance(error, stripe.APIError) and (getattr(error, "http_status", 500) or 500) >= 500
    ):
        logger.warning("stripe unavailable in %s (request %s)", operation, request_id, extra=log_fields)
        return BillingError("stripe_unavailable", str(_UNAVAILABLE), http_status=503)
    if isinstance(error, stripe.InvalidRequestError) and code == "resource_missing":
        logger.warning("stripe object missing in %s (request %s): %s", operation, request_id, error.user_message,
                       extra=log_fields)
        return BillingError("stripe_resource_missing", str(_GENERIC), http_status=404)
    logger.error("stripe error in %s (request %s): %s", operation, request_id, error.user_message or str(error),
                 extra=log_fields)
    return BillingError(f"stripe_{code}" if code else "stripe_error", str(_GENERIC), http_status=502)


def stripe_operation(operation: str) -> Callable[[Callable[..., T]], Callable[..., T]]:
    """Decorator for gateway functions: translate Stripe errors into BillingError, with the request id logged."""

    def decorator(func: Callable[..., T]) -> Callable[..., T]:
        if inspect.isgeneratorfunction(func):
            # A lazy list (auto-pagination) calls Stripe while the caller iterates, after the call itself returned.
            @functools.wraps(func)
            def generator_wrapper(*args: Any, **kwargs: Any):
                try:
                    yield from func(*args, **kwargs)
                except stripe.StripeError as error:
                    raise _translate(error, operation) from error

            return generator_wrapper

        @functools.wraps(func)
        def wrapper(*args: Any, **kwargs: Any) -> T:
            try:
                return func(*args, **kwargs)
            except stripe.StripeError as error:
                raise _translate(error, operation) from error

        return wrapper

    return decorator


def to_dict(stripe_object: Any) -> dict:
    """
    Plain, JSON-safe dict of an SDK object: what every gateway function returns. The SDK turns Stripe's decimal
    strings (`unit_amount_decimal` of metered prices, ...) into Decimal; `for_json` puts back the string Stripe
    sent, so the dict can go as it is into a JSON column (dj-stripe's mirror, stored events) or an API answer.
    This is the project's one Decimal-to-JSON conversion.
    """
    return stripe_object.to_dict(for_json=True)
