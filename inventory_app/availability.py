"""The one place that computes what can be sold.

Per location, per SKU (bundles from their components) and per channel. Channel
rules (pooled locations, buffers, caps, shares) are applied by
``channels_app.rules`` on top of ``sku_availability``.
"""

from __future__ import annotations

from collections import defaultdict
from collections.abc import Iterable
from dataclasses import dataclass, field
from functools import lru_cache

from django.db import connection

from inventory_app.models import BundleComponent, Location, Sku, StockLevel


@dataclass
class LocationAvailability:
    location: str
    on_hand: int
    reserved: int
    available: int
    # Units that can still be promised once ``available`` is gone (backorder/preorder).
    allowance_left: int


@dataclass
class SkuAvailability:
    sku: str
    on_hand: int
    reserved: int
    available: int
    sellable: int
    is_bundle: bool = False
    locations: list[LocationAvailability] = field(default_factory=list)


@dataclass(frozen=True)
class _Row:
    location: str
    on_hand: int
    reserved: int
    allowance: int


def _location_rows(sku_ids: Iterable[int], location_ids: Iterable[int] | None) -> dict[int, dict[int, _Row]]:
    # Plain SQL with the location's code joined in, built once per shape: this runs on every push of every
    # channel, and building it through the ORM cost more than the database spends answering it.
    sku_ids = sorted(set(sku_ids))
    rows: dict[int, dict[int, _Row]] = defaultdict(dict)
    if not sku_ids:
        return rows
    location_ids = None if location_ids is None else sorted(set(location_ids))
    with connection.cursor() as cursor:
        cursor.execute(_location_rows_sql(len(sku_ids), None if location_ids is None else len(location_ids)),
                       [*sku_ids, *(location_ids or ())])
        for sku_id, location_id, code, on_hand, reserved, allowance in cursor.fetchall():
            rows[sku_id][location_id] = _Row(code, on_hand, reserved, allowance)
    return rows


@lru_cache(maxsize=256)
def _location_rows_sql(n_skus: int, n_locations: int | None) -> str:
    where = f"sl.sku_id IN ({', '.join(['%s'] * n_skus)}) AND l.is_active"
    if n_locations is not None:
        where += f" AND sl.location_id IN ({', '.join(['%s'] * n_locations)})" if n_locations else " AND FALSE"
    return (f"SELECT sl.sku_id, sl.location_id, l.code, sl.on_hand, sl.reserved, sl.allowance "
            f"FROM {StockLevel._meta.db_table} sl JOIN {Location._meta.db_table} l ON l.id = sl.location_id "
            f"WHERE {where}")


def _components(sku_ids: list[int]) -> dict[int, list[tuple[int, int]]]:
    components: dict[int, list[tuple[int, int]]] = defaultdict(list)
    if not sku_ids:
        return components
    with connection.cursor() as cursor:
        cursor.execute(_components_sql(len(sku_ids)), sku_ids)
        for bundle_id, component_id, qty in cursor.fetchall():
            components[bundle_id].append((component_id, qty))
    return components


@lru_cache(maxsize=256)
def _components_sql(n: int) -> str:
    return (f"SELECT bundle_id, component_id, quantity FROM {BundleComponent._meta.db_table} "
            f"WHERE bundle_id IN ({', '.join(['%s'] * n)}) ORDER BY id")


def availability_for_skus(
    skus: Iterable[Sku], *, location_ids: Iterable[int] | None = None, held_back: dict[int, int] | None = None
) -> dict[int, SkuAvailability]:
    """Availability of many SKUs at once (two queries), optionally over a subset of locations.

    ``held_back``: units of a SKU (a bundle's component, for bundles) that are not for sale here (set aside
    for a ring-fenced channel); they come off the SKU's available units, not off any one location's."""
    held_back = held_back or {}
    skus = list(skus)
    location_ids = None if location_ids is None else list(location_ids)
    components = _components(sorted({s.id for s in skus}))
    wanted = {s.id for s in skus} | {c for parts in components.values() for c, _ in parts}
    rows = _location_rows(wanted, location_ids)

    def single(sku_id: int, code: str) -> SkuAvailability:
        locs = []
        for _, row in sorted(rows.get(sku_id, {}).items()):
            free = row.on_hand - row.reserved
            locs.append(LocationAvailability(
                location=row.location, on_hand=row.on_hand, reserved=row.reserved,
                available=max(free, 0), allowance_left=max(row.allowance + min(free, 0), 0),
            ))
        available = max(sum(loc.available for loc in locs) - held_back.get(sku_id, 0), 0)
        return SkuAvailability(
            sku=code, on_hand=sum(loc.on_hand for loc in locs), reserved=sum(loc.reserved for loc in locs),
            available=available, sellable=available + sum(loc.allowance_left for loc in locs), locations=locs,
        )

    result: dict[int, SkuAvailability] = {}
    for sku in skus:
        parts = components.get(sku.id)
        if not sku.is_active:  # not for sale (``stock`` refuses its sales): every channel is shown none
            stocked = single(sku.id, sku.code)
            result[sku.id] = SkuAvailability(sku=sku.code, on_hand=stocked.on_hand, reserved=stocked.reserved,
                                             available=0, sellable=0, is_bundle=bool(parts), locations=stocked.locations)
            continue
        if not parts:
            result[sku.id] = single(sku.id, sku.code)
            continue
        # A bundle is as available as its scarcest component allows.
        per_component = [(single(cid, ""), qty) for cid, qty in parts]
        location_codes = sorted({loc.location for comp, _ in per_component for loc in comp.locations})
        locs = []
        for code in location_codes:
            here = [next((loc for loc in comp.locations if loc.location == code), None) for comp, _ in per_component]
            free = min(((loc.available if loc else 0) // qty) for loc, (_, qty) in zip(here, per_component, strict=True))
            locs.append(LocationAvailability(location=code, on_hand=free, reserved=0, available=free,
                                             allowance_left=0))
        available = min(comp.available // qty for comp, qty in per_component)
        sellable = min(comp.sellable // qty for comp, qty in per_component)
        result[sku.id] = SkuAvailability(sku=sku.code, on_hand=available, reserved=0, available=available,
                                         sellable=sellable, is_bundle=True, locations=locs)
    return result


def available_sql(sku_id: str) -> str:
    """``SkuAvailability.available`` over all active locations as a SQL expression of the column ``sku_id``
    names, for ordering rows by it in the database (the pushers send the scarcest SKUs first) and for the free
    pool a ring fence is topped up from (``channels_app.allocation``). The same rule as ``availability_for_skus``:
    0 for a SKU off sale, else free units of active locations, a bundle by its scarcest component."""
    def free(column: str) -> str:
        return (f"(SELECT COALESCE(SUM(CASE WHEN sl.on_hand > sl.reserved THEN sl.on_hand - sl.reserved ELSE 0 END), 0) "
                f"FROM {StockLevel._meta.db_table} sl JOIN {Location._meta.db_table} l ON l.id = sl.location_id "
                f"WHERE sl.sku_id = {column} AND l.is_active)")

    # Off sale counts as none, as every channel is shown: counted as stocked, a SKU just taken off sale was pushed
    # (its 0) after the scarce ones, and a ring fence was filled from units no channel may sell.
    return (f"CASE WHEN (SELECT s_.is_active FROM {Sku._meta.db_table} s_ WHERE s_.id = {sku_id}) THEN "
            f"COALESCE((SELECT MIN({free('bc.component_id')} / bc.quantity) FROM {BundleComponent._meta.db_table} bc "
            f"WHERE bc.bundle_id = {sku_id}), {free(sku_id)}) ELSE 0 END")


def sku_availability(sku: Sku, *, location_ids: Iterable[int] | None = None) -> SkuAvailability:
    return availability_for_skus([sku], location_ids=location_ids)[sku.id]


def bundles_containing(sku_ids: Iterable[int]) -> set[int]:
    """Bundles whose availability moves when these components' stock moves."""
    return set(BundleComponent.objects.filter(component_id__in=set(sku_ids)).values_list("bundle_id", flat=True))
