from django.urls import path

from . import views
from .webhooks.views import stripe_webhook

app_name = "billing"

urlpatterns = [
    path("pricing/", views.pricing, name="pricing"),
    path("billing/", views.overview, name="overview"),
    # dj-stripe's URL scheme (`<uuid>` is WebhookEndpoint.djstripe_uuid), served by the project's own view.
    path("stripe/webhook/<uuid:uuid>/", stripe_webhook, name="stripe_webhook"),
]
