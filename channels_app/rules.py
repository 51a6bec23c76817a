"""What each channel is sent: the channel's rules applied to the one availability computation.

Order of the rules, each on the result of the one before:
pool (the locations that feed the channel: those its links say feed it if any does, else every active location
but those its links say do not) → backorder/preorder
allowance if the channel publishes it → minus the safety buffer → minus the sell-out guard → the channel's
percentage share, rounded down → halved in conservative mode → capped at the maximum → 0 if below the threshold.
Units set aside for ring-fenced channels come off the pool first; a ring-fenced channel is shown its own.

The sell-out guard (``sellout_guard_seconds``) holds back what the SKU sells, at its pace over the last
SALES_PACE_WINDOW_SECONDS (every channel's sales and reservations, from the locations that feed this channel), in
that many seconds: while a channel's number is on its way, the other channels keep selling, and a channel shown the
last units after they sold elsewhere sells them again. Held back only while the SKU sells; a push that held units
back has its listing looked at again after the window (``Listing.recheck_after``), when the pace may have fallen.
Plain SKUs only: a bundle's sales are its components'.
"""

from __future__ import annotations

import functools
import math
import os
import time
from collections.abc import Iterable
from datetime import timedelta
from decimal import Decimal

from django.utils import timezone

from channels_app.allocation import held_units
from channels_app.models import Channel, ChannelLocation, Listing
from inventory_app.availability import SkuAvailability, availability_for_skus
from inventory_app.models import Location
from inventory_app.selectors import units_taken_since
from inventory_app.statements import fetch, read_snapshot

_LINKS = ChannelLocation._meta.db_table
_LOCATIONS = Location._meta.db_table


# A channel's sales are drawn from the locations feeding it first (``selling_locations``), read for every order: kept
# per process this long. A link changed meanwhile only changes which location a sale is drawn from first.
SELLING_LOCATIONS_SECONDS = 5.0
_selling: dict[int, tuple[float, frozenset[int] | None]] = {}


def selling_locations(channel_id: int) -> frozenset[int] | None:
    """The locations a sale on this channel is drawn from first: those feeding it; None: the pool, no preference."""
    now = time.monotonic()
    cached = _selling.get(channel_id)
    if cached is None or now - cached[0] > SELLING_LOCATIONS_SECONDS:
        ids = feeding_location_ids(channel_id)
        cached = _selling[channel_id] = (now, None if ids is None else frozenset(ids))
    return cached[1]


def feeding_location_ids(channel_id: int) -> list[int] | None:
    """The locations whose stock this channel is offered; None: every active location (the pool)."""
    ids = _feeding_many([channel_id]).get(channel_id)
    return None if ids is None else list(ids)


@functools.lru_cache(maxsize=64)
def _feeding_sql(n: int) -> str:
    # Links that feed name exactly the locations that feed. With none feeding, a link marked not feeding still
    # takes its location out: every other active location feeds (a NULL location when none is left, so the channel
    # is shown none rather than the pool). A channel with no links at all has no row: the pool. One statement for
    # one channel and for a push round's many; plain SQL, as it runs on every push and building it through the
    # ORM cost more than answering it.
    ids = ", ".join(["%s"] * n)
    return (f"SELECT channel_id, location_id FROM {_LINKS} WHERE channel_id IN ({ids}) AND feeds_channel "
            f"UNION ALL "
            f"SELECT x.channel_id, l.id FROM (SELECT channel_id FROM {_LINKS} WHERE channel_id IN ({ids}) "
            f"GROUP BY channel_id HAVING MAX(CASE WHEN feeds_channel THEN 1 ELSE 0 END) = 0) x "
            f"LEFT JOIN {_LOCATIONS} l ON l.is_active AND NOT EXISTS "
            f"(SELECT 1 FROM {_LINKS} n WHERE n.channel_id = x.channel_id AND n.location_id = l.id)")


# The channel's fields the rules read: a change to one re-pushes every listing of the channel.
RULE_FIELDS = frozenset({"safety_buffer", "share_percent", "max_quantity", "zero_below", "include_backorders",
                         "conservative", "sellout_guard_seconds"})
# How far back a SKU's pace of sales is measured, for the sell-out guard. Short: a flash sale sells a hot SKU out in
# seconds, and a pace over 10 s counted its first seconds' sales over the whole window (a fifth of the pace, two
# seconds in). At 200 orders/s (bench/propagation.py, guard 2 s, Amazon 8 s, two alternated pairs) a 2 s window
# oversold 43 and 15 units against 86 and 63 unguarded; 10 s, 71 and 39 against 57 and 66.
SALES_PACE_WINDOW_SECONDS = float(os.environ.get("TALLY_SALES_PACE_WINDOW_SECONDS", "2"))


def sellout_guard(channel: Channel, taken: int) -> int:
    """Units held back from ``channel`` for a SKU from which ``taken`` units were taken in the pace window."""
    if not taken or not channel.sellout_guard_seconds or SALES_PACE_WINDOW_SECONDS <= 0:  # 0: no pace measured
        return 0
    return math.ceil(Decimal(taken) * Decimal(channel.sellout_guard_seconds) / Decimal(str(SALES_PACE_WINDOW_SECONDS)))


def apply_rules(channel: Channel, availability: SkuAvailability, guard: int = 0) -> int:
    """``guard``: the units the sell-out guard holds back (``sellout_guard``)."""
    quantity = availability.sellable if channel.include_backorders else availability.available
    quantity -= channel.safety_buffer
    quantity -= guard
    quantity = quantity * channel.share_percent // 100 if quantity > 0 else quantity
    if channel.conservative and quantity > 0:
        quantity //= 2
    if channel.max_quantity is not None:
        quantity = min(quantity, channel.max_quantity)
    if quantity < max(channel.zero_below, 1):
        quantity = 0
    return quantity


def desired_quantities(channel: Channel, listings: Iterable[Listing]) -> dict[int, int]:
    """Listing id -> the quantity this channel should show now.

    A ring-fenced channel (``allocation_target`` set) is shown the units set aside for it
    (``channels_app.allocation``), capped by its maximum; every other listing is shown the pool, the
    available units less every channel's allocation."""
    return desired_quantities_many([(channel, list(listings))])


def desired_quantities_many(work: Iterable[tuple[Channel, list[Listing]]], *,
                            guarded: set[int] | None = None) -> dict[int, int]:
    """``desired_quantities`` for several channels' listings, from one snapshot: the allocations, the feeding
    locations and the stock are read once for all of them, and channels fed by the same locations share one
    availability computation. A push round for the eight channels of one sale read them eight times.
    ``guarded``: filled with the listings whose number the sell-out guard lowered."""
    work = [(channel, listings) for channel, listings in work if listings]
    if not work:
        return {}
    skus = {listing.sku_id: listing.sku for _, listings in work for listing in listings}
    result: dict[int, int] = {}
    guarding = {listing.sku_id for channel, listings in work if channel.sellout_guard_seconds
                and channel.allocation_target is None for listing in listings}
    with read_snapshot():
        taken_at = units_taken_since(guarding, timezone.now() - timedelta(seconds=SALES_PACE_WINDOW_SECONDS))
        # One snapshot for the allocations and the stock: a fenced channel's sale and its refill commit together,
        # and read at two moments they would show the pool the refill's units as well.
        held = held_units(skus)
        held_back = {sku_id: sum(units.values()) for sku_id, units in held.items()}
        feeding = _feeding_many([channel.pk for channel, _ in work])
        pools: dict[tuple[int, ...] | None, tuple[dict[int, SkuAvailability], dict[int, int]]] = {}
        for channel, listings in work:
            key = feeding.get(channel.pk)
            if key not in pools:  # per set of feeding locations: its availability and its sales in the window
                pools[key] = (availability_for_skus(skus.values(), location_ids=key, held_back=held_back),
                              _taken_from(taken_at, key))
            result.update(_desired(channel, listings, skus, held, *pools[key], guarded))
    return result


def _taken_from(taken_at: dict[tuple[int, int], int], locations: tuple[int, ...] | None) -> dict[int, int]:
    """SKU id -> units taken from ``locations`` (None: every location) of what ``units_taken_since`` found."""
    taken: dict[int, int] = {}
    for (sku_id, location_id), units in taken_at.items():
        if locations is None or location_id in locations:
            taken[sku_id] = taken.get(sku_id, 0) + units
    return taken


def _feeding_many(channel_ids: list[int]) -> dict[int, tuple[int, ...]]:
    """Channel id -> the locations feeding it (maybe none), for the channels whose links name any, feeding or not
    (the rest take the pool)."""
    channel_ids = sorted(set(channel_ids))
    found: dict[int, list[int]] = {}
    for channel_id, location_id in fetch(_feeding_sql(len(channel_ids)), [*channel_ids, *channel_ids]):
        ids = found.setdefault(channel_id, [])
        if location_id is not None:
            ids.append(location_id)
    return {channel_id: tuple(sorted(ids)) for channel_id, ids in found.items()}


def _desired(channel: Channel, listings: list[Listing], skus: dict, held: dict[int, dict[int, int]],
             pool: dict[int, SkuAvailability], taken: dict[int, int], guarded: set[int] | None) -> dict[int, int]:
    guards = {listing.id: sellout_guard(channel, taken.get(listing.sku_id, 0)) for listing in listings}
    result = {listing.id: apply_rules(channel, pool[listing.sku_id], guards[listing.id]) for listing in listings}
    if guarded is not None and channel.allocation_target is None:
        guarded.update(listing_id for listing_id, guard in guards.items() if guard)
    if channel.allocation_target is not None:
        own = [listing for listing in listings if not pool[listing.sku_id].is_bundle]
        # Capped by what is there once the other channels' allocations are set aside: only a stock loss
        # (a count, a write-off) can make it smaller than the allocation.
        there = availability_for_skus([skus[x.sku_id] for x in own], held_back={
            sku_id: sum(n for channel_id, n in units.items() if channel_id != channel.pk) for sku_id, units in held.items()})
        for listing in own:
            quantity = min(held.get(listing.sku_id, {}).get(channel.pk, 0), there[listing.sku_id].available)
            result[listing.id] = quantity if channel.max_quantity is None else min(quantity, channel.max_quantity)
    return result
