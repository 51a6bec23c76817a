from __future__ import annotations

from decimal import Decimal

from django.db import transaction
from django.utils import timezone
from rest_framework import serializers

from inventory_app import stock
from inventory_app.models import (
    BundleComponent,
    Location,
    Order,
    OrderLine,
    Price,
    Reservation,
    ReservationLine,
    Sku,
    StockLedgerEntry,
    StockPolicy,
)


class BundleComponentSerializer(serializers.Serializer):
    sku = serializers.SlugRelatedField(slug_field="code", queryset=Sku.objects.all(), source="component")
    quantity = serializers.IntegerField(min_value=1, max_value=10_000)


class SkuSerializer(serializers.ModelSerializer):
    components = BundleComponentSerializer(many=True, required=False)
    stock_policy = serializers.ChoiceField(choices=StockPolicy.choices, read_only=True)
    is_bundle = serializers.SerializerMethodField()

    class Meta:
        model = Sku
        fields = ["code", "name", "is_active", "stock_policy", "oversell_limit", "is_bundle", "components",
                  "created_at", "updated_at"]
        read_only_fields = ["oversell_limit", "created_at", "updated_at"]

    def get_is_bundle(self, obj: Sku) -> bool:
        return obj.components.exists()

    def validate_components(self, value):
        seen = set()
        for item in value:
            component = item["component"]
            if component.code in seen:
                raise serializers.ValidationError(f"{component.code} is listed twice.")
            if component.components.exists():
                raise serializers.ValidationError(f"{component.code} is itself a bundle; nest components flat.")
            seen.add(component.code)
        return value

    def validate(self, attrs):
        components = attrs.get("components") or []
        if any(item["component"].code == attrs.get("code") for item in components):
            raise serializers.ValidationError({"components": "A bundle cannot contain itself."})
        return attrs

    @transaction.atomic
    def create(self, validated_data):
        components = validated_data.pop("components", [])
        sku = Sku.objects.create(**validated_data)
        BundleComponent.objects.bulk_create(
            BundleComponent(bundle=sku, component=item["component"], quantity=item["quantity"]) for item in components
        )
        return sku

    def update(self, instance, validated_data):
        if "components" in validated_data:
            raise serializers.ValidationError({"components": "Bundle components cannot be changed after creation."})
        # On sale or not moves every channel's number of it: through stock.
        active = validated_data.pop("is_active", None)
        instance = super().update(instance, validated_data)
        if active is not None:
            instance = stock.set_sku_active(sku=instance, active=active)
        return instance


class LocationSerializer(serializers.ModelSerializer):
    class Meta:
        model = Location
        fields = ["code", "name", "kind", "priority", "is_active", "created_at"]
        read_only_fields = ["created_at"]

    def update(self, instance, validated_data):
        # Opening or closing a location moves every channel's number of what is stocked there: through stock.
        active = validated_data.pop("is_active", None)
        instance = super().update(instance, validated_data)
        if active is not None:
            instance = stock.set_location_active(location=instance, active=active)
        return instance


class AdjustmentSerializer(serializers.Serializer):
    sku = serializers.CharField(max_length=64)
    location = serializers.CharField(max_length=64)
    delta = serializers.IntegerField(min_value=-1_000_000_000, max_value=1_000_000_000)
    reason = serializers.CharField(max_length=255)
    reference = serializers.CharField(max_length=255, required=False, default="")

    def validate_delta(self, value):
        if value == 0:
            raise serializers.ValidationError("delta must not be zero.")
        return value


class CountSerializer(serializers.Serializer):
    sku = serializers.CharField(max_length=64)
    location = serializers.CharField(max_length=64)
    on_hand = serializers.IntegerField(min_value=0, max_value=1_000_000_000)
    as_of = serializers.DateTimeField()
    source = serializers.CharField(max_length=64, required=False, default="api")
    reference = serializers.CharField(max_length=255, required=False, default="")


class TransferSerializer(serializers.Serializer):
    sku = serializers.CharField(max_length=64)
    from_location = serializers.CharField(max_length=64)
    to_location = serializers.CharField(max_length=64)
    quantity = serializers.IntegerField(min_value=1, max_value=1_000_000_000)
    reference = serializers.CharField(max_length=255, required=False, default="")


class StockRowSerializer(serializers.Serializer):
    sku = serializers.CharField()
    location = serializers.CharField()
    on_hand = serializers.IntegerField()
    reserved = serializers.IntegerField()
    available = serializers.IntegerField()


class ReservationLineInputSerializer(serializers.Serializer):
    sku = serializers.CharField(max_length=64)
    quantity = serializers.IntegerField(min_value=1, max_value=1_000_000)


class ReservationInputSerializer(serializers.Serializer):
    lines = ReservationLineInputSerializer(many=True, allow_empty=False, max_length=500)
    channel = serializers.CharField(max_length=64, required=False, default="")
    reference = serializers.CharField(max_length=255, required=False, default="")
    ttl_seconds = serializers.IntegerField(min_value=1, max_value=30 * 24 * 3600, required=False)


class ReservationLineSerializer(serializers.ModelSerializer):
    sku = serializers.CharField(source="requested_sku.code")
    stock_sku = serializers.CharField(source="sku.code")
    location = serializers.CharField(source="location.code")

    class Meta:
        model = ReservationLine
        fields = ["sku", "stock_sku", "location", "quantity"]


class ReservationSerializer(serializers.ModelSerializer):
    lines = ReservationLineSerializer(many=True, read_only=True)

    class Meta:
        model = Reservation
        fields = ["id", "status", "channel", "reference", "expires_at", "created_at", "lines"]


class LocationAvailabilitySerializer(serializers.Serializer):
    location = serializers.CharField()
    on_hand = serializers.IntegerField()
    reserved = serializers.IntegerField()
    available = serializers.IntegerField()
    allowance_left = serializers.IntegerField()


class ChannelAvailabilitySerializer(serializers.Serializer):
    channel = serializers.CharField()
    available = serializers.IntegerField()


class AvailabilitySerializer(serializers.Serializer):
    sku = serializers.CharField()
    on_hand = serializers.IntegerField()
    reserved = serializers.IntegerField()
    available = serializers.IntegerField()
    sellable = serializers.IntegerField()
    is_bundle = serializers.BooleanField()
    locations = LocationAvailabilitySerializer(many=True)
    channels = ChannelAvailabilitySerializer(many=True)


class LedgerEntrySerializer(serializers.ModelSerializer):
    sku = serializers.CharField(source="sku.code")
    location = serializers.CharField(source="location.code")

    class Meta:
        model = StockLedgerEntry
        fields = ["id", "sku", "location", "kind", "on_hand_delta", "reserved_delta", "on_hand_after",
                  "reserved_after", "reference", "reason", "source", "occurred_at", "recorded_at"]


class OrderLineSerializer(serializers.ModelSerializer):
    sku = serializers.CharField(source="sku.code")

    class Meta:
        model = OrderLine
        fields = ["external_id", "sku", "quantity", "unit_price", "status", "restocked_quantity", "written_off_quantity"]


class OrderSerializer(serializers.ModelSerializer):
    lines = OrderLineSerializer(many=True, read_only=True)

    class Meta:
        model = Order
        fields = ["id", "channel", "external_id", "name", "status", "currency", "total", "placed_at", "lines"]


class PriceSerializer(serializers.ModelSerializer):
    sku = serializers.SlugRelatedField(slug_field="code", queryset=Sku.objects.all())
    amount = serializers.DecimalField(max_digits=14, decimal_places=2, min_value=Decimal("0"))

    class Meta:
        model = Price
        fields = ["id", "sku", "channel", "currency", "amount", "valid_from", "valid_to", "updated_at"]
        read_only_fields = ["updated_at"]

    def validate(self, attrs):
        # Compare against what the row will hold: a partial update or a default start counts too.
        valid_from = attrs.get("valid_from") or (self.instance.valid_from if self.instance else timezone.now())
        valid_to = attrs["valid_to"] if "valid_to" in attrs else (self.instance.valid_to if self.instance else None)
        if valid_to is not None and valid_to <= valid_from:
            raise serializers.ValidationError({"valid_to": "must be after valid_from."})
        return attrs
