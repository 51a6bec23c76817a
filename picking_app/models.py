"""Warehouse layouts, bins, layout restrictions and pick lists.

The geometry here is converted to ``picking_app.geometry.Grid`` by
``selectors.grid_for`` so the algorithms never touch the ORM. Writes go
through ``picking_app.services``.
"""

from __future__ import annotations

from django.core.exceptions import ValidationError
from django.core.validators import MinValueValidator
from django.db import models
from django.db.models import F, Q

from inventory_app.models import Location, ReservationLine, Sku


class DepotSide(models.TextChoices):
    FRONT = "front", "Front cross aisle"
    BACK = "back", "Back cross aisle"


class Layout(models.Model):
    """One warehouse layout per location: parallel aisles, cross aisles, a depot; distances in metres."""

    location = models.ForeignKey(Location, on_delete=models.CASCADE, related_name="picking_layouts")
    name = models.CharField(max_length=128, blank=True, default="")
    aisles = models.PositiveIntegerField(validators=[MinValueValidator(1)])
    blocks = models.PositiveIntegerField(default=1, validators=[MinValueValidator(1)],
                                         help_text="Blocks between cross aisles; blocks + 1 cross aisles (front, middle, back).")
    cells_per_block = models.PositiveIntegerField(validators=[MinValueValidator(1)],
                                                  help_text="Cells along each side of a sub-aisle.")
    aisle_pitch = models.FloatField(default=5.0, help_text="Centre-to-centre distance between neighbouring aisles (m).")
    cell_length = models.FloatField(default=1.0, help_text="Distance between neighbouring cells (m).")
    front_gap = models.FloatField(default=1.5, help_text="Front cross aisle of a block to its first cell (m).")
    back_gap = models.FloatField(default=1.5, help_text="Last cell of a block to its back cross aisle (m).")
    depot_aisle = models.PositiveIntegerField(default=0, help_text="The aisle the depot is in line with (0-based).")
    depot_side = models.CharField(max_length=8, choices=DepotSide.choices, default=DepotSide.FRONT)
    depot_offset = models.FloatField(default=0.0, help_text="Depot to the cross aisle (m).")
    created_at = models.DateTimeField(auto_now_add=True)
    updated_at = models.DateTimeField(auto_now=True)

    class Meta:
        ordering = ["location__code"]
        constraints = [
            models.UniqueConstraint(fields=["location"], name="picking_layout_one_per_location"),
            models.CheckConstraint(condition=Q(aisles__gte=1, blocks__gte=1, cells_per_block__gte=1),
                                   name="picking_layout_sizes_positive"),
            models.CheckConstraint(condition=Q(aisle_pitch__gt=0, cell_length__gt=0), name="picking_layout_pitches_positive"),
            models.CheckConstraint(condition=Q(front_gap__gte=0, back_gap__gte=0, depot_offset__gte=0),
                                   name="picking_layout_gaps_not_negative"),
            models.CheckConstraint(condition=Q(depot_aisle__lt=F("aisles")), name="picking_layout_depot_in_layout"),
            models.CheckConstraint(condition=Q(depot_side__in=["front", "back"]), name="picking_layout_depot_side_valid"),
        ]

    def __str__(self) -> str:
        return self.name or f"Layout of {self.location}"

    def clean(self) -> None:
        from picking_app.geometry import Grid

        try:
            Grid(aisles=self.aisles or 0, cells_per_block=self.cells_per_block or 0, blocks=self.blocks or 0,
                 pitch=self.aisle_pitch, cell_length=self.cell_length, front_gap=self.front_gap, back_gap=self.back_gap,
                 depot_aisle=self.depot_aisle, depot_side=self.depot_side, depot_offset=self.depot_offset)
        except (TypeError, ValueError) as exc:
            raise ValidationError(str(exc)) from None


class Side(models.TextChoices):
    LEFT = "left", "Left"
    RIGHT = "right", "Right"


class Bin(models.Model):
    """A storage cell on one side of a sub-aisle; it may hold a SKU."""

    layout = models.ForeignKey(Layout, on_delete=models.CASCADE, related_name="bins")
    code = models.CharField(max_length=64)
    aisle = models.PositiveIntegerField()
    block = models.PositiveIntegerField(default=0)
    cell = models.PositiveIntegerField(help_text="0-based, counted from the block's front cross aisle.")
    side = models.CharField(max_length=8, choices=Side.choices, default=Side.LEFT)
    sku = models.ForeignKey(Sku, null=True, blank=True, on_delete=models.SET_NULL, related_name="picking_bins")

    class Meta:
        ordering = ["layout", "aisle", "block", "cell", "side"]
        constraints = [
            models.UniqueConstraint(fields=["layout", "code"], name="picking_bin_code_unique"),
            models.UniqueConstraint(fields=["layout", "aisle", "block", "cell", "side"], name="picking_bin_position_unique"),
            models.CheckConstraint(condition=Q(side__in=["left", "right"]), name="picking_bin_side_valid"),
        ]
        indexes = [models.Index(fields=["layout", "sku"])]

    def __str__(self) -> str:
        return self.code

    def clean(self) -> None:
        if self.layout_id is None or None in (self.aisle, self.block, self.cell):
            return
        layout = self.layout
        if self.aisle >= layout.aisles or self.block >= layout.blocks or self.cell >= layout.cells_per_block:
            raise ValidationError("The bin lies outside its layout.")


class RestrictionKind(models.TextChoices):
    CUT = "cut", "Blocked stretch of aisle (obstacle)"
    ONE_WAY = "one_way", "One-way sub-aisle"
    CLOSED_CROSS = "closed_cross", "Closed cross-aisle segment"


class Direction(models.TextChoices):
    UP = "up", "Towards the back"
    DOWN = "down", "Towards the front"


class Restriction(models.Model):
    """What makes a layout irregular, so routes are found with A* instead of the closed form.

    * cut: no passage in sub-aisle (aisle, block) between cell ``after_cell`` and the next point
      (-1: the stretch from the front cross aisle to cell 0);
    * one_way: sub-aisle (aisle, block) may only be walked in ``direction``;
    * closed_cross: cross aisle ``block`` (0 = front) is closed between ``aisle`` and ``aisle + 1``.
    """

    layout = models.ForeignKey(Layout, on_delete=models.CASCADE, related_name="restrictions")
    kind = models.CharField(max_length=16, choices=RestrictionKind.choices)
    aisle = models.PositiveIntegerField()
    block = models.PositiveIntegerField(default=0, help_text="Block, or the cross aisle for closed_cross.")
    after_cell = models.IntegerField(null=True, blank=True)
    direction = models.CharField(max_length=8, choices=Direction.choices, blank=True, default="")

    class Meta:
        ordering = ["layout", "kind", "aisle", "block"]
        constraints = [
            models.CheckConstraint(
                condition=(Q(kind="cut", after_cell__isnull=False, after_cell__gte=-1, direction="")
                           | Q(kind="one_way", after_cell__isnull=True, direction__in=["up", "down"])
                           | Q(kind="closed_cross", after_cell__isnull=True, direction="")),
                name="picking_restriction_fields_match_kind",
            ),
        ]

    def __str__(self) -> str:
        return f"{self.kind} aisle {self.aisle} block {self.block}"

    def clean(self) -> None:
        if self.layout_id is None or self.aisle is None or self.block is None:
            return
        layout = self.layout
        if self.kind == RestrictionKind.CLOSED_CROSS:
            if self.aisle >= layout.aisles - 1 or self.block > layout.blocks:
                raise ValidationError("The cross-aisle segment lies outside the layout.")
            return
        if self.aisle >= layout.aisles or self.block >= layout.blocks:
            raise ValidationError("The sub-aisle lies outside the layout.")
        if self.kind == RestrictionKind.CUT and (self.after_cell is None or not -1 <= self.after_cell < layout.cells_per_block):
            raise ValidationError({"after_cell": "Between -1 (front end) and the last cell."})
        if self.kind == RestrictionKind.ONE_WAY and not self.direction:
            raise ValidationError({"direction": "A one-way sub-aisle needs a direction."})


class PickListStatus(models.TextChoices):
    OPEN = "open", "Open"
    PICKED = "picked", "Picked"


class BatchingMethod(models.TextChoices):
    FCFS = "fcfs", "First come, first served"
    SEED = "seed", "Seed"
    SAVINGS = "savings", "Clarke-Wright savings"


class PickList(models.Model):
    """One cart: a batch of committed orders at one location and the route to pick it.

    To give the lines back (e.g. a cart that will not be picked), delete the pick list.
    """

    layout = models.ForeignKey(Layout, on_delete=models.PROTECT, related_name="pick_lists")
    status = models.CharField(max_length=16, choices=PickListStatus.choices, default=PickListStatus.OPEN)
    batching = models.CharField(max_length=16, choices=BatchingMethod.choices, default=BatchingMethod.SAVINGS)
    policy = models.CharField(max_length=32, default="optimal")
    capacity = models.PositiveIntegerField(validators=[MinValueValidator(1)])
    units = models.PositiveIntegerField(default=0)
    route_length = models.FloatField(default=0.0, help_text="Metres, depot to depot.")
    exact = models.BooleanField(default=False, help_text="The route is proven optimal.")
    created_at = models.DateTimeField(auto_now_add=True)

    class Meta:
        ordering = ["-created_at", "-id"]
        constraints = [
            models.CheckConstraint(condition=Q(units__lte=F("capacity")), name="picking_list_within_capacity"),
            models.CheckConstraint(condition=Q(route_length__gte=0), name="picking_list_length_not_negative"),
        ]

    def __str__(self) -> str:
        return f"Pick list {self.pk} ({self.layout.location})"


class PickListLine(models.Model):
    pick_list = models.ForeignKey(PickList, on_delete=models.CASCADE, related_name="lines")
    sequence = models.PositiveIntegerField(help_text="Visiting order along the route, from 1.")
    reservation_line = models.ForeignKey(ReservationLine, on_delete=models.PROTECT, related_name="pick_list_lines")
    sku = models.ForeignKey(Sku, on_delete=models.PROTECT, related_name="+")
    bin = models.ForeignKey(Bin, on_delete=models.PROTECT, related_name="pick_list_lines")
    quantity = models.PositiveIntegerField(validators=[MinValueValidator(1)])

    class Meta:
        ordering = ["pick_list", "sequence"]
        constraints = [
            # A committed line is picked once: creating pick lists twice does not pick it twice.
            models.UniqueConstraint(fields=["reservation_line"], name="picking_line_reservation_line_once"),
            models.UniqueConstraint(fields=["pick_list", "sequence"], name="picking_line_sequence_unique"),
            models.CheckConstraint(condition=Q(quantity__gte=1), name="picking_line_quantity_positive"),
        ]
