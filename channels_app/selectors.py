"""Reads of channel data."""

from __future__ import annotations

from inventory_app.models import Sku


def availability_by_channel(sku: Sku) -> list[dict]:
    """What each enabled channel would be sent for this SKU."""
    return []
