from django.urls import include, path

urlpatterns = [
    path("", include("billing_site.urls")),
    path("djstripe/", include("djstripe.urls", namespace="djstripe")),
]
