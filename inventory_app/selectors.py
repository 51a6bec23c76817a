"""Reads of inventory data for the API and the admin (writes live in ``stock``)."""

from __future__ import annotations

from collections.abc import Iterable
from datetime import datetime

from django.core.exceptions import ValidationError
from django.db.models import Case, F, IntegerField, Q, QuerySet, Sum, When

from inventory_app.models import LedgerKind, Order, Reservation, Sku, StockLedgerEntry, StockLevel


def reservation_with_lines(reservation_id) -> Reservation | None:
    try:
        return Reservation.objects.prefetch_related("lines__sku", "lines__requested_sku", "lines__location").get(
            pk=reservation_id
        )
    except (Reservation.DoesNotExist, ValueError, TypeError, ValidationError):
        return None


def ledger_for(sku: Sku) -> QuerySet[StockLedgerEntry]:
    return StockLedgerEntry.objects.filter(sku=sku).select_related("sku", "location").order_by("-id")


def units_taken_since(sku_ids: Iterable[int], since: datetime) -> dict[tuple[int, int], int]:
    """(SKU id, location id) -> units taken from its availability there since ``since``: reserved (a cart, an order
    held) or sold outright (a channel's order). A reservation's later commit is not counted again; releases are not
    subtracted: this is the pace of demand, not of stock. Per location: a channel fed by some locations is held back
    only what sells from them."""
    ids = list(set(sku_ids))
    if not ids:
        return {}
    taken = Case(When(kind=LedgerKind.RESERVE, then=F("reserved_delta")), default=-F("on_hand_delta"),
                 output_field=IntegerField())
    rows = (StockLedgerEntry.objects.filter(sku_id__in=ids, recorded_at__gte=since)
            .filter(Q(kind=LedgerKind.RESERVE, reserved_delta__gt=0)
                    | Q(kind=LedgerKind.COMMIT, reserved_delta=0, on_hand_delta__lt=0))
            .order_by().values("sku_id", "location_id").annotate(units=Sum(taken)))
    return {(row["sku_id"], row["location_id"]): row["units"] for row in rows}


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
