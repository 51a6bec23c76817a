"""Canonical commands that inbound payloads become, whatever platform they came from."""

from __future__ import annotations

from dataclasses import dataclass, field
from datetime import datetime
from decimal import Decimal


@dataclass(frozen=True)
class ListingRef:
    """How a payload names a product; any one field that a listing carries is enough."""

    sku: str = ""
    product_id: str = ""
    variant_id: str = ""
    inventory_item_id: str = ""

    def describe(self) -> str:
        parts = [f"{k}={v}" for k, v in self.__dict__.items() if v]
        return ", ".join(parts) or "nothing"


@dataclass(frozen=True)
class OrderLineIn:
    external_id: str
    listing: ListingRef
    quantity: int
    unit_price: Decimal = Decimal("0")


@dataclass(frozen=True)
class OrderPlaced:
    external_id: str
    lines: list[OrderLineIn]
    name: str = ""
    currency: str = "USD"
    total: Decimal = Decimal("0")
    placed_at: datetime | None = None


@dataclass(frozen=True)
class OrderCancelled:
    external_id: str
    restock: bool = True


@dataclass(frozen=True)
class RefundLineIn:
    external_line_id: str
    quantity: int
    restock: bool
    external_location_id: str = ""


@dataclass(frozen=True)
class RefundCreated:
    external_order_id: str
    refund_id: str
    lines: list[RefundLineIn] = field(default_factory=list)


@dataclass(frozen=True)
class InventoryReported:
    listing: ListingRef
    available: int
    as_of: datetime
    external_location_id: str = ""


@dataclass(frozen=True)
class Ignored:
    reason: str


Command = OrderPlaced | OrderCancelled | RefundCreated | InventoryReported | Ignored
