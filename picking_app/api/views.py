"""Thin views: validate, call a selector or service, answer. Bad input is a 400 with field messages."""

from __future__ import annotations

from drf_spectacular.utils import extend_schema
from rest_framework import status
from rest_framework.exceptions import ValidationError
from rest_framework.response import Response
from rest_framework.views import APIView

from picking_app import selectors, services
from picking_app.api import serializers as s
from picking_app.distances import Unreachable
from picking_app.models import PickList


def _layout_or_400(code: str):
    layout = selectors.layout_for(code)
    if layout is None:
        raise ValidationError({"location": [f"No picking layout for location {code!r}."]})
    return layout


class RouteView(APIView):
    @extend_schema(request=s.RouteRequestSerializer, responses={200: s.RouteResponseSerializer},
                   summary="Route a pick list", description=(
                       "The visiting sequence and length for the chosen policy (optimal by default: "
                       "Ratliff-Rosenthal on a regular single-block layout, Held-Karp on small lists elsewhere, "
                       "else the 2-opt/Or-opt heuristic with exact=false), plus every classic policy's length."))
    def post(self, request):
        data = s.RouteRequestSerializer(data=request.data)
        data.is_valid(raise_exception=True)
        v = data.validated_data
        layout = _layout_or_400(v["location"])
        bins, errors = selectors.resolve_picks(layout, v["picks"])
        if errors:
            raise ValidationError({"picks": {str(k): [msg] for k, msg in errors.items()}})
        try:
            plan = selectors.plan_route(layout, bins, v["policy"])
        except Unreachable as exc:
            raise ValidationError({"picks": [f"Some picks cannot be reached on this layout: {exc}"]}) from None
        except ValueError as exc:  # a stored layout the algorithms refuse (e.g. a bin outside it)
            raise ValidationError({"location": [str(exc)]}) from None
        sequence = [
            {"pick": v["picks"][i], "bin": bins[i].code, "sku": bins[i].sku.code if bins[i].sku_id else None,
             "aisle": bins[i].aisle, "block": bins[i].block, "cell": bins[i].cell, "side": bins[i].side}
            for i in plan.route.order
        ]
        body = {"location": layout.location.code, "policy": v["policy"], "method": plan.route.method,
                "exact": plan.route.exact, "length": round(plan.route.length, 6), "sequence": sequence,
                "baselines": {k: None if x is None else round(x, 6) for k, x in plan.baselines.items()}}
        return Response(s.RouteResponseSerializer(body).data)


class PickListView(APIView):
    @extend_schema(request=s.PickListRequestSerializer, responses={201: s.PickListResultSerializer},
                   summary="Batch committed orders into routed pick lists")
    def post(self, request):
        data = s.PickListRequestSerializer(data=request.data)
        data.is_valid(raise_exception=True)
        v = data.validated_data
        _layout_or_400(v["location"])
        result = services.create_pick_lists(location=v["location"], capacity=v["capacity"], method=v["method"],
                                            policy=v["policy"])
        lists = PickList.objects.filter(pk__in=[p.pk for p in result.pick_lists]).prefetch_related(
            "lines__bin", "lines__sku", "lines__reservation_line").order_by("id")
        body = {"pick_lists": list(lists), "skipped": {str(k): msg for k, msg in result.skipped.items()}}
        return Response(s.PickListResultSerializer(body).data, status=status.HTTP_201_CREATED)
