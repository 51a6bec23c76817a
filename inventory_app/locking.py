"""The one lock order for stock rows, and the locked read every stock write starts from.

Every operation that touches several stock rows locks them in primary-key order,
so two operations can never wait on each other in a cycle (no deadlocks). The
read is plain SQL because it sits on the hottest path in Tally (every order line
of every channel passes through it); it joins the location so allocation needs
no second query.
"""

from __future__ import annotations

from collections.abc import Iterable
from dataclasses import dataclass

from django.db import connection
from django.utils import timezone

from inventory_app.models import BundleComponent, Location, Sku, StockLevel
from inventory_app.statements import fetch


@dataclass
class LockedRow:
    id: int
    sku_id: int
    location_id: int
    on_hand: int
    reserved: int
    allowance: int
    priority: int
    location_active: bool


def ensure_stock_rows(pairs: Iterable[tuple[Sku, Location]]) -> None:
    """Create missing stock rows; a concurrent creator is harmless (ignore_conflicts)."""
    rows = []
    for sku, location in pairs:
        allowance = sku.oversell_limit if sku.oversell_location_id == location.id else 0
        rows.append(StockLevel(sku=sku, location=location, allowance=allowance, updated_at=timezone.now()))
    if rows:
        StockLevel.objects.bulk_create(rows, ignore_conflicts=True)


def _placeholders(values: list) -> str:
    return ", ".join(["%s"] * len(values))


_LOCKED_COLUMNS = "sl.id, sl.sku_id, sl.location_id, sl.on_hand, sl.reserved, sl.allowance, l.priority, l.is_active"


def lock_by_codes_sql(codes: list[str]) -> tuple[str, list]:
    """The locked read of ``lock_stock_rows`` for the SKUs with these codes and the components of those that are
    bundles (what selling them draws on), by code: it needs nothing read before it, so it can go out in one round
    trip with the SKUs' description. Rows come as ``LockedRow`` fields, in id order."""
    marks = _placeholders(codes)
    sql = (f"SELECT {_LOCKED_COLUMNS} FROM {StockLevel._meta.db_table} sl "
           f"JOIN {Location._meta.db_table} l ON l.id = sl.location_id "
           f"WHERE sl.sku_id IN (SELECT id FROM {Sku._meta.db_table} WHERE code IN ({marks}) "
           f"UNION SELECT bc.component_id FROM {BundleComponent._meta.db_table} bc "
           f"JOIN {Sku._meta.db_table} b ON b.id = bc.bundle_id WHERE b.code IN ({marks})) ORDER BY sl.id")
    if connection.features.has_select_for_update_of:
        sql += " FOR UPDATE OF sl"
    return sql, [*codes, *codes]


def lock_rows_of_skus_sql(sku_ids: list[int]) -> tuple[str, list]:
    """The locked read of the stock rows that selling these SKUs draws on (their own, and the components' of those
    that are bundles), as ``LockedRow`` fields in id order; PostgreSQL (the SKUs go as one array)."""
    sql = (f"SELECT {_LOCKED_COLUMNS} FROM {StockLevel._meta.db_table} sl "
           f"JOIN {Location._meta.db_table} l ON l.id = sl.location_id "
           f"WHERE sl.sku_id IN (SELECT id FROM {Sku._meta.db_table} WHERE id = ANY(%s) "
           f"UNION SELECT component_id FROM {BundleComponent._meta.db_table} WHERE bundle_id = ANY(%s)) "
           f"ORDER BY sl.id FOR UPDATE OF sl")
    return sql, [sku_ids, sku_ids]


def lock_stock_rows(*, sku_ids: Iterable[int], location_ids: Iterable[int] | None = None) -> list[LockedRow]:
    """Lock the stock rows of these SKUs (optionally only at these locations), in id order."""
    skus = sorted(set(sku_ids))
    if not skus:
        return []
    sql = (
        f"SELECT {_LOCKED_COLUMNS} "
        f"FROM {StockLevel._meta.db_table} sl JOIN {Location._meta.db_table} l ON l.id = sl.location_id "
        f"WHERE sl.sku_id IN ({_placeholders(skus)})"
    )
    params: list = list(skus)
    if location_ids is not None:
        locations = sorted(set(location_ids))
        sql += f" AND sl.location_id IN ({_placeholders(locations)})"
        params += locations
    sql += " ORDER BY sl.id"
    if connection.features.has_select_for_update_of:
        sql += " FOR UPDATE OF sl"
    # SQLite has no row locks: its IMMEDIATE transactions serialise writers instead.
    return [LockedRow(*row) for row in fetch(sql, params)]
