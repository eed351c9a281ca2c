from django.urls import path

from . import views

urlpatterns = [
    path("usage/", views.UsageSummaryAPI.as_view(), name="usage"),
    path("usage/events/", views.UsageEventIngestAPI.as_view(), name="usage-events"),
    path("usage/spend-cap/", views.SpendCapAPI.as_view(), name="usage-spend-cap"),
    path("credits/", views.CreditsAPI.as_view(), name="credits"),
    path("demo/ping/", views.DemoPingAPI.as_view(), name="demo-ping"),
    path("demo/metered-ping/", views.DemoMeteredPingAPI.as_view(), name="demo-metered-ping"),
    path("demo/premium/", views.DemoPremiumAPI.as_view(), name="demo-premium"),
]
