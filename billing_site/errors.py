"""The project's one error hierarchy. Services raise these; views and the API handler show `user_message`."""


class ApplicationError(Exception):
    """A business rule said no. `code` is stable for programs, `user_message` is safe to show a person."""

    http_status = 400

    def __init__(self, code: str, user_message: str, *, http_status: int | None = None, extra: dict | None = None):
        super().__init__(f"{code}: {user_message}")
        self.code = code
        self.user_message = user_message
        if http_status is not None:
            self.http_status = http_status
        self.extra = extra or {}


class NotFoundError(ApplicationError):
    http_status = 404


class PermissionDeniedError(ApplicationError):
    http_status = 403


class BillingError(ApplicationError):
    """A Stripe or billing rule failure, already translated for the user (see billing.stripe_gateway)."""

    http_status = 402
