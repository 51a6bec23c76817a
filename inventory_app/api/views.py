"""Thin views: validate, call ``inventory_app.stock`` or a selector, answer."""

from __future__ import annotations

from dataclasses import asdict

from drf_spectacular.utils import OpenApiParameter, extend_schema
from rest_framework import mixins, status, viewsets
from rest_framework.decorators import action
from rest_framework.response import Response
from rest_framework.views import APIView

from inventory_app import selectors, stock
from inventory_app.api import serializers as s
from inventory_app.api.idempotency import HEADER, idempotent
from inventory_app.availability import sku_availability
from inventory_app.errors import NotFound
from inventory_app.models import Location, Price, Sku

IDEMPOTENCY_PARAM = OpenApiParameter(
    HEADER, str, OpenApiParameter.HEADER, required=False,
    description="Makes the request safe to retry: a repeat returns the first result.",
)


def _source(request) -> str:
    return f"api:{request.user.get_username()}"[:64]


class SkuViewSet(mixins.CreateModelMixin, mixins.RetrieveModelMixin, mixins.ListModelMixin,
                 mixins.UpdateModelMixin, viewsets.GenericViewSet):
    queryset = Sku.objects.prefetch_related("components__component").order_by("code")
    serializer_class = s.SkuSerializer
    lookup_field = "code"
    lookup_value_regex = "[^/]+"

    @extend_schema(responses=s.AvailabilitySerializer)
    @action(detail=True, methods=["get"])
    def availability(self, request, code=None):
        from channels_app.selectors import availability_by_channel

        sku = self.get_object()
        data = asdict(sku_availability(sku))
        data["channels"] = availability_by_channel(sku)
        return Response(s.AvailabilitySerializer(data).data)

    @extend_schema(responses=s.LedgerEntrySerializer(many=True))
    @action(detail=True, methods=["get"])
    def ledger(self, request, code=None):
        page = self.paginate_queryset(selectors.ledger_for(self.get_object()))
        return self.get_paginated_response(s.LedgerEntrySerializer(page, many=True).data)


class LocationViewSet(mixins.CreateModelMixin, mixins.RetrieveModelMixin, mixins.ListModelMixin,
                      mixins.UpdateModelMixin, viewsets.GenericViewSet):
    queryset = Location.objects.order_by("priority", "code")
    serializer_class = s.LocationSerializer
    lookup_field = "code"


class PriceViewSet(viewsets.ModelViewSet):
    queryset = Price.objects.select_related("sku").order_by("sku__code", "channel", "-valid_from")
    serializer_class = s.PriceSerializer


class AdjustmentView(APIView):
    @extend_schema(request=s.AdjustmentSerializer, responses={201: s.StockRowSerializer},
                   parameters=[IDEMPOTENCY_PARAM])
    def post(self, request):
        data = s.AdjustmentSerializer(data=request.data)
        data.is_valid(raise_exception=True)
        v = data.validated_data
        return idempotent(request, lambda key: Response(stock.adjust(
            sku=v["sku"], location=v["location"], delta=v["delta"], reason=v["reason"],
            reference=v["reference"], source=_source(request), key=key), status=status.HTTP_201_CREATED))


class CountView(APIView):
    @extend_schema(request=s.CountSerializer, responses={201: s.StockRowSerializer},
                   parameters=[IDEMPOTENCY_PARAM])
    def post(self, request):
        data = s.CountSerializer(data=request.data)
        data.is_valid(raise_exception=True)
        v = data.validated_data
        return idempotent(request, lambda key: Response(stock.count(
            sku=v["sku"], location=v["location"], on_hand=v["on_hand"], as_of=v["as_of"],
            source=v["source"], reference=v["reference"], key=key), status=status.HTTP_201_CREATED))


class TransferView(APIView):
    @extend_schema(request=s.TransferSerializer, parameters=[IDEMPOTENCY_PARAM])
    def post(self, request):
        data = s.TransferSerializer(data=request.data)
        data.is_valid(raise_exception=True)
        v = data.validated_data
        return idempotent(request, lambda key: Response(stock.transfer(
            sku=v["sku"], from_location=v["from_location"], to_location=v["to_location"],
            quantity=v["quantity"], reference=v["reference"], source=_source(request), key=key),
            status=status.HTTP_201_CREATED))


class ReservationViewSet(viewsets.ViewSet):
    lookup_value_regex = "[0-9a-fA-F-]{32,36}"

    @extend_schema(request=s.ReservationInputSerializer, responses={201: s.ReservationSerializer},
                   parameters=[IDEMPOTENCY_PARAM])
    def create(self, request):
        data = s.ReservationInputSerializer(data=request.data)
        data.is_valid(raise_exception=True)
        v = data.validated_data
        return idempotent(request, lambda key: Response(stock.reserve(
            lines=stock.lines_from(v["lines"]), channel=v["channel"], reference=v["reference"],
            ttl_seconds=v.get("ttl_seconds"), key=key), status=status.HTTP_201_CREATED))

    @extend_schema(responses=s.ReservationSerializer)
    def retrieve(self, request, pk=None):
        reservation = selectors.reservation_with_lines(pk)
        if reservation is None:
            raise NotFound(f"No reservation {pk}.")
        return Response(s.ReservationSerializer(reservation).data)

    @extend_schema(request=None, responses=s.ReservationSerializer, parameters=[IDEMPOTENCY_PARAM])
    @action(detail=True, methods=["post"])
    def commit(self, request, pk=None):
        return idempotent(request, lambda key: Response(stock.commit(reservation_id=pk, key=key,
                                                                     source=_source(request))))

    @extend_schema(request=None, responses=s.ReservationSerializer, parameters=[IDEMPOTENCY_PARAM])
    @action(detail=True, methods=["post"])
    def release(self, request, pk=None):
        return idempotent(request, lambda key: Response(stock.release(reservation_id=pk, key=key,
                                                                      source=_source(request))))


class OrderViewSet(viewsets.ReadOnlyModelViewSet):
    serializer_class = s.OrderSerializer
    lookup_value_regex = r"\d+"

    def get_queryset(self):
        return selectors.orders()
