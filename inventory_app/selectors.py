"""Reads of inventory data for the API and the admin (writes live in ``stock``)."""

from __future__ import annotations

from django.core.exceptions import ValidationError
from django.db.models import QuerySet, Sum

from inventory_app.models import Order, Reservation, Sku, StockLedgerEntry, StockLevel


def reservation_with_lines(reservation_id) -> Reservation | None:
    try:
        return Reservation.objects.prefetch_related("lines__sku", "lines__requested_sku", "lines__location").get(
            pk=reservation_id
        )
    except (Reservation.DoesNotExist, ValueError, TypeError, ValidationError):
        return None


def ledger_for(sku: Sku) -> QuerySet[StockLedgerEntry]:
    return StockLedgerEntry.objects.filter(sku=sku).select_related("sku", "location").order_by("-id")


def orders() -> QuerySet[Order]:
    return Order.objects.prefetch_related("lines__sku").order_by("-placed_at", "-id")


def ledger_mismatches() -> list[dict]:
    """Stock rows whose on_hand/reserved differ from the sum of their ledger (should be none)."""
    sums = {
        (row["sku_id"], row["location_id"]): (row["on_hand"] or 0, row["reserved"] or 0)
        for row in StockLedgerEntry.objects.values("sku_id", "location_id").annotate(
            on_hand=Sum("on_hand_delta"), reserved=Sum("reserved_delta")
        )
    }
    problems = []
    for level in StockLevel.objects.all():
        expected = sums.get((level.sku_id, level.location_id), (0, 0))
        if (level.on_hand, level.reserved) != expected:
            problems.append({"sku_id": level.sku_id, "location_id": level.location_id,
                             "on_hand": level.on_hand, "reserved": level.reserved,
                             "ledger_on_hand": expected[0], "ledger_reserved": expected[1]})
    return problems
