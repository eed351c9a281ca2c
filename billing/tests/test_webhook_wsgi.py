"""The WSGI entry point gives Stripe's deliveries the short middleware path, and the site its full one."""
import io
import json
import time

import pytest

from .conftest import sign


def _call(app, path: str, *, method: str = "GET", body: bytes = b"", headers: dict | None = None):
    environ = {"REQUEST_METHOD": method, "PATH_INFO": path, "SERVER_NAME": "testserver", "SERVER_PORT": "80",
               "wsgi.url_scheme": "http", "wsgi.input": io.BytesIO(body), "CONTENT_LENGTH": str(len(body)),
               "CONTENT_TYPE": "application/json", "HTTP_HOST": "testserver", "REMOTE_ADDR": "127.0.0.1",
               **(headers or {})}
    seen = {}

    def start_response(status, response_headers, *args):
        seen["status"], seen["headers"] = int(status.split()[0]), dict(response_headers)

    content = b"".join(app(environ, start_response))
    return seen["status"], seen["headers"], content


@pytest.mark.django_db(transaction=True)
def test_webhook_deliveries_take_the_short_path_and_are_stored(billing_world, settings):
    from billing.models import WebhookEvent
    from billing_site.wsgi import SiteApplication

    settings.ALLOWED_HOSTS = ["testserver"]
    app = SiteApplication()
    event = {"id": "evt_wsgi_1", "object": "event", "type": "radar.early_fraud_warning.created",
             "created": int(time.time()), "livemode": False,
             "data": {"object": {"id": "issfr_1", "object": "radar.early_fraud_warning"}}}
    body = json.dumps(event)
    status, headers, content = _call(app, f"/stripe/webhook/{billing_world.djstripe_uuid}/", method="POST",
                                     body=body.encode(),
                                     headers={"HTTP_STRIPE_SIGNATURE": sign(body, billing_world.secret)})
    assert status == 200 and json.loads(content) == {"received": True, "duplicate": False}
    assert WebhookEvent.objects.filter(stripe_event_id="evt_wsgi_1").count() == 1
    assert "X-Request-ID" in headers or "X-Request-Id" in headers  # request id middleware still runs
    assert "Set-Cookie" not in headers and "Cookie" not in headers.get("Vary", "")  # no session, no locale
    status, _, _ = _call(app, f"/stripe/webhook/{billing_world.djstripe_uuid}/", method="POST", body=b"{}",
                         headers={"HTTP_STRIPE_SIGNATURE": "t=1,v1=forged"})
    assert status == 400

    # Every other path keeps the site's middleware (clickjacking header, session-aware Vary).
    status, headers, _ = _call(app, "/pricing/")
    assert status == 200 and headers.get("X-Frame-Options") == "DENY"
