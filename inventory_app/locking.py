"""The one lock order for stock rows.

Every operation that touches several stock rows locks them in primary-key order,
so two operations can never wait on each other in a cycle (no deadlocks).
"""

from __future__ import annotations

from collections.abc import Iterable

from django.utils import timezone

from inventory_app.models import Location, Sku, StockLevel


def ensure_stock_rows(pairs: Iterable[tuple[Sku, Location]]) -> None:
    """Create missing stock rows; a concurrent creator is harmless (ignore_conflicts)."""
    rows = []
    for sku, location in pairs:
        allowance = sku.oversell_limit if sku.oversell_location_id == location.id else 0
        rows.append(StockLevel(sku=sku, location=location, allowance=allowance, updated_at=timezone.now()))
    if rows:
        StockLevel.objects.bulk_create(rows, ignore_conflicts=True)


def lock_stock_rows(*, sku_ids: Iterable[int], location_ids: Iterable[int] | None = None) -> list[StockLevel]:
    """Lock the stock rows of these SKUs (optionally only at these locations), in id order."""
    qs = StockLevel.objects.select_for_update().filter(sku_id__in=set(sku_ids))
    if location_ids is not None:
        qs = qs.filter(location_id__in=set(location_ids))
    return list(qs.order_by("id"))
