"""Writes: build layouts, import instances, place SKUs in bins, create pick lists from committed orders."""

from __future__ import annotations

from collections import defaultdict
from dataclasses import dataclass, field

from django.db import transaction

from inventory_app.models import Location, Sku
from picking_app import selectors
from picking_app.batching import METHODS, OrderPicks, batch
from picking_app.geometry import Grid
from picking_app.instances import Instance, parse_instance
from picking_app.models import Bin, Layout, PickList, PickListLine, Side
from picking_app.solvers import SOLVERS, solve


def bin_code(aisle: int, block: int, cell: int, side: str, blocks: int) -> str:
    """``A03-012-L`` (single block) or ``A03-B1-012-L``; aisles and cells from 0 as in the layout."""
    middle = f"-B{block}" if blocks > 1 else ""
    return f"A{aisle:02d}{middle}-{cell:03d}-{side[0].upper()}"


def _location(location: Location | str) -> Location:
    return location if isinstance(location, Location) else Location.objects.get(code=location)


@transaction.atomic
def build_layout(
    *,
    location: Location | str,
    aisles: int,
    cells_per_block: int,
    blocks: int = 1,
    aisle_pitch: float = 5.0,
    cell_length: float = 1.0,
    front_gap: float = 1.5,
    back_gap: float = 1.5,
    depot_aisle: int = 0,
    depot_side: str = "front",
    depot_offset: float = 0.0,
    name: str = "",
    replace: bool = False,
) -> Layout:
    """A parametric layout with a bin on both sides of every cell. ``replace`` drops the location's old layout."""
    location = _location(location)
    # Validates the numbers the same way the algorithms will see them.
    Grid(aisles=aisles, cells_per_block=cells_per_block, blocks=blocks, pitch=aisle_pitch, cell_length=cell_length,
         front_gap=front_gap, back_gap=back_gap, depot_aisle=depot_aisle, depot_side=depot_side, depot_offset=depot_offset)
    if replace:
        Layout.objects.filter(location=location).delete()
    layout = Layout.objects.create(
        location=location, name=name, aisles=aisles, blocks=blocks, cells_per_block=cells_per_block,
        aisle_pitch=aisle_pitch, cell_length=cell_length, front_gap=front_gap, back_gap=back_gap,
        depot_aisle=depot_aisle, depot_side=depot_side, depot_offset=depot_offset,
    )
    Bin.objects.bulk_create(
        Bin(layout=layout, code=bin_code(a, b, c, side, blocks), aisle=a, block=b, cell=c, side=side)
        for a in range(aisles) for b in range(blocks) for c in range(cells_per_block) for side in (Side.LEFT, Side.RIGHT)
    )
    return layout


@transaction.atomic
def import_instance(
    *, location: Location | str, text: str, sku_prefix: str = "", replace: bool = False
) -> tuple[Layout, Instance]:
    """Build the layout an instance file describes; with ``sku_prefix``, put SKU ``<prefix><article>`` in its bins
    (creating the SKUs if needed)."""
    instance = parse_instance(text)
    g = instance.grid
    layout = build_layout(
        location=location, aisles=g.aisles, cells_per_block=g.cells_per_block, blocks=1, aisle_pitch=g.pitch,
        cell_length=g.cell_length, front_gap=g.front_gap, back_gap=g.back_gap, depot_aisle=g.depot_aisle,
        depot_side=g.depot_side, depot_offset=g.depot_offset, name=instance.header.get("NAME", ""), replace=replace,
    )
    if sku_prefix:
        codes = {f"{sku_prefix}{s.article}" for s in instance.storage}
        existing = {s.code: s for s in Sku.objects.filter(code__in=codes)}
        Sku.objects.bulk_create(Sku(code=c, name=c) for c in sorted(codes - set(existing)))
        skus = {s.code: s for s in Sku.objects.filter(code__in=codes)}
        bins = {(b.aisle, b.block, b.cell, b.side): b for b in layout.bins.all()}
        changed = []
        for stored in instance.storage:
            target = bins[stored.slot.aisle, stored.slot.block, stored.slot.cell, stored.side]
            target.sku = skus[f"{sku_prefix}{stored.article}"]
            changed.append(target)
        Bin.objects.bulk_update(changed, ["sku"])
    return layout, instance


@dataclass
class PickListResult:
    pick_lists: list[PickList] = field(default_factory=list)
    # Lines left out, with the reason (no bin holds the SKU; the order alone overfills the cart).
    skipped: dict[int, str] = field(default_factory=dict)


@transaction.atomic
def create_pick_lists(*, location: Location | str, capacity: int, method: str = "savings",
                      policy: str = "optimal") -> PickListResult:
    """Batch the committed, not yet picked orders at ``location`` into carts and route each cart.

    An order is one committed reservation; each of its lines at this location is one pick at the first bin
    holding the SKU. The layout row is locked so two concurrent runs cannot batch the same lines (the unique
    reservation line on ``PickListLine`` would refuse it anyway).
    """
    if method not in METHODS:
        raise ValueError(f"Unknown batching method {method!r}.")
    if policy not in SOLVERS:
        raise ValueError(f"Unknown routing policy {policy!r}.")
    location = _location(location)
    layout = Layout.objects.select_for_update().filter(location=location).first()
    if layout is None:
        raise ValueError(f"Location {location.code} has no picking layout.")
    grid = selectors.grid_for(layout)
    bins = selectors.bins_by_sku(layout)
    result = PickListResult()
    by_order: dict = defaultdict(list)
    for line in selectors.lines_to_pick(location):
        if line.sku_id not in bins:
            result.skipped[line.id] = f"No bin at {location.code} holds {line.sku.code}."
        else:
            by_order[line.reservation_id].append(line)
    orders, order_lines = [], []
    for key, lines in by_order.items():
        units = sum(line.quantity for line in lines)
        if units > capacity:
            for line in lines:
                result.skipped[line.id] = f"Its order needs {units} units; the cart holds {capacity}."
            continue
        orders.append(OrderPicks(key, tuple(selectors.slot_of(bins[line.sku_id]) for line in lines), units))
        order_lines.append(lines)
    if not orders:
        return result

    def route(slots):
        return solve(grid, slots, policy)

    for cart in batch(orders, capacity=capacity, method=method, grid=grid, route=route):
        lines = [line for i in cart.orders for line in order_lines[i]]
        pick_list = PickList.objects.create(layout=layout, batching=method, policy=policy, capacity=capacity,
                                            units=cart.units, route_length=cart.route.length, exact=cart.route.exact)
        PickListLine.objects.bulk_create(
            PickListLine(pick_list=pick_list, sequence=seq, reservation_line=lines[i], sku_id=lines[i].sku_id,
                         bin=bins[lines[i].sku_id], quantity=lines[i].quantity)
            for seq, i in enumerate(cart.route.order, start=1)
        )
        result.pick_lists.append(pick_list)
    return result
