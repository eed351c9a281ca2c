# The billing app's own records live here; Stripe's objects are mirrored by dj-stripe's models.
from .customers import BillingProfile  # noqa: F401
from .webhooks import WebhookEvent  # noqa: F401
