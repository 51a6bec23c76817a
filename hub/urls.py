from django.contrib import admin
from django.urls import include, path
from drf_spectacular.views import SpectacularAPIView, SpectacularSwaggerView

from hub import health
from hub.observability import metrics_view

api_v1 = [
    path("", include("inventory_app.api.urls")),
    path("", include("channels_app.api.urls")),
    path("", include("tax_app.api.urls")),
    path("", include("picking_app.api.urls")),
]

urlpatterns = [
    path("admin/dashboard/", include("hub.dashboard")),
    path("admin/", admin.site.urls),
    path("api/v1/", include(api_v1)),
    path("api/schema/", SpectacularAPIView.as_view(), name="schema"),
    path("api/docs/", SpectacularSwaggerView.as_view(url_name="schema"), name="api-docs"),
    path("webhooks/", include("channels_app.webhook_urls")),
    path("healthz", health.healthz, name="healthz"),
    path("readyz", health.readyz, name="readyz"),
    path("metrics", metrics_view, name="metrics"),
]
