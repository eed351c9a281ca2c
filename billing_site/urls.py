from django.conf import settings
from django.contrib import admin
from django.urls import include, path
from django.views.generic import TemplateView
from drf_spectacular.views import SpectacularAPIView, SpectacularSwaggerSplitView

from . import health

api_v1 = [
    path("", include("accounts.api.urls")),
    path("", include("billing.api.urls")),
    path("", include("usage.api.urls")),
]

urlpatterns = [
    path("", TemplateView.as_view(template_name="pages/home.html"), name="home"),
    path("healthz", health.healthz, name="healthz"),
    path("readyz", health.readyz, name="readyz"),
    path("metrics", health.metrics, name="metrics"),
    path("i18n/", include("django.conf.urls.i18n")),
    path("accounts/", include("accounts.urls")),
    path("", include("billing.urls")),
    path("", include("usage.urls")),
    path("admin/", admin.site.urls),
    path("api/v1/", include((api_v1, "api"), namespace="api")),
    path("api/schema/", SpectacularAPIView.as_view(), name="api-schema"),
    # The split view serves Swagger UI's start-up script as a file: the Content-Security-Policy allows no inline script.
    path("api/docs/", SpectacularSwaggerSplitView.as_view(url_name="api-schema"), name="api-docs"),
]

# API URLs that match no route answer 404 in the API's error shape (issue 10).
handler404 = "billing_site.api_errors.not_found_handler"

admin.site.site_header = "Billing back office"
admin.site.site_title = "Billing back office"
admin.site.index_title = "Customers, payments and support"
