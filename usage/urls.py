from django.urls import path

from . import views

app_name = "usage"

urlpatterns = [
    path("usage/", views.overview, name="overview"),
    path("usage/spend-cap/", views.spend_cap, name="spend_cap"),
]
