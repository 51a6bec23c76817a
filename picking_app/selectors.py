"""Reads: layouts as plain ``Grid`` data, bins for picks, committed lines waiting to be picked, routes."""

from __future__ import annotations

import random
from collections.abc import Sequence
from dataclasses import dataclass

from django.db.models import QuerySet

from inventory_app.models import Location, ReservationLine, ReservationStatus
from picking_app.distances import Metric
from picking_app.geometry import Grid, Slot
from picking_app.models import Bin, Layout, Restriction, RestrictionKind
from picking_app.solvers import Route, baselines, solve


def layout_for(location: Location | str) -> Layout | None:
    code = location.code if isinstance(location, Location) else location
    return Layout.objects.select_related("location").filter(location__code=code).first()


def grid_for(layout: Layout, restrictions: Sequence[Restriction] | None = None) -> Grid:
    """The plain geometry the algorithms work on (raises ValueError if the stored layout is inconsistent)."""
    if restrictions is None:
        restrictions = list(layout.restrictions.all())
    cuts = frozenset((r.aisle, r.block, r.after_cell) for r in restrictions if r.kind == RestrictionKind.CUT)
    one_way = tuple((r.aisle, r.block, r.direction) for r in restrictions if r.kind == RestrictionKind.ONE_WAY)
    closed = frozenset((r.block, r.aisle) for r in restrictions if r.kind == RestrictionKind.CLOSED_CROSS)
    return Grid(
        aisles=layout.aisles, cells_per_block=layout.cells_per_block, blocks=layout.blocks, pitch=layout.aisle_pitch,
        cell_length=layout.cell_length, front_gap=layout.front_gap, back_gap=layout.back_gap,
        depot_aisle=layout.depot_aisle, depot_side=layout.depot_side, depot_offset=layout.depot_offset,
        cuts=cuts, one_way=one_way, closed_cross=closed,
    )


def slot_of(bin_: Bin) -> Slot:
    return Slot(bin_.aisle, bin_.block, bin_.cell)


def resolve_picks(layout: Layout, picks: Sequence[str]) -> tuple[list[Bin], dict[int, str]]:
    """Each pick is a bin code or a SKU code (the first bin, in layout order, holding it).

    Returns the bins and, for picks that name neither, ``{position: message}``.
    """
    by_code = {b.code: b for b in layout.bins.filter(code__in=set(picks)).select_related("sku")}
    wanted_skus = {p for p in picks if p not in by_code}
    by_sku: dict[str, Bin] = {}
    for b in layout.bins.filter(sku__code__in=wanted_skus).select_related("sku").order_by("aisle", "block", "cell", "side"):
        by_sku.setdefault(b.sku.code, b)
    bins, errors = [], {}
    for k, pick in enumerate(picks):
        found = by_code.get(pick) or by_sku.get(pick)
        if found is None:
            errors[k] = f"{pick!r} is neither a bin of this layout nor a SKU stored in one."
        else:
            bins.append(found)
    return bins, errors


def bins_by_sku(layout: Layout) -> dict[int, Bin]:
    out: dict[int, Bin] = {}
    for b in layout.bins.filter(sku__isnull=False).order_by("aisle", "block", "cell", "side"):
        out.setdefault(b.sku_id, b)
    return out


def lines_to_pick(location: Location) -> QuerySet[ReservationLine]:
    """Committed reservation lines at ``location`` that no pick list holds yet, oldest reservation first."""
    return (ReservationLine.objects
            .filter(location=location, reservation__status=ReservationStatus.COMMITTED, pick_list_lines__isnull=True)
            .select_related("reservation", "sku")
            .order_by("reservation__created_at", "reservation_id", "id"))


@dataclass(frozen=True)
class RoutePlan:
    bins: list[Bin]
    route: Route
    baselines: dict[str, float]
    grid: Grid


def plan_route(layout: Layout, bins: Sequence[Bin], policy: str) -> RoutePlan:
    """Route the bins with ``policy`` and, for comparison, every classic policy (raises Unreachable)."""
    grid = grid_for(layout)
    metric = Metric(grid)
    slots = [slot_of(b) for b in bins]
    route = solve(grid, slots, policy, metric=metric)
    return RoutePlan(list(bins), route, baselines(grid, slots, metric=metric), grid)


def random_bins(layout: Layout, n: int, seed: int) -> list[Bin]:
    ids = list(layout.bins.order_by("id").values_list("id", flat=True))
    chosen = random.Random(seed).sample(ids, min(n, len(ids)))
    by_id = Bin.objects.in_bulk(chosen)
    return [by_id[i] for i in chosen]
