"""Ring-fenced allocation: units of a SKU set aside for one channel, shown on that channel and on no other.

Why: a pooled channel shows what the hub has *now*; how stale its number gets depends on how fast the
channel takes our pushes. Amazon takes five a second, so in a flash sale it shows numbers seconds old
and sells units the fast channels sold in between, however early we push. A ring-fenced channel
(``Channel.allocation_target``) is shown only its own allocation (``ChannelAllocation.units``), which
only its own sales consume, so a sale elsewhere does not change its number and its pushes may trail.
Every other channel is shown the pool: what is available less every allocation (``channels_app.rules``,
which reads both in one snapshot). What it does not protect against: a pool channel that sells on a
stale number of its own takes units the hub set aside (stock knows no fences); the fenced channel's
number is then capped at what is really left, and that push has to land in time like any other.

How the numbers move, inside the stock operation's own transaction (``settle``, a stock listener added
after ``sync.mark_listings_dirty``, whose statement earlier in the same batch locks every listing of the
SKU in id order; so two writes of one SKU, even at different locations, settle one after the other, and
each statement of the second sees what the first committed):

* a sale on a ring-fenced channel (``stock.sell``, a channel's order) consumes its allocation (never below 0);
* then every ring-fenced channel listing the SKU whose allocation is used up is topped up to its target
  from the free pool (available less all allocations), in channel id order, so two channels never take
  the same unit. A channel with a maximum (``max_quantity``) below its target is topped up to its maximum:
  it never shows more, and units set aside past it would be on sale nowhere.

Why only once used up: stock updates to Amazon, WooCommerce, BigCommerce and Standard channels set an
absolute number with no compare-and-set, so a number sent while the channel is still selling lands over
the sales it made in flight and shows them again. A channel showing 0 sells nothing while its new
number travels, so a refill sent then cannot undo a sale. The cost is the refill's round trip with the
channel showing 0. Setting or raising the target, or listing a SKU, tops up that channel at once (an
operator's step, taking the locks in the stock writes' order: stock rows, listings, allocations).

Plain SKUs only: a bundle listing on a ring-fenced channel is shown the pool, and every channel's bundle
number holds back its components' allocations. An allocation draws on every active location; a pooled
channel fed by some locations holds back all allocations of the SKU (it may show less, never more).
A disabled ring-fenced channel keeps its units set aside (its platform may still show them); clear the
target to give them back. A row whose listing was deleted holds nothing back, and a row holding more than its
channel's maximum (filled before the maximum was set or lowered) holds back only the maximum: the rest is the
pool's, and the row is consumed by the channel's sales as before. A SKU off sale has nothing free to set aside
(``available_sql`` is 0): its used-up fences are refilled when it is back on sale, a stock write like any other.

Not built: taking units back. Lowering a target or clearing it returns the excess to the pool at once,
and until the channel has been sent its lower number both it and the pool channels show those units;
do it outside a sale, or pause the channel first.
"""

from __future__ import annotations

import functools
from collections import defaultdict
from collections.abc import Iterable

from django.db import connection, transaction
from django.utils import timezone

from channels_app.models import Channel, ChannelAllocation, Listing
from inventory_app.availability import available_sql
from inventory_app.locking import lock_stock_rows
from inventory_app.models import BundleComponent
from inventory_app.statements import Statements

ALLOCATIONS = ChannelAllocation._meta.db_table
CHANNELS = Channel._meta.db_table
LISTINGS = Listing._meta.db_table
BUNDLES = BundleComponent._meta.db_table


def _in(values: list) -> str:
    return ", ".join(["%s"] * len(values))


@functools.cache
def _consume_sql() -> str:
    return (f"UPDATE {ALLOCATIONS} SET units = CASE WHEN units > %s THEN units - %s ELSE 0 END, updated_at = %s "
            f"WHERE sku_id = %s AND channel_id IN (SELECT id FROM {CHANNELS} WHERE slug = %s "
            f"AND allocation_target IS NOT NULL)")


def _fill_to(channel: str) -> str:
    """SQL: the units a ring-fenced channel's allocation is filled to, its target capped at its maximum. Units past
    the cap would be set aside for a channel that never shows them, and shown by no other."""
    return (f"CASE WHEN {channel}.max_quantity < {channel}.allocation_target THEN {channel}.max_quantity "
            f"ELSE {channel}.allocation_target END")


def _holding(allocation: str, channel: str) -> str:
    """SQL: the units an allocation holds back from the pool, no more than its channel's maximum: a row filled before
    the cap was set (or lowered) keeps its units, and its channel shows no more than the cap of them."""
    return (f"CASE WHEN {channel}.max_quantity < {allocation}.units THEN {channel}.max_quantity "
            f"ELSE {allocation}.units END")


@functools.lru_cache(maxsize=64)
def _top_up_sql(count: int, *, empty_only: bool, one_channel: bool = False) -> str:
    # free: the pool (available less every allocation); upto: what this channel and those before it want.
    # Each channel gets what it wants of what the channels before it left. One statement, so the stock
    # write that runs it pays no extra round trip; built once per shape, as it runs on every stock write.
    taken = (f"(SELECT COALESCE(SUM({_holding('b', 'bc')}), 0) FROM {ALLOCATIONS} b "
             f"JOIN {CHANNELS} bc ON bc.id = b.channel_id "
             f"JOIN {LISTINGS} bl ON bl.channel_id = b.channel_id AND bl.sku_id = b.sku_id "
             f"WHERE b.sku_id = li.sku_id AND bc.allocation_target IS NOT NULL)")
    return (
        f"INSERT INTO {ALLOCATIONS} (channel_id, sku_id, units, updated_at) "
        f"SELECT channel_id, sku_id, units + CASE WHEN want < room THEN want ELSE room END, %s FROM ("
        f"SELECT channel_id, sku_id, units, want, "
        f"CASE WHEN free - (upto - want) > 0 THEN free - (upto - want) ELSE 0 END AS room FROM ("
        f"SELECT li.channel_id, li.sku_id, COALESCE(a.units, 0) AS units, "
        f"{_fill_to('c')} - COALESCE(a.units, 0) AS want, "
        f"SUM({_fill_to('c')} - COALESCE(a.units, 0)) OVER (PARTITION BY li.sku_id ORDER BY li.channel_id) AS upto, "
        f"{available_sql('li.sku_id')} - {taken} AS free "
        f"FROM {LISTINGS} li JOIN {CHANNELS} c ON c.id = li.channel_id "
        f"LEFT JOIN {ALLOCATIONS} a ON a.channel_id = li.channel_id AND a.sku_id = li.sku_id "
        f"WHERE li.sku_id IN ({_in([0] * count)}) AND c.allocation_target IS NOT NULL AND c.enabled "
        f"AND COALESCE(a.units, 0) < {_fill_to('c')}{' AND COALESCE(a.units, 0) = 0' if empty_only else ''} "
        f"AND NOT EXISTS (SELECT 1 FROM {BUNDLES} bb WHERE bb.bundle_id = li.sku_id)"
        + (" AND c.id = %s" if one_channel else "") +
        ") needs) grants WHERE room > 0 "
        "ON CONFLICT (channel_id, sku_id) DO UPDATE SET units = excluded.units, updated_at = excluded.updated_at"
    )


def settle(sku_ids: set[int], context: dict) -> None:
    """Stock listener: consume the selling channel's allocation, then refill the used-up ones from the pool."""
    if not sku_ids or not context.get("available_changed", True):
        return
    writes: Statements = context["writes"]
    now = connection.ops.adapt_datetimefield_value(timezone.now())
    # Deferred where the listings' writes are (a drain's batch of orders, ``sync.listing_writes_at_end``): they then
    # run after the batch's listing lock, in the order every other stock write takes its locks (stock rows,
    # listings, allocations), and each refill reads the pool after the batch's sales. Run at once, the batch took
    # allocation rows before listings: a stock write taking them the other way round deadlocked with it.
    for sku_id, units in sorted((context.get("sold") or {}).items()):
        writes.defer(_consume_sql(), [units, units, now, sku_id, context["source"]])
    ids = sorted(sku_ids)
    writes.defer(_top_up_sql(len(ids), empty_only=True), [now, *ids])


def top_up(channel: Channel, sku_ids: Iterable[int] | None = None) -> int:
    """Fill this channel's allocations up to its target (its target was set or raised, or a SKU was listed).
    Returns the number of SKUs whose listings were marked out of date."""
    def fill(ids: list[int], writes: Statements, now) -> None:
        if sku_ids is not None:  # newly listed: a row left from an earlier listing of the SKU held nothing since
            writes.add(f"DELETE FROM {ALLOCATIONS} WHERE channel_id = %s AND sku_id IN ({_in(ids)})", [channel.pk, *ids])
        _fill(channel, ids, writes, now)

    return _operator_change(channel, fill, sku_ids)


def target_changed(channel: Channel, previous: int | None) -> None:
    """Called by the API and the admin after a channel's ``allocation_target`` was saved, before anything else
    in that transaction locks listings (the lock order below)."""
    target = channel.allocation_target

    def change(ids: list[int], writes: Statements, now) -> None:
        if target is None:  # no fence any more: its units go back to the pool
            writes.add(f"DELETE FROM {ALLOCATIONS} WHERE channel_id = %s", [channel.pk])
            return
        if previous is not None and target < previous:
            # Lowered: the excess goes back to the pool (see the module note on taking units back).
            writes.add(f"UPDATE {ALLOCATIONS} SET units = %s, updated_at = %s WHERE channel_id = %s AND units > %s",
                       [target, now, channel.pk, target])
        _fill(channel, ids, writes, now)

    _operator_change(channel, change, None)


def listings_removed(channel: Channel, sku_ids: Iterable[int]) -> None:
    """Before this channel's listings of these SKUs are deleted: their allocations go, and the units they held are
    the pool's again (every listing of the SKUs is marked out of date). Inside the caller's transaction."""
    def release(ids: list[int], writes: Statements, now) -> None:
        writes.add(f"DELETE FROM {ALLOCATIONS} WHERE channel_id = %s AND sku_id IN ({_in(ids)})", [channel.pk, *ids])

    _operator_change(channel, release, sku_ids)


def _fill(channel: Channel, sku_ids: list[int], writes: Statements, now) -> None:
    """Top this channel's allocations of these SKUs up to its target, whatever they hold now."""
    for start in range(0, len(sku_ids), 500):
        chunk = sku_ids[start:start + 500]
        writes.add(_top_up_sql(len(chunk), empty_only=False, one_channel=True), [now, *chunk, channel.pk])


def _operator_change(channel: Channel, change, sku_ids: Iterable[int] | None) -> int:
    """Run ``change`` on the channel's allocations for its listed SKUs (or these), in the order every stock
    write takes its locks: the SKUs' stock rows, then their listings (marked out of date, bundles' included:
    the pool moves), then the allocation rows. Another order would deadlock against a sale."""
    from channels_app.sync import mark_listings_dirty

    listed = Listing.objects.filter(channel=channel)
    if sku_ids is not None:
        listed = listed.filter(sku_id__in=list(sku_ids))
    ids = set(listed.values_list("sku_id", flat=True))
    if sku_ids is None:
        ids |= set(ChannelAllocation.objects.filter(channel=channel).values_list("sku_id", flat=True))
    ids = sorted(ids)
    if not ids:
        return 0
    with transaction.atomic():
        lock_stock_rows(sku_ids=ids)
        writes = Statements()
        mark_listings_dirty(set(ids), {"writes": writes, "occurred_at": timezone.now(), "available_changed": True})
        change(ids, writes, connection.ops.adapt_datetimefield_value(timezone.now()))
        writes.run()
    return len(ids)


def held_units(sku_ids: Iterable[int]) -> dict[int, dict[int, int]]:
    """SKU id -> {ring-fenced channel id: units set aside for it}, for these SKUs and their bundles' components."""
    sku_ids = sorted(set(sku_ids))
    result: dict[int, dict[int, int]] = defaultdict(dict)
    if not sku_ids:
        return result
    # Plain SQL, built once per number of SKUs: every push of every channel runs it, and building it through
    # the ORM (a Q, a subquery, an Exists) cost more than PostgreSQL spends answering it.
    with connection.cursor() as cursor:
        cursor.execute(_held_units_sql(len(sku_ids)), [*sku_ids, *sku_ids])
        for sku_id, channel_id, units in cursor.fetchall():
            result[sku_id][channel_id] = units
    return result


@functools.lru_cache(maxsize=64)
def _held_units_sql(n: int) -> str:
    ids = ", ".join(["%s"] * n)
    # A row whose listing was deleted holds nothing back (and is never topped up again).
    return (f"SELECT a.sku_id, a.channel_id, {_holding('a', 'c')} FROM {ALLOCATIONS} a "
            f"JOIN {CHANNELS} c ON c.id = a.channel_id AND c.allocation_target IS NOT NULL "
            f"WHERE a.units > 0 AND (a.sku_id IN ({ids}) OR a.sku_id IN "
            f"(SELECT component_id FROM {BUNDLES} WHERE bundle_id IN ({ids}))) "
            f"AND EXISTS (SELECT 1 FROM {LISTINGS} l WHERE l.channel_id = a.channel_id AND l.sku_id = a.sku_id)")
