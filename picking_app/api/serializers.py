from __future__ import annotations

from rest_framework import serializers

from picking_app.batching import METHODS
from picking_app.solvers import SOLVERS

MAX_PICKS = 200


class RouteRequestSerializer(serializers.Serializer):
    location = serializers.CharField(max_length=64, help_text="Location code; it must have a picking layout.")
    picks = serializers.ListField(
        child=serializers.CharField(max_length=64), allow_empty=False, max_length=MAX_PICKS,
        help_text="Bin codes or SKU codes (a SKU is picked at the first bin holding it).",
    )
    policy = serializers.ChoiceField(choices=SOLVERS, default="optimal")


class StopSerializer(serializers.Serializer):
    pick = serializers.CharField()
    bin = serializers.CharField()
    sku = serializers.CharField(allow_null=True)
    aisle = serializers.IntegerField()
    block = serializers.IntegerField()
    cell = serializers.IntegerField()
    side = serializers.CharField()


class RouteResponseSerializer(serializers.Serializer):
    location = serializers.CharField()
    policy = serializers.CharField()
    method = serializers.CharField(help_text="ratliff_rosenthal, held_karp, heuristic or the policy's name.")
    exact = serializers.BooleanField(help_text="True when the length is proven optimal.")
    length = serializers.FloatField(help_text="Metres, depot to depot.")
    sequence = StopSerializer(many=True)
    baselines = serializers.DictField(child=serializers.FloatField(allow_null=True),
                                      help_text="Length of each classic policy (null: its walk is blocked).")


class PickListRequestSerializer(serializers.Serializer):
    location = serializers.CharField(max_length=64)
    capacity = serializers.IntegerField(min_value=1, max_value=100_000, help_text="Cart capacity in units.")
    method = serializers.ChoiceField(choices=METHODS, default="savings")
    policy = serializers.ChoiceField(choices=SOLVERS, default="optimal")


class PickListLineSerializer(serializers.Serializer):
    sequence = serializers.IntegerField()
    bin = serializers.CharField(source="bin.code")
    sku = serializers.CharField(source="sku.code")
    quantity = serializers.IntegerField()
    reservation = serializers.UUIDField(source="reservation_line.reservation_id")


class PickListSerializer(serializers.Serializer):
    id = serializers.IntegerField()
    status = serializers.CharField()
    batching = serializers.CharField()
    policy = serializers.CharField()
    capacity = serializers.IntegerField()
    units = serializers.IntegerField()
    route_length = serializers.FloatField()
    exact = serializers.BooleanField()
    lines = PickListLineSerializer(many=True)


class PickListResultSerializer(serializers.Serializer):
    pick_lists = PickListSerializer(many=True)
    skipped = serializers.DictField(child=serializers.CharField(), help_text="Reservation line id: why it was left out.")
