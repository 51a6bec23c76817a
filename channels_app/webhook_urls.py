from django.urls import path

from channels_app import webhooks

urlpatterns = [path("<slug:slug>/", webhooks.receive, name="webhook")]
