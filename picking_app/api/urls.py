from django.urls import path

from picking_app.api import views

urlpatterns = [
    path("picking/routes/", views.RouteView.as_view(), name="picking-routes"),
    path("picking/pick-lists/", views.PickListView.as_view(), name="picking-pick-lists"),
]
