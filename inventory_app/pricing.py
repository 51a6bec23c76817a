"""The one place that says what a SKU costs on a channel at a moment."""

from __future__ import annotations

from collections.abc import Iterable
from datetime import datetime

from django.db.models import Q

from inventory_app.models import Price


def effective_prices(sku_ids: Iterable[int], *, channel: str, at: datetime) -> dict[int, Price]:
    """Per SKU: the channel's own price valid at ``at``, else the default one; the latest start wins."""
    valid = Price.objects.filter(sku_id__in=set(sku_ids), valid_from__lte=at).filter(
        Q(valid_to__isnull=True) | Q(valid_to__gt=at)).filter(Q(channel="") | Q(channel=channel))
    default: dict[int, Price] = {}
    own: dict[int, Price] = {}
    for price in valid.order_by("valid_from", "id"):
        (own if price.channel else default)[price.sku_id] = price
    return {**default, **own}
