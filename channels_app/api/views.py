from __future__ import annotations

from django.shortcuts import get_object_or_404
from drf_spectacular.utils import extend_schema
from rest_framework import mixins, viewsets
from rest_framework.decorators import action
from rest_framework.response import Response

from channels_app import selectors, services
from channels_app.api.serializers import ChannelSerializer, ListingSerializer, SyncStatusSerializer
from channels_app.models import Channel, Listing
from channels_app.sync import mark_channel_dirty


class ChannelViewSet(mixins.CreateModelMixin, mixins.RetrieveModelMixin, mixins.ListModelMixin,
                     mixins.UpdateModelMixin, viewsets.GenericViewSet):
    queryset = Channel.objects.prefetch_related("locations__location").order_by("slug")
    serializer_class = ChannelSerializer
    lookup_field = "slug"

    @extend_schema(responses=SyncStatusSerializer)
    @action(detail=True, methods=["get"], url_path="sync-status")
    def sync_status(self, request, slug=None):
        return Response(SyncStatusSerializer(selectors.sync_status(self.get_object())).data)

    @extend_schema(request=None, responses={200: dict})
    @action(detail=True, methods=["get"])
    def preview(self, request, slug=None):
        return Response({"channel": slug, "listings": selectors.preview(self.get_object())})

    @extend_schema(request=None, responses={202: dict})
    @action(detail=True, methods=["post"])
    def resync(self, request, slug=None):
        return Response({"queued": mark_channel_dirty(self.get_object())}, status=202)

    @extend_schema(request=None, responses={200: dict})
    @action(detail=True, methods=["post"])
    def pause(self, request, slug=None):
        services.set_paused(channel=self.get_object(), paused=True)
        return Response({"paused": True})

    @extend_schema(request=None, responses={200: dict})
    @action(detail=True, methods=["post"])
    def resume(self, request, slug=None):
        services.set_paused(channel=self.get_object(), paused=False)
        return Response({"paused": False})


class ListingViewSet(mixins.CreateModelMixin, mixins.ListModelMixin, mixins.RetrieveModelMixin,
                     viewsets.GenericViewSet):
    serializer_class = ListingSerializer

    def _channel(self) -> Channel:
        return get_object_or_404(Channel, slug=self.kwargs["channel_slug"])

    def get_queryset(self):
        return Listing.objects.filter(channel__slug=self.kwargs["channel_slug"]).select_related("sku").order_by("id")

    def perform_create(self, serializer):
        data = dict(serializer.validated_data)
        sku = data.pop("sku")
        serializer.instance = services.upsert_listing(channel=self._channel(), sku=sku, **data)
