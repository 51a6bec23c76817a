"""Channels, their listings and sync state, the inbox of webhooks, run records and subscriptions."""

from __future__ import annotations

import uuid
from datetime import UTC, datetime
from decimal import Decimal

from django.core.exceptions import ValidationError
from django.core.validators import MaxValueValidator, MinValueValidator
from django.db import models
from django.db.models import F, Q
from django.utils import timezone

from hub.crypto import EncryptedJSONField, EncryptedTextField


class ChannelKind(models.TextChoices):
    SHOPIFY = "shopify", "Shopify"
    WOOCOMMERCE = "woocommerce", "WooCommerce"
    BIGCOMMERCE = "bigcommerce", "BigCommerce"
    AMAZON = "amazon", "Amazon"
    STANDARD = "standard", "Standard Webhooks (POS, generic)"


# The platforms' published limits as token buckets (capacity, requests per second); corrected at run time by
# response headers. BigCommerce allows 150 requests per fixed 30 s window: a bucket holding 150 that refills
# meanwhile sent more than that in a window and then stalled on 429s until the window reset (up to 30 s behind
# on every change), so its capacity plus a window's refill stays within the quota.
DEFAULT_RATE_LIMITS = {
    ChannelKind.SHOPIFY: (40, 2.0),
    ChannelKind.WOOCOMMERCE: (25, 25.0),
    ChannelKind.BIGCOMMERCE: (15, 5.0),
    ChannelKind.AMAZON: (5, 5.0),
    ChannelKind.STANDARD: (50, 50.0),
}


SHOPIFY_GRAPHQL_LIMIT = (100, 10.0)


class Channel(models.Model):
    slug = models.SlugField(max_length=64, unique=True)
    name = models.CharField(max_length=255)
    kind = models.CharField(max_length=16, choices=ChannelKind.choices)
    enabled = models.BooleanField(default=True, help_text="Disabled: webhooks are refused and nothing is pushed.")
    paused = models.BooleanField(default=False, help_text="Paused: webhooks are kept, pushes wait until resumed.")
    api_base_url = models.URLField(max_length=500, blank=True, default="")
    external_id = models.CharField(
        max_length=255, blank=True, default="",
        help_text="Shop domain (Shopify), site URL (WooCommerce), store hash (BigCommerce), seller id (Amazon).",
    )
    publish_location_id = models.CharField(
        max_length=128, blank=True, default="",
        help_text="The channel's location id that shows the published quantity (Shopify, BigCommerce).")
    credentials = EncryptedJSONField(blank=True, default=dict, help_text="API credentials; stored encrypted.")
    webhook_secret = EncryptedTextField(blank=True, default="")
    # During a rotation both secrets verify until the previous one expires.
    previous_webhook_secret = EncryptedTextField(blank=True, default="")
    previous_secret_expires_at = models.DateTimeField(null=True, blank=True)

    # Availability rules: what this channel is sent.
    safety_buffer = models.PositiveIntegerField(default=0, help_text="Units held back from this channel.")
    max_quantity = models.PositiveIntegerField(null=True, blank=True, help_text="Never publish more than this.")
    share_percent = models.PositiveSmallIntegerField(
        default=100, validators=[MinValueValidator(0), MaxValueValidator(100)],
        help_text="Publish this percentage of the pool (rounded down).")
    zero_below = models.PositiveIntegerField(default=0, help_text="Publish 0 when fewer than this many are available.")
    include_backorders = models.BooleanField(default=True, help_text="Publish backorder/preorder allowances.")
    conservative = models.BooleanField(
        default=False, help_text="Degraded channel: publish half of what the rules allow, so stale numbers oversell less.")
    sellout_guard_seconds = models.DecimalField(
        max_digits=6, decimal_places=2, default=Decimal("0"), validators=[MinValueValidator(Decimal("0"))],
        help_text="Hold back from this channel what the SKU sells, at its pace of the last few seconds, in this many "
                  "seconds: about the time this channel's number takes to change. Its last units then sell where the "
                  "numbers are fresh, not twice. 0: off.")
    allocation_target = models.PositiveIntegerField(
        null=True, blank=True,
        help_text="Ring-fenced: this channel sells only units set aside for it, up to this many per SKU, topped up "
                  "from the pool; no other channel shows them. Blank: the channel shares the pool.")

    rate_limit_capacity = models.PositiveIntegerField(null=True, blank=True, help_text="Blank: the platform default.")
    rate_limit_per_second = models.DecimalField(max_digits=8, decimal_places=3, null=True, blank=True)
    push_batch_size = models.PositiveIntegerField(default=100)
    catalog_interval_seconds = models.PositiveIntegerField(default=300)
    reconcile_interval_seconds = models.PositiveIntegerField(default=900)

    last_inbound_at = models.DateTimeField(null=True, blank=True)
    last_push_at = models.DateTimeField(null=True, blank=True)
    last_push_error = models.TextField(blank=True, default="")
    last_push_error_at = models.DateTimeField(null=True, blank=True)
    created_at = models.DateTimeField(auto_now_add=True)
    updated_at = models.DateTimeField(auto_now=True)

    class Meta:
        ordering = ["slug"]
        constraints = [
            models.CheckConstraint(condition=Q(share_percent__lte=100), name="channel_share_at_most_100"),
        ]

    def __str__(self) -> str:
        return self.slug

    def clean(self) -> None:
        super().clean()
        # The rules cap before they apply the threshold (``rules.apply_rules``): a threshold above the cap turns every
        # number into 0, so the channel would never show a unit, whatever the stock (review finding, 2026-12).
        if self.max_quantity is not None and self.zero_below is not None and self.zero_below > self.max_quantity:
            raise ValidationError({"zero_below": (
                f"Publish-0 threshold ({self.zero_below}) is above the maximum ({self.max_quantity}): every number is "
                f"capped at {self.max_quantity} first, so the channel would always show 0. Set the threshold to at "
                f"most the maximum.")})

    @property
    def rate_limit(self) -> tuple[int, float]:
        capacity, per_second = DEFAULT_RATE_LIMITS[ChannelKind(self.kind)]
        if self.kind == ChannelKind.SHOPIFY and (self.credentials or {}).get("api", "graphql") == "graphql":
            # GraphQL: 1,000 cost points restored at 100/s; an inventory mutation costs about 10.
            capacity, per_second = SHOPIFY_GRAPHQL_LIMIT
        return (self.rate_limit_capacity or capacity,
                float(self.rate_limit_per_second) if self.rate_limit_per_second else per_second)

    def webhook_secrets(self, now=None) -> list[str]:
        now = now or timezone.now()
        secrets = [self.webhook_secret] if self.webhook_secret else []
        if self.previous_webhook_secret and (self.previous_secret_expires_at is None
                                             or self.previous_secret_expires_at > now):
            secrets.append(self.previous_webhook_secret)
        return secrets


class ChannelLocation(models.Model):
    """How a channel's location ids map to ours, and which of our locations feed the channel."""

    channel = models.ForeignKey(Channel, on_delete=models.CASCADE, related_name="locations")
    location = models.ForeignKey("inventory_app.Location", on_delete=models.PROTECT, related_name="channel_links")
    external_id = models.CharField(max_length=128, blank=True, default="",
                                   help_text="The channel's id for this location (blank if it has none).")
    feeds_channel = models.BooleanField(default=True, help_text="This location's stock is offered on the channel.")
    channel_owns_stock = models.BooleanField(
        default=False, help_text="The channel is the source of truth for this location (a POS store): its inventory "
                                 "reports become counts here.")

    class Meta:
        constraints = [
            models.UniqueConstraint(fields=["channel", "location"], name="channel_location_unique"),
            models.UniqueConstraint(fields=["channel", "external_id"], condition=~Q(external_id=""),
                                    name="channel_location_external_unique"),
        ]

    def __str__(self) -> str:
        return f"{self.channel} {self.external_id or '-'} -> {self.location}"


class ChannelAllocation(models.Model):
    """Units of one SKU set aside for one ring-fenced channel (``channels_app.allocation`` keeps it)."""

    channel = models.ForeignKey(Channel, on_delete=models.CASCADE, related_name="allocations")
    sku = models.ForeignKey("inventory_app.Sku", on_delete=models.CASCADE, related_name="channel_allocations")
    units = models.PositiveIntegerField(default=0)
    updated_at = models.DateTimeField(default=timezone.now)

    class Meta:
        constraints = [models.UniqueConstraint(fields=["channel", "sku"], name="allocation_channel_sku_unique")]
        indexes = [models.Index(fields=["sku"], name="allocation_sku")]

    def __str__(self) -> str:
        return f"{self.channel}:{self.sku} {self.units}"


class ListingStatus(models.TextChoices):
    OK = "ok", "In sync"
    PENDING = "pending", "Waiting to push"
    RETRYING = "retrying", "Retrying"
    FAILED = "failed", "Failed (needs attention)"


# A listing's own fields: which item (and location) of the channel it is.
MAPPING_FIELDS = ("external_product_id", "external_variant_id", "external_inventory_item_id", "external_sku",
                  "external_location_id")


class Listing(models.Model):
    """One of our SKUs on one channel, and the state of its stock sync.

    ``desired_version`` is bumped in the same transaction as every stock write that can move this
    listing's number; a push records the version it carried in ``pushed_version``. The listing is
    out of date exactly when desired_version > pushed_version: the table, not a message, is the record.
    """

    # No index of their own: (channel, sku) is unique, and listing_sku serves the SKU's side. Every index is
    # written on each update that moves a version, and a listing is updated on every sale and every push.
    channel = models.ForeignKey(Channel, on_delete=models.CASCADE, related_name="listings", db_index=False)
    sku = models.ForeignKey("inventory_app.Sku", on_delete=models.PROTECT, related_name="listings", db_index=False)
    external_product_id = models.CharField(max_length=128, blank=True, default="")
    external_variant_id = models.CharField(max_length=128, blank=True, default="")
    external_inventory_item_id = models.CharField(max_length=128, blank=True, default="")
    external_sku = models.CharField(max_length=128, blank=True, default="",
                                    help_text="The channel's SKU if it differs from ours.")
    external_location_id = models.CharField(max_length=128, blank=True, default="",
                                            help_text="Where the channel keeps this listing's stock, if it asks.")

    desired_version = models.BigIntegerField(default=1)
    desired_quantity = models.IntegerField(null=True, blank=True)
    # A new listing waits for its first push from the moment it exists.
    dirty_since = models.DateTimeField(null=True, blank=True, default=timezone.now,
                                       help_text="Oldest change not yet on the channel.")
    pushed_version = models.BigIntegerField(default=0)
    pushed_quantity = models.IntegerField(null=True, blank=True)
    pushed_at = models.DateTimeField(null=True, blank=True)
    # Written before every send: if a pusher dies after the channel applied its request, the next
    # pusher recognises that number on the channel as ours, not as a sale it has not heard of.
    attempted_quantity = models.IntegerField(null=True, blank=True)
    remote_quantity = models.IntegerField(null=True, blank=True, help_text="Last value the channel told us.")
    remote_seen_at = models.DateTimeField(null=True, blank=True)
    remote_unsure = models.BooleanField(
        default=False, help_text="remote_quantity is our best guess, not known (a sale of the channel's own too close "
                                 "to our last push to tell which came first): the next push is sent even if it matches.")
    edited_on_channel_at = models.DateTimeField(null=True, blank=True,
                                                help_text="The channel changed this stock on its own.")
    # A compare-and-set conflict published our number less sales the channel made that we had not
    # applied, as far as we could tell. If one of them was in fact applied already, that number is
    # low for good; so the listing is pushed again once the sales in flight have had time to arrive.
    recheck_after = models.DateTimeField(null=True, blank=True,
                                         help_text="Push again then: a conflict's estimate of unseen sales expires.")

    status = models.CharField(max_length=16, choices=ListingStatus.choices, default=ListingStatus.PENDING)
    attempts = models.PositiveIntegerField(default=0)
    next_attempt_at = models.DateTimeField(null=True, blank=True)
    last_error = models.TextField(blank=True, default="")
    lease_owner = models.UUIDField(null=True, blank=True)
    lease_until = models.DateTimeField(null=True, blank=True)
    created_at = models.DateTimeField(auto_now_add=True)
    updated_at = models.DateTimeField(auto_now=True)

    class Meta:
        ordering = ["channel", "sku"]
        constraints = [models.UniqueConstraint(fields=["channel", "sku"], name="listing_channel_sku_unique")]
        indexes = [
            models.Index(fields=["channel", "dirty_since"], condition=Q(desired_version__gt=F("pushed_version")),
                         name="listing_dirty"),
            models.Index(fields=["sku"], name="listing_sku"),
            models.Index(fields=["recheck_after"], condition=Q(recheck_after__isnull=False), name="listing_recheck"),
            # Webhooks name a listing by the channel's ids (inbound.find_listing, once per order line). Without
            # these, each lookup filtered every listing of the channel, and every version of them an update
            # had left in the channel index until vacuum: 1.3 ms a line at 50 listings under load.
            # Not partial (``<> ''``): a prepared statement's generic plan could not use them.
            models.Index(fields=["channel", "external_inventory_item_id"], name="listing_by_inventory_item"),
            models.Index(fields=["channel", "external_variant_id"], name="listing_by_variant"),
            models.Index(fields=["channel", "external_product_id"], name="listing_by_product"),
            models.Index(fields=["channel", "external_sku"], name="listing_by_channel_sku"),
        ]

    def __str__(self) -> str:
        return f"{self.channel}:{self.sku}"

    @property
    def in_sync(self) -> bool:
        return self.desired_version <= self.pushed_version


class PushLog(models.Model):
    """One attempt to put a listing's number on its channel (push history, sync lag)."""

    listing = models.ForeignKey(Listing, on_delete=models.CASCADE, related_name="push_logs")
    channel = models.ForeignKey(Channel, on_delete=models.CASCADE, related_name="push_logs")
    version = models.BigIntegerField()
    quantity = models.IntegerField()
    ok = models.BooleanField()
    http_status = models.PositiveSmallIntegerField(null=True, blank=True)
    error = models.TextField(blank=True, default="")
    lag_ms = models.PositiveIntegerField(null=True, blank=True, help_text="Oldest unpushed change to channel ack.")
    correlation_id = models.CharField(max_length=64, blank=True, default="")
    created_at = models.DateTimeField(default=timezone.now, db_index=True)

    class Meta:
        ordering = ["-id"]
        indexes = [models.Index(fields=["channel", "created_at"], name="pushlog_channel_time")]


class SyncLagMinute(models.Model):
    """One channel's acknowledged pushes in one UTC minute: count and lag percentiles, rolled up from PushLog
    (``channels_app.rollups``), kept for months where the push history is kept for two weeks; the admin charts them."""

    channel = models.ForeignKey(Channel, on_delete=models.CASCADE, related_name="lag_minutes")
    minute = models.DateTimeField()
    count = models.PositiveIntegerField()
    p50_ms = models.PositiveIntegerField()
    p95_ms = models.PositiveIntegerField()
    p99_ms = models.PositiveIntegerField()
    max_ms = models.PositiveIntegerField()

    class Meta:
        ordering = ["-minute"]
        constraints = [models.UniqueConstraint(fields=["channel", "minute"], name="lag_minute_unique")]
        indexes = [models.Index(fields=["minute"], name="lag_minute_time")]

    def __str__(self) -> str:
        return f"{self.channel} {self.minute:%Y-%m-%d %H:%M}"


class InboundStatus(models.TextChoices):
    PENDING = "pending", "Pending"
    PROCESSED = "processed", "Processed"
    RETRYING = "retrying", "Retrying"
    PARKED = "parked", "Parked (needs a mapping)"
    FAILED = "failed", "Failed (bad payload)"
    DEAD = "dead", "Dead-lettered"
    IGNORED = "ignored", "Ignored (topic not used)"


class InboundEvent(models.Model):
    """The inbox: every verified delivery, stored before we answer the channel."""

    channel = models.ForeignKey(Channel, on_delete=models.PROTECT, related_name="inbound_events")
    dedup_key = models.CharField(max_length=255)
    delivery_id = models.CharField(max_length=255, blank=True, default="")
    topic = models.CharField(max_length=128, blank=True, default="")
    headers = models.JSONField(default=dict)
    body = models.TextField()
    status = models.CharField(max_length=16, choices=InboundStatus.choices, default=InboundStatus.PENDING)
    attempts = models.PositiveIntegerField(default=0)
    last_error = models.TextField(blank=True, default="")
    next_attempt_at = models.DateTimeField(null=True, blank=True)
    occurred_at = models.DateTimeField(null=True, blank=True, help_text="When the channel says it happened.")
    received_at = models.DateTimeField(default=timezone.now)
    processed_at = models.DateTimeField(null=True, blank=True)
    correlation_id = models.UUIDField(default=uuid.uuid4, editable=False)

    class Meta:
        ordering = ["-id"]
        constraints = [models.UniqueConstraint(fields=["channel", "dedup_key"], name="inbound_dedup")]
        indexes = [
            # (received_at, id) is the drain's order: the claim reads the first rows of the index, where a
            # shorter index made it sort every pending event, a cost that grows with the backlog it works off.
            models.Index(fields=["status", "received_at", "id"], condition=Q(status__in=["pending", "retrying"]),
                         name="inbound_unfinished"),
        ]

    def __str__(self) -> str:
        return f"{self.channel}:{self.topic}:{self.delivery_id or self.dedup_key}"


class WebhookRejection(models.Model):
    """A delivery we refused (unknown channel, bad signature, stale, too large): kept for the operator."""

    channel_slug = models.CharField(max_length=64)
    reason = models.CharField(max_length=64)
    detail = models.CharField(max_length=500, blank=True, default="")
    http_status = models.PositiveSmallIntegerField()
    headers = models.JSONField(default=dict)
    body_excerpt = models.TextField(blank=True, default="")
    remote_addr = models.CharField(max_length=64, blank=True, default="")
    received_at = models.DateTimeField(default=timezone.now, db_index=True)

    class Meta:
        ordering = ["-id"]


class PublishCursor(models.Model):
    """Watermark of a scheduled publishing stream: (updated_at, id) of the last row sent.

    The id breaks ties, so rows that share a timestamp are never skipped; ``last_run_at`` lets a
    run pick up prices that became effective by the clock alone (future-dated rows).
    """

    channel = models.ForeignKey(Channel, on_delete=models.CASCADE, related_name="publish_cursors")
    stream = models.CharField(max_length=16)
    updated_at = models.DateTimeField(default=datetime(2000, 1, 1, tzinfo=UTC))
    last_id = models.BigIntegerField(default=0)
    last_run_at = models.DateTimeField(null=True, blank=True)

    class Meta:
        constraints = [models.UniqueConstraint(fields=["channel", "stream"], name="publish_cursor_unique")]

    def __str__(self) -> str:
        return f"{self.channel}:{self.stream} @ {self.updated_at.isoformat()}#{self.last_id}"
