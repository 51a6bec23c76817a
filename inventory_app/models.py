"""Canonical inventory: SKUs, locations, stock, reservations, the ledger, orders and prices.

Models hold fields, constraints and small invariants. Every write to stock goes
through ``inventory_app.stock``; nothing else updates ``StockLevel``.
"""

from __future__ import annotations

import uuid
from decimal import Decimal

from django.core.validators import MinValueValidator
from django.db import models
from django.db.models import F, Q
from django.utils import timezone


class StockPolicy(models.TextChoices):
    DENY = "deny", "Sell only what is on hand"
    BACKORDER = "backorder", "Allow backorders up to a limit"
    PREORDER = "preorder", "Take preorders up to a limit"


class Sku(models.Model):
    code = models.CharField(max_length=64, unique=True, help_text="The merchant's SKU code.")
    name = models.CharField(max_length=255)
    is_active = models.BooleanField(default=True)
    stock_policy = models.CharField(max_length=16, choices=StockPolicy.choices, default=StockPolicy.DENY)
    # How many units may be promised beyond what is on hand (backorder/preorder);
    # carried onto the stock row of ``oversell_location`` as its allowance.
    oversell_limit = models.PositiveIntegerField(default=0)
    oversell_location = models.ForeignKey(
        "Location", null=True, blank=True, on_delete=models.PROTECT, related_name="+",
        help_text="Where backorders/preorders are fulfilled from.",
    )
    preorder_release_at = models.DateTimeField(null=True, blank=True)
    created_at = models.DateTimeField(auto_now_add=True)
    updated_at = models.DateTimeField(auto_now=True, db_index=True)

    class Meta:
        ordering = ["code"]
        verbose_name = "SKU"
        verbose_name_plural = "SKUs"
        constraints = [
            models.CheckConstraint(
                condition=Q(stock_policy="deny", oversell_limit=0) | ~Q(stock_policy="deny"),
                name="sku_deny_has_no_oversell_limit",
            ),
        ]

    def __str__(self) -> str:
        return self.code

    @property
    def is_bundle(self) -> bool:
        return self.components.exists()


class BundleComponent(models.Model):
    bundle = models.ForeignKey(Sku, on_delete=models.CASCADE, related_name="components")
    component = models.ForeignKey(Sku, on_delete=models.PROTECT, related_name="in_bundles")
    quantity = models.PositiveIntegerField(validators=[MinValueValidator(1)])

    class Meta:
        constraints = [
            models.UniqueConstraint(fields=["bundle", "component"], name="bundle_component_unique"),
            models.CheckConstraint(condition=~Q(bundle=F("component")), name="bundle_not_own_component"),
            models.CheckConstraint(condition=Q(quantity__gte=1), name="bundle_component_quantity_positive"),
        ]

    def __str__(self) -> str:
        return f"{self.bundle} = {self.quantity} x {self.component}"


class LocationKind(models.TextChoices):
    WAREHOUSE = "warehouse", "Warehouse"
    STORE = "store", "Store"
    DROPSHIP = "dropship", "Dropship"


class Location(models.Model):
    code = models.SlugField(max_length=64, unique=True)
    name = models.CharField(max_length=255)
    kind = models.CharField(max_length=16, choices=LocationKind.choices, default=LocationKind.WAREHOUSE)
    # Lower number is allocated first.
    priority = models.PositiveIntegerField(default=100)
    is_active = models.BooleanField(default=True)
    created_at = models.DateTimeField(auto_now_add=True)

    class Meta:
        ordering = ["priority", "code"]

    def __str__(self) -> str:
        return self.code


class StockLevel(models.Model):
    sku = models.ForeignKey(Sku, on_delete=models.PROTECT, related_name="stock_levels")
    location = models.ForeignKey(Location, on_delete=models.PROTECT, related_name="stock_levels")
    on_hand = models.IntegerField(default=0)
    reserved = models.IntegerField(default=0)
    # Units that may be promised beyond on_hand (backorder/preorder); 0 for "deny".
    allowance = models.PositiveIntegerField(default=0)
    updated_at = models.DateTimeField(default=timezone.now)

    class Meta:
        constraints = [
            models.UniqueConstraint(fields=["sku", "location"], name="stock_level_unique"),
            models.CheckConstraint(condition=Q(reserved__gte=0), name="stock_reserved_not_negative"),
            # Together: 0 <= reserved <= on_hand, relaxed only by an explicit allowance.
            models.CheckConstraint(
                condition=Q(on_hand__gte=F("reserved") - F("allowance")), name="stock_reserved_covered"
            ),
        ]

    def __str__(self) -> str:
        return f"{self.sku}@{self.location}: {self.on_hand} on hand, {self.reserved} reserved"

    @property
    def available(self) -> int:
        return max(self.on_hand - self.reserved, 0)

    @property
    def sellable(self) -> int:
        return max(self.on_hand - self.reserved + self.allowance, 0)


class LedgerKind(models.TextChoices):
    RECEIVE = "receive", "Receive"
    ADJUST = "adjust", "Adjust"
    COUNT = "count", "Count"
    COUNT_STALE = "count_stale", "Count ignored (stale)"
    RESERVE = "reserve", "Reserve"
    COMMIT = "commit", "Commit"
    RELEASE = "release", "Release"
    EXPIRE = "expire", "Expire"
    TRANSFER_OUT = "transfer_out", "Transfer out"
    TRANSFER_IN = "transfer_in", "Transfer in"
    RESTOCK = "restock", "Restock"


class StockLedgerEntry(models.Model):
    """Append-only: one row per change to one stock row. Sums reproduce the stock row."""

    sku = models.ForeignKey(Sku, on_delete=models.PROTECT, related_name="ledger")
    location = models.ForeignKey(Location, on_delete=models.PROTECT, related_name="ledger")
    kind = models.CharField(max_length=16, choices=LedgerKind.choices)
    on_hand_delta = models.IntegerField(default=0)
    reserved_delta = models.IntegerField(default=0)
    on_hand_after = models.IntegerField()
    reserved_after = models.IntegerField()
    reference = models.CharField(max_length=255, blank=True, default="")
    reason = models.CharField(max_length=255, blank=True, default="")
    source = models.CharField(max_length=64, blank=True, default="", help_text="Who caused it: api, admin, channel slug...")
    operation_key = models.CharField(max_length=255, blank=True, default="")
    occurred_at = models.DateTimeField(default=timezone.now)
    recorded_at = models.DateTimeField(auto_now_add=True)

    class Meta:
        ordering = ["-id"]
        verbose_name_plural = "stock ledger entries"
        indexes = [models.Index(fields=["sku", "location", "id"]),
                   # A SKU's recent sales (``selectors.units_taken_since``: the channels' sell-out guard).
                   models.Index(fields=["sku", "recorded_at"], name="ledger_sku_recorded")]

    def __str__(self) -> str:
        return f"{self.kind} {self.sku}@{self.location} {self.on_hand_delta:+}/{self.reserved_delta:+}"


class CountWatermark(models.Model):
    """The as_of of the last absolute count applied per (sku, location, source)."""

    sku = models.ForeignKey(Sku, on_delete=models.CASCADE)
    location = models.ForeignKey(Location, on_delete=models.CASCADE)
    source = models.CharField(max_length=64)
    last_as_of = models.DateTimeField()

    class Meta:
        constraints = [
            models.UniqueConstraint(fields=["sku", "location", "source"], name="count_watermark_unique"),
        ]


class ReservationStatus(models.TextChoices):
    ACTIVE = "active", "Active"
    COMMITTED = "committed", "Committed"
    RELEASED = "released", "Released"
    EXPIRED = "expired", "Expired"


class Reservation(models.Model):
    id = models.UUIDField(primary_key=True, default=uuid.uuid4, editable=False)
    status = models.CharField(max_length=16, choices=ReservationStatus.choices, default=ReservationStatus.ACTIVE)
    channel = models.CharField(max_length=64, blank=True, default="", help_text="Channel slug that asked for it.")
    reference = models.CharField(max_length=255, blank=True, default="")
    expires_at = models.DateTimeField(null=True, blank=True)
    created_at = models.DateTimeField(auto_now_add=True)
    updated_at = models.DateTimeField(auto_now=True)

    class Meta:
        ordering = ["-created_at"]
        indexes = [
            models.Index(fields=["expires_at"], condition=Q(status="active"), name="reservation_active_expiry"),
        ]

    def __str__(self) -> str:
        return f"{self.id} ({self.status})"


class ReservationLine(models.Model):
    reservation = models.ForeignKey(Reservation, on_delete=models.CASCADE, related_name="lines")
    # What was asked for (a bundle or a plain SKU); ``sku`` is the stock that is held.
    requested_sku = models.ForeignKey(Sku, on_delete=models.PROTECT, related_name="+")
    sku = models.ForeignKey(Sku, on_delete=models.PROTECT, related_name="reservation_lines")
    location = models.ForeignKey(Location, on_delete=models.PROTECT, related_name="reservation_lines")
    quantity = models.PositiveIntegerField()

    class Meta:
        constraints = [models.CheckConstraint(condition=Q(quantity__gte=1), name="reservation_line_positive")]


class OperationRecord(models.Model):
    """Makes stock operations idempotent on a caller key (order line id, Idempotency-Key...)."""

    key = models.CharField(max_length=255, unique=True)
    operation = models.CharField(max_length=32)
    request_hash = models.CharField(max_length=64)
    result = models.JSONField(default=dict)
    created_at = models.DateTimeField(auto_now_add=True)


class IdempotencyStatus(models.TextChoices):
    IN_PROGRESS = "in_progress", "In progress"
    DONE = "done", "Done"


class IdempotencyKey(models.Model):
    """HTTP Idempotency-Key (IETF draft): the first response is kept and replayed."""

    owner = models.CharField(max_length=150)
    key = models.CharField(max_length=255)
    fingerprint = models.CharField(max_length=64)
    status = models.CharField(max_length=16, choices=IdempotencyStatus.choices, default=IdempotencyStatus.IN_PROGRESS)
    response_status = models.PositiveSmallIntegerField(null=True, blank=True)
    response_body = models.JSONField(null=True, blank=True)
    locked_at = models.DateTimeField(default=timezone.now)
    created_at = models.DateTimeField(auto_now_add=True)

    class Meta:
        constraints = [models.UniqueConstraint(fields=["owner", "key"], name="idempotency_key_unique")]


class OrderStatus(models.TextChoices):
    OPEN = "open", "Open"
    PAID = "paid", "Paid"
    CANCELLED = "cancelled", "Cancelled"
    REFUNDED = "refunded", "Refunded"


class Order(models.Model):
    channel = models.CharField(max_length=64, help_text="Source channel slug.")
    external_id = models.CharField(max_length=128)
    name = models.CharField(max_length=128, blank=True, default="")
    status = models.CharField(max_length=16, choices=OrderStatus.choices, default=OrderStatus.OPEN)
    currency = models.CharField(max_length=3, default="USD")
    total = models.DecimalField(max_digits=14, decimal_places=2, default=Decimal("0.00"))
    placed_at = models.DateTimeField(default=timezone.now)
    created_at = models.DateTimeField(auto_now_add=True)
    updated_at = models.DateTimeField(auto_now=True)

    class Meta:
        ordering = ["-placed_at"]
        constraints = [models.UniqueConstraint(fields=["channel", "external_id"], name="order_channel_external_unique")]

    def __str__(self) -> str:
        return f"{self.channel}:{self.name or self.external_id}"


class OrderLineStatus(models.TextChoices):
    COMMITTED = "committed", "Committed"
    CANCELLED = "cancelled", "Cancelled"
    REFUNDED = "refunded", "Refunded"
    # The channel sold units we did not have (an oversell): nothing was taken from stock.
    SHORT = "short", "Short (oversold)"


class OrderLine(models.Model):
    order = models.ForeignKey(Order, on_delete=models.CASCADE, related_name="lines")
    external_id = models.CharField(max_length=128)
    sku = models.ForeignKey(Sku, on_delete=models.PROTECT, related_name="order_lines")
    quantity = models.PositiveIntegerField()
    unit_price = models.DecimalField(max_digits=14, decimal_places=2, default=Decimal("0.00"))
    status = models.CharField(max_length=16, choices=OrderLineStatus.choices, default=OrderLineStatus.COMMITTED)
    restocked_quantity = models.PositiveIntegerField(default=0)
    written_off_quantity = models.PositiveIntegerField(
        default=0, help_text="Units refunded without going back to stock (damaged, kept by the customer).")
    reservation = models.ForeignKey(Reservation, null=True, blank=True, on_delete=models.SET_NULL)

    class Meta:
        constraints = [
            models.UniqueConstraint(fields=["order", "external_id"], name="order_line_external_unique"),
            models.CheckConstraint(condition=Q(restocked_quantity__lte=F("quantity") - F("written_off_quantity")),
                                   name="order_line_restock_bounded"),
        ]


class Price(models.Model):
    sku = models.ForeignKey(Sku, on_delete=models.CASCADE, related_name="prices")
    channel = models.CharField(max_length=64, blank=True, default="", help_text="Blank: the default price.")
    currency = models.CharField(max_length=3, default="USD")
    amount = models.DecimalField(max_digits=14, decimal_places=2)
    valid_from = models.DateTimeField(default=timezone.now)
    valid_to = models.DateTimeField(null=True, blank=True)
    updated_at = models.DateTimeField(auto_now=True, db_index=True)

    class Meta:
        ordering = ["sku", "channel", "-valid_from"]
        constraints = [
            models.CheckConstraint(condition=Q(amount__gte=0), name="price_not_negative"),
            models.CheckConstraint(
                condition=Q(valid_to__isnull=True) | Q(valid_to__gt=F("valid_from")), name="price_window_ordered"
            ),
        ]

    def __str__(self) -> str:
        return f"{self.sku} {self.channel or 'default'} {self.amount} {self.currency}"
