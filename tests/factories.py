"""Small builders for test data; they go through the stock module like any caller."""

from __future__ import annotations

import uuid

from inventory_app import stock
from inventory_app.models import BundleComponent, Location, Sku


def unique(prefix: str) -> str:
    return f"{prefix}-{uuid.uuid4().hex[:8]}"


def make_location(code: str | None = None, priority: int = 100, **extra) -> Location:
    code = code or unique("loc")
    return Location.objects.create(code=code, name=code, priority=priority, **extra)


def make_sku(code: str | None = None, stock_at: dict[Location, int] | None = None, **extra) -> Sku:
    code = code or unique("SKU")
    sku = Sku.objects.create(code=code, name=code, **extra)
    for location, quantity in (stock_at or {}).items():
        if quantity:
            stock.receive(sku=sku, location=location, quantity=quantity, source="test")
    return sku


def make_bundle(components: dict[Sku, int], code: str | None = None) -> Sku:
    bundle = make_sku(code or unique("BUNDLE"))
    for component, quantity in components.items():
        BundleComponent.objects.create(bundle=bundle, component=component, quantity=quantity)
    return bundle
