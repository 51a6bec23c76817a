from __future__ import annotations

from rest_framework import serializers

from channels_app.models import Channel, ChannelLocation, Listing
from inventory_app.models import Location, Sku


class ChannelLocationSerializer(serializers.ModelSerializer):
    location = serializers.SlugRelatedField(slug_field="code", queryset=Location.objects.all())

    class Meta:
        model = ChannelLocation
        fields = ["location", "external_id", "feeds_channel", "channel_owns_stock"]

    def validate(self, attrs):
        # A PATCH is partial all the way down in DRF, but the locations sent replace the channel's: each names one
        # (found by the API fuzz test: a 500 from the database's not-null constraint).
        if "location" not in attrs:
            raise serializers.ValidationError({"location": "This field is required."})
        return attrs


class ChannelSerializer(serializers.ModelSerializer):
    # Secrets go in, never out.
    credentials = serializers.DictField(write_only=True, required=False)
    webhook_secret = serializers.CharField(write_only=True, required=False, allow_blank=True, max_length=500)
    has_credentials = serializers.SerializerMethodField()
    has_webhook_secret = serializers.SerializerMethodField()
    locations = ChannelLocationSerializer(many=True, required=False)

    class Meta:
        model = Channel
        fields = ["slug", "name", "kind", "enabled", "paused", "api_base_url", "external_id", "publish_location_id",
                  "credentials", "webhook_secret", "has_credentials", "has_webhook_secret", "safety_buffer",
                  "max_quantity", "share_percent", "zero_below", "include_backorders", "conservative",
                  "sellout_guard_seconds", "allocation_target", "rate_limit_capacity", "rate_limit_per_second", "push_batch_size",
                  "catalog_interval_seconds",
                  "reconcile_interval_seconds", "locations", "created_at", "updated_at"]
        read_only_fields = ["created_at", "updated_at"]

    def validate(self, attrs):
        # The stored credentials go to whatever address the channel names: moving the address without giving them
        # again would hand the platform's token to a host the caller chose (review finding, 2026-12-07).
        moved = self.instance is not None and "api_base_url" in attrs and (
            attrs["api_base_url"].rstrip("/") != self.instance.api_base_url.rstrip("/"))
        if moved and "credentials" not in attrs and self.instance.credentials:
            raise serializers.ValidationError(
                {"api_base_url": "Changing the channel's API address needs its credentials again, in the same request."})
        # The model's own rule (``Channel.clean``), which a serializer does not run: a threshold above the cap.
        merged = {f: attrs.get(f, getattr(self.instance, f, None)) for f in ("max_quantity", "zero_below")}
        if merged["max_quantity"] is not None and (merged["zero_below"] or 0) > merged["max_quantity"]:
            raise serializers.ValidationError({"zero_below": (
                f"Publish-0 threshold ({merged['zero_below']}) is above the maximum ({merged['max_quantity']}): the "
                f"channel would always show 0.")})
        return attrs

    def validate_locations(self, locations: list[dict]) -> list[dict]:
        # The database allows one row per location and per channel id of it: a list naming one twice was a 500.
        codes = [item["location"].code for item in locations]
        external = [item["external_id"] for item in locations if item.get("external_id")]
        for name, values in (("location", codes), ("external_id", external)):
            twice = sorted({value for value in values if values.count(value) > 1})
            if twice:
                raise serializers.ValidationError(f"Each {name} may appear once; given more than once: {twice}.")
        return locations

    def get_has_credentials(self, obj: Channel) -> bool:
        return bool(obj.credentials)

    def get_has_webhook_secret(self, obj: Channel) -> bool:
        return bool(obj.webhook_secret)

    def create(self, validated_data):
        from channels_app import services

        locations = validated_data.pop("locations", [])
        return services.create_channel(data=validated_data, locations=locations)

    def update(self, instance, validated_data):
        from channels_app import services

        locations = validated_data.pop("locations", None)
        return services.update_channel(channel=instance, data=validated_data, locations=locations)


class ListingSerializer(serializers.ModelSerializer):
    sku = serializers.SlugRelatedField(slug_field="code", queryset=Sku.objects.all())

    class Meta:
        model = Listing
        fields = ["id", "sku", "external_product_id", "external_variant_id", "external_inventory_item_id",
                  "external_sku", "external_location_id", "status", "desired_version", "pushed_version",
                  "pushed_quantity", "pushed_at", "remote_quantity", "edited_on_channel_at", "last_error", "attempts"]
        read_only_fields = ["status", "desired_version", "pushed_version", "pushed_quantity", "pushed_at",
                            "remote_quantity", "edited_on_channel_at", "last_error", "attempts"]


class SyncStatusSerializer(serializers.Serializer):
    channel = serializers.CharField()
    health = serializers.CharField()
    reason = serializers.CharField()
    listings = serializers.IntegerField()
    push_backlog = serializers.IntegerField()
    failed_listings = serializers.IntegerField()
    edited_on_channel = serializers.IntegerField()
    oldest_unpushed_seconds = serializers.FloatField()
    inbox_pending = serializers.IntegerField()
    inbox_dead_lettered = serializers.IntegerField()
    last_webhook_at = serializers.DateTimeField(allow_null=True)
    last_push_at = serializers.DateTimeField(allow_null=True)
    last_push_error = serializers.CharField()
    sync_lag = serializers.DictField()
