from django.urls import path

from . import converters  # noqa: F401  (registers the `stripe_id` path converter)
from . import views, views_payments
from .webhooks.views import stripe_webhook

app_name = "billing"

urlpatterns = [
    path("pricing/", views.pricing, name="pricing"),
    path("billing/", views.overview, name="overview"),
    path("billing/checkout/success/", views.checkout_success, name="checkout_success"),
    path("billing/checkout/cancel/", views.checkout_cancel, name="checkout_cancel"),
    path("billing/checkout/<str:lookup_key>/", views.checkout_start, name="checkout"),
    path("billing/change/<str:lookup_key>/", views.change_plan, name="change_plan"),
    path("billing/change-return/", views.plan_change_return, name="plan_change_return"),
    path("billing/scheduled-change/cancel/", views.scheduled_change_cancel, name="scheduled_change_cancel"),
    # Adding a card: Stripe's hosted page (Checkout in setup mode) and its two returns; `add/` is the page that
    # leads there and, in test mode only, also offers Stripe's test cards; `return/` ends their 3-D Secure step.
    path("billing/cards/checkout/", views.card_checkout, name="card_checkout"),
    path("billing/cards/checkout/success/", views.card_checkout_success, name="card_checkout_success"),
    path("billing/cards/checkout/cancel/", views.card_checkout_cancel, name="card_checkout_cancel"),
    path("billing/cards/add/", views.card_add, name="card_add"),
    path("billing/cards/return/", views.card_return, name="card_return"),
    path("billing/cards/<str:payment_method_id>/default/", views.card_default, name="card_default"),
    path("billing/cards/<str:payment_method_id>/remove/", views.card_remove, name="card_remove"),
    path("billing/subscription/cancel/", views.subscription_cancel, name="subscription_cancel"),
    path("billing/subscription/resume/", views.subscription_resume, name="subscription_resume"),
    path("billing/portal/", views.portal, name="portal"),
    path("billing/pay/return/", views.payment_return, name="payment_return"),
    path("billing/pay/<str:lookup_key>/", views.pay_credit_pack, name="pay_credit_pack"),
    # Payment history and receipts (issue 13).
    path("billing/payments/", views_payments.payments, name="payments"),
    path("billing/payments/<stripe_id:payment_id>/receipt.pdf", views_payments.payment_receipt,
         name="payment_receipt"),
    path("billing/payments/<stripe_id:payment_id>/refunds/<stripe_id:refund_id>/receipt.pdf",
         views_payments.refund_receipt,
         name="refund_receipt"),
    # dj-stripe's URL scheme (`<uuid>` is WebhookEndpoint.djstripe_uuid), served by the project's own view.
    path("stripe/webhook/<uuid:uuid>/", stripe_webhook, name="stripe_webhook"),
]
