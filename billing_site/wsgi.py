"""
WSGI entry point (gunicorn `billing_site.wsgi:application`).

Stripe's webhook deliveries (`/stripe/webhook/...`) take a short path: the same URLconf and view, but only the
middleware a signed machine-to-machine POST needs (`BILLING_WEBHOOK_MIDDLEWARE`: metrics, request id, body bound,
security headers). Sessions, locale, CSRF (the view is exempt anyway), authentication, OTP, messages and the login
lockout do nothing for Stripe and cost about a third of the endpoint's time per event (issue 12: ingest speed).
"""
import os

from django.core.handlers.wsgi import WSGIHandler
from django.core.wsgi import get_wsgi_application

os.environ.setdefault("DJANGO_SETTINGS_MODULE", "billing_site.settings")

WEBHOOK_PATH_PREFIX = "/stripe/webhook/"


class WebhookWSGIHandler(WSGIHandler):
    """Django's handler with the webhook middleware list instead of MIDDLEWARE."""

    def load_middleware(self, is_async: bool = False) -> None:
        from django.conf import settings

        site_middleware = settings.MIDDLEWARE
        settings.MIDDLEWARE = settings.BILLING_WEBHOOK_MIDDLEWARE  # read once, here, at start-up
        try:
            super().load_middleware(is_async)
        finally:
            settings.MIDDLEWARE = site_middleware


class SiteApplication:
    """Routes webhook deliveries to the short handler and everything else to the site's."""

    def __init__(self) -> None:
        self.site = get_wsgi_application()  # django.setup() happens here
        self.webhooks = WebhookWSGIHandler()

    def __call__(self, environ, start_response):
        if environ.get("PATH_INFO", "").startswith(WEBHOOK_PATH_PREFIX):
            return self.webhooks(environ, start_response)
        return self.site(environ, start_response)


application = SiteApplication()
