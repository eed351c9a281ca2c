"""
Stripe's webhooks land here: `/stripe/webhook/<djstripe_uuid>/` (dj-stripe's URL scheme, so endpoints registered
through dj-stripe's WebhookEndpoint work unchanged). The view only verifies, stores and acknowledges; processing is
a Celery task enqueued on commit. Nothing here calls Stripe, so the answer is fast and never a 500 loop.
"""
import json
import logging
import time

from django.conf import settings
from django.http import HttpRequest, HttpResponse, HttpResponseBadRequest, JsonResponse
from django.views.decorators.csrf import csrf_exempt
from django.views.decorators.http import require_POST

from ..services.webhooks import webhook_event_record
from ..stripe_gateway.sync import SignatureError, webhook_signature_verify

logger = logging.getLogger("billing.webhooks")

# Endpoint secrets by dj-stripe uuid, cached briefly in-process: the lookup would otherwise be a query per event.
_ENDPOINT_CACHE: dict[str, tuple[float, str, str] | None] = {}
_ENDPOINT_CACHE_SECONDS = 30.0


def _endpoint_secret(uuid: str) -> tuple[str, str] | None:
    cached = _ENDPOINT_CACHE.get(uuid)
    if cached is not None and cached[0] > time.monotonic():
        return cached[1], cached[2]
    from djstripe.models import WebhookEndpoint

    row = WebhookEndpoint.objects.filter(djstripe_uuid=uuid).values_list("id", "secret").first()
    if row is None or not row[1]:
        return None
    _ENDPOINT_CACHE[uuid] = (time.monotonic() + _ENDPOINT_CACHE_SECONDS, row[0], row[1])
    return row[0], row[1]


def _event_shape_check(payload) -> None:
    """
    ValueError unless the body looks like a Stripe event: a JSON object with string `id` and `type`, an object
    `data.object` and an integer `created`. A signed body can still be any JSON (a list, an `id` that is a number):
    before this check those answered 500 from the record path instead of 400.
    """
    if not isinstance(payload, dict) or payload.get("object") != "event":
        raise ValueError("not a Stripe event")
    for name in ("id", "type"):
        value = payload.get(name)
        if not isinstance(value, str) or not value or len(value) > 255:
            raise ValueError(f"the event's {name} must be a non-empty string")
    data = payload.get("data")
    if not isinstance(data, dict) or not isinstance(data.get("object", {}), dict):
        raise ValueError("the event's data.object must be an object")
    created = payload.get("created")
    if created is not None and (not isinstance(created, int) or isinstance(created, bool) or created < 0
                                or created > 2**33):
        raise ValueError("the event's created must be a unix timestamp")


@csrf_exempt
@require_POST
def stripe_webhook(request: HttpRequest, uuid) -> HttpResponse:
    signature = request.headers.get("Stripe-Signature")
    if not signature:
        logger.warning("stripe webhook without signature rejected")
        return HttpResponseBadRequest("missing signature")
    endpoint = _endpoint_secret(str(uuid))
    if endpoint is None:
        logger.warning("stripe webhook for unknown endpoint %s rejected", uuid)
        return HttpResponse("unknown endpoint", status=404)
    endpoint_id, secret = endpoint
    try:
        payload_text = request.body.decode("utf-8")
        webhook_signature_verify(payload=payload_text, signature_header=signature, secret=secret,
                                 tolerance_seconds=settings.BILLING_WEBHOOK_TOLERANCE_SECONDS)
    except (UnicodeDecodeError, SignatureError) as error:
        logger.warning("stripe webhook on %s rejected: %s", endpoint_id, error)
        return HttpResponseBadRequest("invalid signature")
    try:
        payload = json.loads(payload_text)
        _event_shape_check(payload)
    except ValueError as error:
        logger.warning("stripe webhook on %s with a bad body rejected: %s", endpoint_id, error)
        return HttpResponseBadRequest("bad body")
    result = webhook_event_record(payload=payload, webhook_endpoint_id=endpoint_id, payload_json=payload_text)
    return JsonResponse({"received": True, "duplicate": not result.created})
