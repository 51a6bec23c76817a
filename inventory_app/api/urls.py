from django.urls import path
from rest_framework.routers import DefaultRouter

from inventory_app.api import views

router = DefaultRouter()
router.register("skus", views.SkuViewSet, basename="sku")
router.register("locations", views.LocationViewSet, basename="location")
router.register("prices", views.PriceViewSet, basename="price")
router.register("reservations", views.ReservationViewSet, basename="reservation")
router.register("orders", views.OrderViewSet, basename="order")

urlpatterns = [
    path("stock/adjustments/", views.AdjustmentView.as_view(), name="stock-adjustments"),
    path("stock/counts/", views.CountView.as_view(), name="stock-counts"),
    path("stock/transfers/", views.TransferView.as_view(), name="stock-transfers"),
    *router.urls,
]
