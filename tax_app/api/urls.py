from django.urls import path

from tax_app.api import views

urlpatterns = [
    path("tax/calculate/", views.CalculateView.as_view(), name="tax-calculate"),
]
