from django.urls import path

from .. import converters  # noqa: F401  (registers the `stripe_id` path converter)
from . import views

urlpatterns = [
    path("plans/", views.PlansApi.as_view(), name="billing-plans"),
    path("subscription/", views.SubscriptionApi.as_view(), name="billing-subscription"),
    path("subscription/resume/", views.SubscriptionResumeApi.as_view(), name="billing-subscription-resume"),
    path("checkout-sessions/", views.CheckoutSessionApi.as_view(), name="billing-checkout-sessions"),
    path("portal-sessions/", views.PortalSessionApi.as_view(), name="billing-portal-sessions"),
    path("invoices/", views.InvoiceListApi.as_view(), name="billing-invoices"),
    path("payments/", views.PaymentListApi.as_view(), name="billing-payments"),
    path("payments/<stripe_id:payment_id>/", views.PaymentDetailApi.as_view(), name="billing-payment-detail"),
]
