"""Ring-fenced allocation: units of a SKU set aside for one channel, shown on that channel and on no other.

Why: a pooled channel shows what the hub has *now*; how stale its number gets depends on how fast the
channel takes our pushes. Amazon takes five a second, so in a flash sale it shows numbers seconds old
and sells units the fast channels sold in between, however early we push. A ring-fenced channel
(``Channel.allocation_target``) is shown only its own allocation (``ChannelAllocation.units``), which
only its own sales consume; other channels' sales never make its number wrong, so a slow channel
cannot oversell however far behind its pushes are. Every other channel is shown the pool: what is
available less every allocation (``channels_app.rules``).

How the numbers move, inside the stock operation's own transaction (a listener on every stock write,
after its stock rows are locked, so all writes to the allocations of a SKU are serialised by that
SKU's stock row locks, the lock every stock write takes first):

* a sale on a ring-fenced channel consumes its allocation (never below 0);
* then every ring-fenced channel listing the SKU whose allocation is used up is topped up to its target
  from the free pool (available less all allocations), in channel id order, so two channels never take
  the same unit.

Why only once used up: stock updates to Amazon, WooCommerce, BigCommerce and Standard channels set an
absolute number with no compare-and-set, so a number sent while the channel is still selling lands over
the sales it made in flight and shows them again. A channel showing 0 sells nothing while its new
number travels, so a refill sent then cannot undo a sale. The cost is the refill's round trip with the
channel showing 0. Setting or raising the target tops up at once (an operator's step, not the hot path).

Allocations grow only by top-up and shrink only by the channel's own sales, so what a ring-fenced
channel shows never depends on the pool. Plain SKUs only: a bundle listing on a ring-fenced channel is
shown the pool, and every channel's bundle number holds back its components' allocations.

Not built: taking units back. Lowering a target or clearing it returns the excess to the pool at once,
and until the channel has been sent its lower number both it and the pool channels show those units;
do it outside a sale, or pause the channel first.
"""

from __future__ import annotations

from collections import defaultdict
from collections.abc import Iterable

from django.db import connection, transaction
from django.db.models import F, Q
from django.db.models.functions import Coalesce
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


def _consume_sql() -> str:
    return (f"UPDATE {ALLOCATIONS} SET units = CASE WHEN units > %s THEN units - %s ELSE 0 END, updated_at = %s "
            f"WHERE sku_id = %s AND channel_id IN (SELECT id FROM {CHANNELS} WHERE slug = %s "
            f"AND allocation_target IS NOT NULL)")


def _top_up_sql(count: int, *, empty_only: bool) -> str:
    # free: the pool (available less every allocation); upto: what this channel and those before it want.
    # Each channel gets what it wants of what the channels before it left. One statement, so the stock
    # write that runs it pays no extra round trip.
    taken = (f"(SELECT COALESCE(SUM(b.units), 0) FROM {ALLOCATIONS} b JOIN {CHANNELS} bc ON bc.id = b.channel_id "
             f"WHERE b.sku_id = li.sku_id AND bc.allocation_target IS NOT NULL)")
    return (
        f"INSERT INTO {ALLOCATIONS} (channel_id, sku_id, units, updated_at) "
        f"SELECT channel_id, sku_id, units + CASE WHEN want < room THEN want ELSE room END, %s FROM ("
        f"SELECT channel_id, sku_id, units, want, "
        f"CASE WHEN free - (upto - want) > 0 THEN free - (upto - want) ELSE 0 END AS room FROM ("
        f"SELECT li.channel_id, li.sku_id, COALESCE(a.units, 0) AS units, "
        f"c.allocation_target - COALESCE(a.units, 0) AS want, "
        f"SUM(c.allocation_target - COALESCE(a.units, 0)) OVER (PARTITION BY li.sku_id ORDER BY li.channel_id) AS upto, "
        f"{available_sql('li.sku_id')} - {taken} AS free "
        f"FROM {LISTINGS} li JOIN {CHANNELS} c ON c.id = li.channel_id "
        f"LEFT JOIN {ALLOCATIONS} a ON a.channel_id = li.channel_id AND a.sku_id = li.sku_id "
        f"WHERE li.sku_id IN ({_in([0] * count)}) AND c.allocation_target IS NOT NULL AND c.enabled "
        f"AND COALESCE(a.units, 0) {'= 0' if empty_only else '< c.allocation_target'} "
        f"AND NOT EXISTS (SELECT 1 FROM {BUNDLES} bb WHERE bb.bundle_id = li.sku_id)"
        f") needs) grants WHERE room > 0 "
        f"ON CONFLICT (channel_id, sku_id) DO UPDATE SET units = excluded.units, updated_at = excluded.updated_at"
    )


def settle(sku_ids: set[int], context: dict) -> None:
    """Stock listener: consume the selling channel's allocation, then top every allocation up from the pool."""
    if not sku_ids or not context.get("available_changed", True):
        return
    writes: Statements = context["writes"]
    now = connection.ops.adapt_datetimefield_value(timezone.now())
    for sku_id, units in sorted((context.get("sold") or {}).items()):
        writes.add(_consume_sql(), [units, units, now, sku_id, context["source"]])
    ids = sorted(sku_ids)
    writes.add(_top_up_sql(len(ids), empty_only=True), [now, *ids])


def top_up(channel: Channel, sku_ids: Iterable[int] | None = None) -> int:
    """Fill a ring-fenced channel's allocations up to its target (after the target is set or raised, or a SKU
    is listed). Returns the number of SKUs whose listings were marked out of date."""
    listed = Listing.objects.filter(channel=channel)
    if sku_ids is not None:
        listed = listed.filter(sku_id__in=list(sku_ids))
    sku_ids = sorted(listed.values_list("sku_id", flat=True))
    if not sku_ids:
        return 0
    with transaction.atomic():
        # The lock every stock write takes first: no sale or top-up of these SKUs runs alongside.
        lock_stock_rows(sku_ids=sku_ids)
        writes = Statements()
        now = connection.ops.adapt_datetimefield_value(timezone.now())
        for start in range(0, len(sku_ids), 500):
            chunk = sku_ids[start:start + 500]
            writes.add(_top_up_sql(len(chunk), empty_only=False), [now, *chunk])
        writes.run()
        _republish(sku_ids)  # the pool shrank: every channel's number for these SKUs may have moved
    return len(sku_ids)


def clear(channel: Channel) -> None:
    """The channel no longer has a ring fence: its allocations go back to the pool."""
    with transaction.atomic():
        sku_ids = list(ChannelAllocation.objects.filter(channel=channel).values_list("sku_id", flat=True))
        ChannelAllocation.objects.filter(channel=channel).delete()
        _republish(sku_ids)


def _republish(sku_ids: list[int]) -> None:
    """Mark every listing of these SKUs out of date, on every channel, and wake their pushers after commit."""
    from channels_app.sync import wake_pushers

    channel_ids = set(Listing.objects.filter(sku_id__in=sku_ids).values_list("channel_id", flat=True))
    Listing.objects.filter(sku_id__in=sku_ids).update(
        desired_version=F("desired_version") + 1, dirty_since=Coalesce("dirty_since", timezone.now()),
        status="pending")
    transaction.on_commit(lambda: wake_pushers(channel_ids))


def target_changed(channel: Channel, previous: int | None) -> None:
    """Called by the API and the admin after a channel's ``allocation_target`` was saved."""
    if channel.allocation_target is None:
        clear(channel)
        return
    if previous is not None and channel.allocation_target < previous:
        # Lowered: the excess goes back to the pool (see the module note on taking units back).
        ChannelAllocation.objects.filter(channel=channel, units__gt=channel.allocation_target).update(
            units=channel.allocation_target, updated_at=timezone.now())
    top_up(channel)


def held_units(sku_ids: Iterable[int]) -> dict[int, dict[int, int]]:
    """SKU id -> {ring-fenced channel id: units set aside for it}, for these SKUs and their bundles' components."""
    sku_ids = list(set(sku_ids))
    result: dict[int, dict[int, int]] = defaultdict(dict)
    if not sku_ids:
        return result
    wanted = Q(sku_id__in=sku_ids) | Q(sku_id__in=BundleComponent.objects.filter(bundle_id__in=sku_ids).values("component_id"))
    for sku_id, channel_id, units in ChannelAllocation.objects.filter(
            wanted, units__gt=0, channel__allocation_target__isnull=False).values_list("sku_id", "channel_id", "units"):
        result[sku_id][channel_id] = units
    return result
