from django.urls import path
from rest_framework.routers import DefaultRouter

from channels_app.api import views

router = DefaultRouter()
router.register("channels", views.ChannelViewSet, basename="channel")

listing_list = views.ListingViewSet.as_view({"get": "list", "post": "create"})
listing_detail = views.ListingViewSet.as_view({"get": "retrieve"})

urlpatterns = [
    path("channels/<slug:channel_slug>/listings/", listing_list, name="channel-listings"),
    path("channels/<slug:channel_slug>/listings/<int:pk>/", listing_detail, name="channel-listing"),
    *router.urls,
]
