"""Level-triggered sync state: stock writes mark listings out of date; pushers are woken after commit.

``mark_listings_dirty`` runs inside every stock operation's transaction (registered with
``inventory_app.stock.on_stock_changed``): it bumps ``desired_version`` of every listing whose
number can move (the SKU's own and those of bundles containing it). The quantity itself is
computed by the pusher from committed stock when it claims the listing, so two concurrent writes
to a bundle's components can never leave a half-seen number behind.
"""

from __future__ import annotations

import contextlib
import logging
import os
from collections.abc import Iterator
from contextvars import ContextVar
from dataclasses import dataclass, field
from datetime import datetime
from functools import lru_cache

from django.db import connection, transaction
from django.db.models import F
from django.utils import timezone

from channels_app.models import Channel, Listing
from hub.redis import get_redis
from inventory_app.models import BundleComponent
from inventory_app.statements import Statements, deferred

log = logging.getLogger(__name__)
LISTINGS = Listing._meta.db_table
WAKE_TTL_SECONDS = 5
# Leading-edge throttle per channel: a change to a quiet channel is pushed at once; while changes keep
# coming, a channel is pushed at most once per interval, each push carrying everything changed since.
# Without it every order woke every channel: seven push tasks per order on eight channels, which at
# 25 orders/s spent the two cores on task overhead and raised the lag to seconds.
#
# The interval grows with how far behind its webhooks the inbox drain is: a quarter of that delay, within
# [PUSH_INTERVAL_MS, PUSH_INTERVAL_MAX_MS]. While orders are applied as they come, a change follows the one
# before it within the minimum; when the drain falls behind, pushing every few milliseconds numbers that are
# already seconds old only takes the CPU the drain needs to catch up, and each push carries more instead.
# 50 ms, not 25: on two busy cores a push round takes 30-60 ms, and pushes every 25 ms spent the CPU the
# drain and the rounds themselves needed. Back to back at 50 orders/s (bench/propagation.py), p50 lag
# 239-248 ms at 25 against 86-100 at 50 in a slow hour, 94-118 against 81-91 in a faster one; at 10 orders/s
# about the same (33-36 against 35-40 ms in the faster one). README, "late night".
PUSH_INTERVAL_MS = int(os.environ.get("TALLY_PUSH_INTERVAL_MS", "50"))
PUSH_INTERVAL_MAX_MS = max(int(os.environ.get("TALLY_PUSH_INTERVAL_MAX_MS", "1000")), PUSH_INTERVAL_MS)
BEHIND_SHARE = 0.25
# Most channels one push task takes (the sweeper wakes every dirty channel at once), and the step in which held
# back channels share a task.
ROUND_MAX_CHANNELS = 16
HELD_BACK_STEP_MS = 100
# Set by the inbox drain while it applies an event: milliseconds since the event fell due (received, or retried).
applying_behind_ms: ContextVar[float] = ContextVar("applying_behind_ms", default=0.0)
# Inside ``wakes_together``: the channels this transaction's stock writes woke, to be woken once on commit.
_woken_together: ContextVar[set[int] | None] = ContextVar("woken_together", default=None)


def push_interval_ms(behind_ms: float) -> int:
    return int(min(max(behind_ms * BEHIND_SHARE, PUSH_INTERVAL_MS), PUSH_INTERVAL_MAX_MS))


# KEYS: (wake flag, last push start) per channel. ARGV: interval ms, flag ttl ms beyond the interval. Returns
# per channel -1 when a push is already queued, else the milliseconds to hold the new push back. One round
# trip for all.
_WAKE = """
local t = redis.call('TIME')
local now = t[1] * 1000 + math.floor(t[2] / 1000)
local out = {}
for i = 1, #KEYS, 2 do
  if redis.call('SET', KEYS[i], 1, 'NX', 'PX', tonumber(ARGV[1]) + tonumber(ARGV[2])) then
    local wait = (tonumber(redis.call('GET', KEYS[i + 1])) or 0) + tonumber(ARGV[1]) - now
    out[#out + 1] = math.max(wait, 0)
  else
    out[#out + 1] = -1
  end
end
return out
"""

# KEYS: (wake flag, last push start) per channel. ARGV: ttl ms of the start mark. A push round's start, one
# round trip for all its channels.
_START = """
local t = redis.call('TIME')
local now = t[1] * 1000 + math.floor(t[2] / 1000)
for i = 1, #KEYS, 2 do
  redis.call('DEL', KEYS[i])
  redis.call('SET', KEYS[i + 1], now, 'PX', ARGV[1])
end
return 1
"""


@lru_cache(maxsize=4)
def _scripts(client) -> tuple:
    # Registered once per client: each wake runs on the commit of every stock write.
    return client.register_script(_WAKE), client.register_script(_START)


def mark_listings_dirty(sku_ids: set[int], context: dict) -> None:
    if not sku_ids or not context.get("available_changed", True):
        return
    at_end = _at_end.get()
    if at_end is not None:
        at_end.sku_ids.update(sku_ids)
        at_end.since = min(at_end.since or context["occurred_at"], context["occurred_at"])
        return
    # Sent with the stock operation's other writes (one round trip).
    context["writes"].add(*_mark_dirty_sql(sku_ids, context["occurred_at"]), on_rows=_wake)


def _mark_dirty_sql(sku_ids: set[int], since) -> tuple[str, list]:
    # Rows are locked in id order, the order of every multi-row write of listings, so this never deadlocks with
    # a pusher or a bulk update.
    # On PostgreSQL the SKUs go as one array: one statement text whatever their number, prepared once per
    # connection (a drain's batch marks a dozen or more; a list of placeholders made a new statement per count).
    ids = sorted(sku_ids)
    if connection.vendor == "postgresql":
        skus, params = "= ANY(%s)", [ids, ids]
    else:
        skus, params = f"IN ({', '.join(['%s'] * len(ids))})", [*ids, *ids]
    return (locked_listings(f"sku_id {skus} OR sku_id IN "
                            f"(SELECT bundle_id FROM {BundleComponent._meta.db_table} WHERE component_id {skus})")
            + f"UPDATE {LISTINGS} SET desired_version = desired_version + 1, dirty_since = COALESCE(dirty_since, %s), "
            f"status = CASE WHEN status = 'failed' THEN status ELSE 'pending' END "
            f"WHERE id IN (SELECT id FROM locked) RETURNING channel_id",
            [*params, connection.ops.adapt_datetimefield_value(since)])


def _wake(rows: list[tuple]) -> None:
    channel_ids = {row[0] for row in rows}
    together = _woken_together.get()
    if together is not None:
        together.update(channel_ids)
    elif channel_ids:
        transaction.on_commit(lambda: wake_pushers(channel_ids))


@dataclass
class ListingWritesAtEnd:
    """What a transaction's stock writes did to listings, kept for its end (``listing_writes_at_end``)."""

    sku_ids: set[int] = field(default_factory=set)  # whose listings (and bundles') are out of date
    since: datetime | None = None  # the earliest of those changes
    # held by ``Statements.defer``: a channel's note of its sale, the ring fences' consume and refill
    statements: list = field(default_factory=list)


_at_end: ContextVar[ListingWritesAtEnd | None] = ContextVar("listing_writes_at_end", default=None)


@contextlib.contextmanager
def listing_writes_at_end() -> Iterator[ListingWritesAtEnd]:
    """Inside, stock writes leave the listings alone: what they mark out of date, and the statements they defer
    (``Statements.defer``: the selling channel's note of its sale; the ring fences' consume and refill, which come
    after listings in every stock write's lock order), are kept for ``write_listings_at_end``, which the caller
    sends last, just before its commit: one statement locks every listing in id order and marks them, then the
    held statements run.

    Why: an inbox drain applying sixteen orders held every listing of their SKUs, on all channels, from its first
    event to its commit (tens of milliseconds; it locked them up front, in id order, so as not to deadlock with
    pushers recording what they sent). Every push round that recorded a push of a hot SKU waited for it, a push
    claim skipped those listings meanwhile, and the next batch's drain waited for those records in turn: at 200
    orders/s the pushers' records averaged 29 ms of waiting and the drains' up-front locks 77 ms
    (``pg_stat_statements``). Held from the end of the batch to its commit, they are held for a round trip.

    Only for work whose listing writes all go through these two ways (orders placed): a write of a listing made
    at once, in the middle (a cancel's or an inventory report's), would lock it out of id order."""
    with deferred() as statements:
        state = ListingWritesAtEnd(statements=statements)
        token = _at_end.set(state)
        try:
            yield state
        finally:
            _at_end.reset(token)


def write_listings_at_end(state: ListingWritesAtEnd, writes: Statements) -> None:
    """Add to ``writes`` what ``listing_writes_at_end`` kept: the out-of-date marks (their lock covers every listing
    the held statements write: see ``writes_listing_of``), then the held statements, in the order they were made."""
    if state.sku_ids:  # a batch of short lines alone marked no change: its notes' listings are marked as of now
        writes.add(*_mark_dirty_sql(state.sku_ids, state.since or timezone.now()), on_rows=_wake)
    for sql, params, on_rows in state.statements:
        writes.add(sql, params, on_rows)


def writes_listing_of(sku_id: int) -> None:
    """A deferred statement will write a listing of this SKU: inside ``listing_writes_at_end`` the end's lock must
    take it first, in id order, so the SKU's listings are marked too (a push that finds its number unchanged
    costs no more than that)."""
    at_end = _at_end.get()
    if at_end is not None:
        at_end.sku_ids.add(sku_id)


@contextlib.contextmanager
def wakes_together() -> Iterator[None]:
    """The pushers that the stock writes inside wake are woken once, on commit of the enclosing transaction,
    for all of them: a drain applying several events in one transaction makes one wake-up, not one per event.
    A write rolled back to a savepoint still wakes its channels; the push finds nothing to send."""
    channel_ids: set[int] = set()
    token = _woken_together.set(channel_ids)
    try:
        yield
    finally:
        _woken_together.reset(token)
    if channel_ids:
        transaction.on_commit(lambda: wake_pushers(channel_ids))


def locked_listings(where: str, *, after: str = "") -> str:
    """A CTE naming the listings ``where`` selects, row-locked in id order: every multi-row write of listings
    that waits for locks takes them in one order, so two of them never deadlock. ``after``: a CTE that
    ``where`` may name, put before it."""
    lock = " FOR UPDATE" if connection.features.has_select_for_update else ""
    first = f"{after}, " if after else ""
    return f"WITH {first}locked AS MATERIALIZED (SELECT id FROM {LISTINGS} WHERE {where} ORDER BY id{lock}) "


def lock_listings_in_order(listings) -> list[int]:
    """Lock these listings (a queryset) in id order, inside the caller's transaction; returns their ids. Before any
    write of many listings: an UPDATE locks rows in the order its plan reads them (a channel's listings by SKU
    through its index), and against a drain or a pusher taking them in id order the two could deadlock."""
    return list(listings.select_for_update().order_by("id").values_list("id", flat=True))


def update_listings_in_order(listings, **changes) -> int:
    """``listings.update(**changes)``, the rows locked first in id order (``lock_listings_in_order``)."""
    with transaction.atomic(savepoint=False):
        ids = lock_listings_in_order(listings)
        return Listing.objects.filter(pk__in=ids).update(**changes) if ids else 0


def wake_pushers(channel_ids, *, countdown: float | None = None, hold: bool = False) -> None:
    """Enqueue a push for each channel unless one is already queued (the flag coalesces bursts). The channels
    due now go in one task, pushed in one round (``outbound.push_channels``), those the interval holds back in
    another; with a ``countdown`` (a retry, a rate limit), all of them in one task after it.

    The pusher clears the flag before it claims, so a change committed after the clear sets the
    flag again and enqueues a new task, and a change committed before it is seen by the claim.
    ``hold`` (a channel out of rate-limit tokens): the delayed push keeps the flag until it runs.
    """
    redis = get_redis()
    channel_ids = list(channel_ids)
    if countdown is None:
        try:
            keys = [key for channel_id in channel_ids for key in (wake_key(channel_id), last_push_key(channel_id))]
            interval = push_interval_ms(applying_behind_ms.get())
            waits = _scripts(redis)[0](keys=keys, args=[interval, WAKE_TTL_SECONDS * 1000]) if keys else []
        except Exception:  # noqa: BLE001 - the sweeper finds dirty listings; a lost wake-up costs seconds
            log.warning("could not wake the pushers", extra={"channels": channel_ids})
            return
        # -1: a push is already queued and will claim this change too. The rest: one task for the channels due
        # now, one for those held back (per HELD_BACK_STEP_MS of wait). A message per channel was three quarters
        # of a drain's time spent waking pushers at 50 orders/s on eight channels.
        groups: dict[int, list[tuple[int, float]]] = {}
        for channel_id, wait in zip(channel_ids, waits, strict=True):
            if wait >= 0:  # held back ones in steps of HELD_BACK_STEP_MS, each at the latest wait in its step
                groups.setdefault(-(-int(wait) // HELD_BACK_STEP_MS), []).append((channel_id, wait / 1000))
        for _, group in sorted(groups.items()):  # those due now first
            ids = [channel_id for channel_id, _ in group]
            for start in range(0, len(ids), ROUND_MAX_CHANNELS):
                _enqueue(ids[start:start + ROUND_MAX_CHANNELS], max(wait for _, wait in group) or None)
        return
    due = channel_ids
    if hold:
        # A push held back for rate-limit tokens claims whatever is committed by the time it runs: it holds
        # the flag until then, so changes meanwhile coalesce into it instead of each waking a pusher that can
        # only find the tokens spent. If the flag is taken, a push is queued already (woken since this one
        # started) and one is enough: otherwise every wake during a throttle would start another chain of
        # retries. A lost message: the flag expires, the sweeper wakes.
        try:
            with redis.pipeline(transaction=False) as pipe:
                for channel_id in channel_ids:
                    pipe.set(wake_key(channel_id), 1, nx=True, px=int((countdown + WAKE_TTL_SECONDS) * 1000))
                taken = pipe.execute()
        except Exception:  # noqa: BLE001 - the sweeper finds dirty listings; a lost wake-up costs seconds
            log.warning("could not wake the pushers", extra={"channels": channel_ids})
            return
        due = [channel_id for channel_id, ok in zip(channel_ids, taken, strict=True) if ok]
    for start in range(0, len(due), ROUND_MAX_CHANNELS):
        _enqueue(due[start:start + ROUND_MAX_CHANNELS], countdown)


def _enqueue(channel_ids: list[int], countdown: float | None) -> None:
    from channels_app.tasks import push_channels

    try:
        push_channels.apply_async(args=[channel_ids], countdown=countdown)
    except Exception:  # noqa: BLE001 - the sweeper finds dirty listings; a lost wake-up costs seconds
        log.warning("could not wake the pushers", extra={"channels": channel_ids})


def wake_key(channel_id: int) -> str:
    return f"tally:push:wake:{channel_id}"


def last_push_key(channel_id: int) -> str:
    return f"tally:push:last:{channel_id}"


def start_push(channel_ids) -> None:
    """Pushers are about to claim for these channels: let changes from now on wake a new push, after the interval."""
    keys = [key for channel_id in channel_ids for key in (wake_key(channel_id), last_push_key(channel_id))]
    if keys:
        _scripts(get_redis())[1](keys=keys, args=[max(PUSH_INTERVAL_MAX_MS * 2, 1000)])


def mark_channel_dirty(channel: Channel) -> int:
    """Force a full resync: every listing of the channel is pushed again. What we believed the channel
    shows is forgotten (remote_quantity), so no listing is skipped as "the channel already has it":
    a resync is how an operator undoes edits made on the channel behind our back."""
    with transaction.atomic():
        count = update_listings_in_order(
            Listing.objects.filter(channel=channel), desired_version=F("desired_version") + 1, status="pending",
            attempts=0, next_attempt_at=None, last_error="", remote_quantity=None)
        transaction.on_commit(lambda: wake_pushers([channel.pk]))
    return count

