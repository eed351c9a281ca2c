from django.urls import path

from .. import converters  # noqa: F401  (registers the `rowid` path converter)
from . import views

urlpatterns = [
    path("me/", views.MeAPI.as_view(), name="me"),
    path("api-keys/", views.APIKeyListCreateAPI.as_view(), name="api-keys"),
    path("api-keys/<rowid:key_id>/", views.APIKeyDetailAPI.as_view(), name="api-key-detail"),
]
