"""
`stripe_id` path converter: a Stripe object id in a URL (ch_..., pi_..., re_...) is letters, digits and underscores.
Anything else is a 404 before any query runs: a `%00` in a receipt URL reached PostgreSQL, which refuses NUL in a
query (a 500).
"""
from django.urls import register_converter


class StripeIdConverter:
    regex = "[A-Za-z0-9_]{1,255}"

    def to_python(self, value: str) -> str:
        return value

    def to_url(self, value: str) -> str:
        return value


register_converter(StripeIdConverter, "stripe_id")
