"""Shared plain-data types for the route solvers."""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass, field

from picking_app.geometry import BACK, DOWN, UP, Grid, Point, Slot


@dataclass(frozen=True)
class Route:
    """A closed walk from the depot: ``order`` indexes the pick list, ``length`` is in metres."""

    order: tuple[int, ...]
    length: float
    method: str
    exact: bool = False
    waypoints: tuple[Point, ...] = field(default=(), compare=False)


def tour_length(matrix: Sequence[Sequence[float]], tour: Sequence[int]) -> float:
    """Length of depot(0) -> tour... -> depot(0) over a distance matrix whose row/column 0 is the depot."""
    total, prev = 0.0, 0
    for node in tour:
        total += matrix[prev][node]
        prev = node
    return total + matrix[prev][0]


def distinct(slots: Sequence[Slot]) -> tuple[list[Slot], list[list[int]]]:
    """Coincident picks are one stop: the unique slots and, for each, the pick indices it serves."""
    where: dict[Slot, int] = {}
    groups: list[list[int]] = []
    unique: list[Slot] = []
    for i, slot in enumerate(slots):
        if slot not in where:
            where[slot] = len(unique)
            unique.append(slot)
            groups.append([])
        groups[where[slot]].append(i)
    return unique, groups


def expand(stops: Sequence[int], groups: Sequence[Sequence[int]]) -> tuple[int, ...]:
    return tuple(i for stop in stops for i in groups[stop])


def mirror_grid(grid: Grid) -> Grid:
    """The same warehouse seen from the back: lets every solver assume a depot on the front cross aisle."""
    last = grid.cells_per_block - 1
    return Grid(
        aisles=grid.aisles, cells_per_block=grid.cells_per_block, blocks=grid.blocks, pitch=grid.pitch,
        cell_length=grid.cell_length, front_gap=grid.back_gap, back_gap=grid.front_gap,
        depot_aisle=grid.depot_aisle, depot_side="front" if grid.depot_side == BACK else BACK,
        depot_offset=grid.depot_offset,
        cuts=frozenset((a, grid.blocks - 1 - b, last - 1 - k) for a, b, k in grid.cuts),
        one_way=tuple((a, grid.blocks - 1 - b, DOWN if d == UP else UP) for a, b, d in grid.one_way),
        closed_cross=frozenset((grid.blocks - c, a) for c, a in grid.closed_cross),
    )


def mirror_slot(grid: Grid, slot: Slot) -> Slot:
    return Slot(slot.aisle, grid.blocks - 1 - slot.block, grid.cells_per_block - 1 - slot.cell)


def mirror_point(grid: Grid, point: Point) -> Point:
    if point.kind == "slot":
        return Point.of(mirror_slot(grid, point.slot))
    if point.kind == "junction":
        return Point.junction(point.aisle, grid.blocks - point.block)
    return point
