"""Warehouse geometry as plain data: the routing algorithms never see the ORM.

A layout is the classic rectangular picker-to-parts warehouse of the routing
literature (Ratliff & Rosenthal 1983; Roodbergen & de Koster 2001): parallel
aisles ``0..aisles-1`` at ``x = aisle * pitch``, cut into ``blocks`` by
``blocks + 1`` cross aisles (front ``y = 0``, back ``y = height``, the others in
between), each sub-aisle holding ``cells_per_block`` cells on both sides. Aisles
are narrow: a bin on the left and the bin on the right of the same cell are one
point. The depot sits on the front (or back) cross aisle in line with an aisle,
``depot_offset`` metres away from it.

Irregularities that make the closed-form metric wrong, so paths go through A*:
``cuts`` (an obstacle or a closed stretch of aisle between two neighbouring
points of a sub-aisle), ``one_way`` sub-aisles, and ``closed_cross`` segments of
a cross aisle between two neighbouring aisles.
"""

from __future__ import annotations

from dataclasses import dataclass, field

FRONT = "front"
BACK = "back"
UP = "up"  # towards the back, increasing y
DOWN = "down"


@dataclass(frozen=True, order=True)
class Slot:
    """A pick position: ``cell`` counts from the front end of the sub-aisle ``(aisle, block)``."""

    aisle: int
    block: int
    cell: int


@dataclass(frozen=True)
class Grid:
    aisles: int
    cells_per_block: int
    blocks: int = 1
    pitch: float = 5.0
    cell_length: float = 1.0
    front_gap: float = 1.5  # front cross aisle to the first cell of a block
    back_gap: float = 1.5  # last cell of a block to its back cross aisle
    depot_aisle: int = 0
    depot_side: str = FRONT
    depot_offset: float = 0.0
    # (aisle, block, after_cell): no passage between cell ``after_cell`` and the next point;
    # -1 is the stretch from the front cross aisle to cell 0, cells_per_block-1 the stretch to the back.
    cuts: frozenset[tuple[int, int, int]] = field(default_factory=frozenset)
    one_way: tuple[tuple[int, int, str], ...] = ()  # (aisle, block, UP|DOWN)
    closed_cross: frozenset[tuple[int, int]] = field(default_factory=frozenset)  # (cross, left aisle)

    def __post_init__(self) -> None:
        if self.aisles < 1 or self.blocks < 1 or self.cells_per_block < 1:
            raise ValueError("A layout needs at least one aisle, one block and one cell.")
        if self.pitch <= 0 or self.cell_length <= 0 or self.front_gap < 0 or self.back_gap < 0 or self.depot_offset < 0:
            raise ValueError("Distances must be positive (gaps and depot offset may be zero).")
        if not 0 <= self.depot_aisle < self.aisles:
            raise ValueError("The depot must be in line with an aisle.")
        if self.depot_side not in (FRONT, BACK):
            raise ValueError("depot_side is 'front' or 'back'.")
        for aisle, block, after in self.cuts:
            self._check_subaisle(aisle, block)
            if not -1 <= after < self.cells_per_block:
                raise ValueError(f"Cut after cell {after} is outside the sub-aisle.")
        for aisle, block, direction in self.one_way:
            self._check_subaisle(aisle, block)
            if direction not in (UP, DOWN):
                raise ValueError("One-way direction is 'up' or 'down'.")
        for cross, aisle in self.closed_cross:
            if not (0 <= cross <= self.blocks and 0 <= aisle < self.aisles - 1):
                raise ValueError("Closed cross-aisle segment is outside the layout.")

    def _check_subaisle(self, aisle: int, block: int) -> None:
        if not (0 <= aisle < self.aisles and 0 <= block < self.blocks):
            raise ValueError(f"Sub-aisle ({aisle}, {block}) is outside the layout.")

    @property
    def block_length(self) -> float:
        return self.front_gap + (self.cells_per_block - 1) * self.cell_length + self.back_gap

    @property
    def height(self) -> float:
        return self.blocks * self.block_length

    @property
    def width(self) -> float:
        return (self.aisles - 1) * self.pitch

    @property
    def is_regular(self) -> bool:
        """True when the closed-form metric is exact (no obstacles, one-way aisles or closed cross aisles)."""
        return not (self.cuts or self.one_way or self.closed_cross)

    def cross_y(self, cross: int) -> float:
        return cross * self.block_length

    def x(self, aisle: int) -> float:
        return aisle * self.pitch

    def y(self, slot: Slot) -> float:
        return slot.block * self.block_length + self.front_gap + slot.cell * self.cell_length

    def contains(self, slot: Slot) -> bool:
        return 0 <= slot.aisle < self.aisles and 0 <= slot.block < self.blocks and 0 <= slot.cell < self.cells_per_block

    def depot_xy(self) -> tuple[float, float]:
        if self.depot_side == FRONT:
            return self.x(self.depot_aisle), -self.depot_offset
        return self.x(self.depot_aisle), self.height + self.depot_offset


@dataclass(frozen=True)
class Point:
    """Where a route can stop: a slot, a junction of an aisle with a cross aisle, or the depot."""

    kind: str  # "slot" | "junction" | "depot"
    aisle: int = 0
    block: int = 0  # for a junction: the cross-aisle index
    cell: int = 0

    @staticmethod
    def of(slot: Slot) -> Point:
        return Point("slot", slot.aisle, slot.block, slot.cell)

    @staticmethod
    def junction(aisle: int, cross: int) -> Point:
        return Point("junction", aisle, cross, 0)

    @staticmethod
    def depot() -> Point:
        return Point("depot")

    @property
    def slot(self) -> Slot:
        return Slot(self.aisle, self.block, self.cell)


def xy(grid: Grid, point: Point) -> tuple[float, float]:
    if point.kind == "slot":
        return grid.x(point.aisle), grid.y(point.slot)
    if point.kind == "junction":
        return grid.x(point.aisle), grid.cross_y(point.block)
    return grid.depot_xy()
