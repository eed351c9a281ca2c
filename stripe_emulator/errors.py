"""Stripe's error object, raised anywhere inside a handler and rendered by the server."""
from __future__ import annotations

from typing import Any


class StripeError(Exception):
    """An error answered to the client with Stripe's `{"error": {...}}` body."""

    def __init__(
        self,
        message: str,
        *,
        status: int = 400,
        type: str = "invalid_request_error",
        code: str | None = None,
        param: str | None = None,
        decline_code: str | None = None,
        extra: dict[str, Any] | None = None,
        store_idempotent: bool = True,
    ) -> None:
        super().__init__(message)
        self.message = message
        self.status = status
        self.type = type
        self.code = code
        self.param = param
        self.decline_code = decline_code
        self.extra = extra or {}
        # Stripe does not save an idempotent result when the request failed validation
        # before the endpoint started executing.
        self.store_idempotent = store_idempotent

    def body(self, request_id: str | None) -> dict[str, Any]:
        err: dict[str, Any] = {"type": self.type, "message": self.message}
        if self.code:
            err["code"] = self.code
            err["doc_url"] = "https://stripe.com/docs/error-codes/" + self.code.replace("_", "-")
        if self.param is not None:
            err["param"] = self.param
        if self.decline_code:
            err["decline_code"] = self.decline_code
        if request_id:
            err["request_log_url"] = f"https://dashboard.stripe.com/test/logs/{request_id}"
        err.update(self.extra)
        return {"error": err}


def param_error(message: str, param: str, code: str | None = None) -> StripeError:
    return StripeError(message, param=param, code=code, store_idempotent=False)


def unknown_param(param: str) -> StripeError:
    return param_error(f"Received unknown parameter: {param}", param, "parameter_unknown")


def missing_param(param: str) -> StripeError:
    return param_error(f"Missing required param: {param}.", param, "parameter_missing")


def no_such(kind: str, obj_id: str, param: str = "id") -> StripeError:
    """Stripe's 404 for an unknown id, e.g. "No such customer: 'cus_x'"."""
    return StripeError(
        f"No such {kind}: '{obj_id}'", status=404, code="resource_missing", param=param
    )


def state_error(message: str, code: str | None = None, param: str | None = None) -> StripeError:
    return StripeError(message, status=400, code=code, param=param)
