"""Channels out: claim out-of-date listings, push their numbers, record what the channel acknowledged.

A push never depends on a message surviving: listings are out of date exactly while
desired_version > pushed_version. A pusher takes a short lease on a batch (SKIP LOCKED, so
pushers on any number of hosts split the work), computes each number from committed stock,
waits for the channel's shared rate-limit bucket, sends one batched request through the
adapter, and records the version it carried. A pusher that dies leaves its lease to expire
and the next one pushes the latest number (absolute values, so a repeat is harmless).
"""

from __future__ import annotations

import logging
import os
import random
import time
import uuid
from dataclasses import dataclass, field
from datetime import datetime, timedelta

from django.db import connection, transaction
from django.db.models import Case, CharField, F, Q, Value, When
from django.utils import timezone

from channels_app import metrics
from channels_app.adapters import adapter_for
from channels_app.adapters.base import ChannelAdapter, PushItem, PushResult
from channels_app.adapters.http import ChannelError, PermanentError, RateLimited
from channels_app.models import Channel, InboundEvent, InboundStatus, Listing, ListingStatus, PushLog
from channels_app.rules import desired_quantities
from channels_app.selectors import channel_for_push
from channels_app.sync import PUSH_INTERVAL_MS, locked_listings, start_push
from hub.observability import correlation_id as current_correlation_id
from inventory_app.availability import available_sql
from inventory_app.models import Sku
from inventory_app.statements import columns, instances

log = logging.getLogger(__name__)
LISTINGS = Listing._meta.db_table
_LISTING_SKU = Listing._meta.get_field("sku")

# Longer than one batch's requests with their in-call retries; a dead pusher's batch is retaken after it.
LEASE_SECONDS = int(os.environ.get("TALLY_PUSH_LEASE_SECONDS", "20"))
# With equal-jitter backoff capped at 30 s, 12 attempts span about three minutes: a platform outage
# of a minute or two heals by itself; longer ones park the listing for the operator.
MAX_ATTEMPTS = 12
MAX_BACKOFF_SECONDS = 30
# A pusher waits at most this long in-process for rate-limit tokens; longer waits become a countdown
# (changes arriving meanwhile coalesce into that push), so a throttled channel never holds a worker
# that other channels' pushes or inbound events need. Measured: 0.2 s here left a 2-process pool
# asleep a third of the time at 10 orders/s with Amazon's 5 requests/s.
MAX_INLINE_WAIT = float(os.environ.get("TALLY_PUSH_MAX_INLINE_WAIT", "0.02"))
# How long after a compare-and-set conflict the number it published is pushed again: time enough for
# the webhooks of the channel's own sales to arrive (platforms deliver in seconds), short enough that a
# sale counted twice (applied, yet read as unseen) does not hold a unit off the channel for long.
CONFLICT_RECHECK_SECONDS = float(os.environ.get("TALLY_CONFLICT_RECHECK_SECONDS", "30"))
# A channel that cannot keep up (Amazon takes 5 updates a second) is sent its scarcest SKUs first: a stale
# number oversells only where stock is nearly gone, and 30 stale units of a SKU with 500 left cost nothing.
# A listing out of date longer than this goes first regardless, so plentiful SKUs are never starved.
SCARCE_FIRST_MAX_AGE_SECONDS = float(os.environ.get("TALLY_SCARCE_FIRST_MAX_AGE_SECONDS", "5"))


@dataclass
class PushSummary:
    claimed: int = 0
    pushed: int = 0
    skipped_no_change: int = 0
    failed: int = 0
    retry_in: float | None = None
    errors: list[str] = field(default_factory=list)


def backoff(attempts: int) -> float:
    """Equal-jitter exponential backoff (AWS architecture blog): spread out, yet a predictable budget."""
    ceiling = min(MAX_BACKOFF_SECONDS, 0.5 * 2 ** attempts)
    return ceiling / 2 + random.uniform(0, ceiling / 2)


def dirty_listings(channel: Channel, now: datetime):
    # ``claim`` states the same rule in plain SQL; test_the_claim_takes_exactly_what_dirty_listings_names.
    return Listing.objects.filter(channel=channel, desired_version__gt=F("pushed_version")).exclude(
        status=ListingStatus.FAILED).filter(Q(next_attempt_at__isnull=True) | Q(next_attempt_at__lte=now)).filter(
        Q(lease_until__isnull=True) | Q(lease_until__lt=now))


# The claim's order among listings out of date for less than SCARCE_FIRST_MAX_AGE_SECONDS: the SKU's available
# units over all active locations (the channel's pool and rules come after the claim; for ranking this is enough).
_AVAILABLE = available_sql(f"{LISTINGS}.sku_id")


def claim(channel: Channel, *, limit: int, owner: uuid.UUID) -> list[tuple[Listing, int]]:
    """Lease up to ``limit`` out-of-date listings, scarcest SKUs first; returns each with the version it will carry.

    One statement (an UPDATE over a SKIP LOCKED pick, the job-queue pattern): pushers on any number of
    hosts split the work, and the hottest path of channels out costs one round trip, not five."""
    now = timezone.now()
    ops = connection.ops
    skip_locked = " FOR UPDATE SKIP LOCKED" if connection.features.has_select_for_update_skip_locked else ""
    with connection.cursor() as cursor:
        cursor.execute(
            # MATERIALIZED: picked once; as a plain IN (subquery) the planner may rescan it and lease past the limit.
            f"WITH picked AS MATERIALIZED (SELECT id FROM {LISTINGS} WHERE channel_id = %s "
            f"AND desired_version > pushed_version AND status <> %s "
            f"AND (next_attempt_at IS NULL OR next_attempt_at <= %s) AND (lease_until IS NULL OR lease_until < %s) "
            f"ORDER BY (dirty_since IS NOT NULL AND dirty_since > %s), {_AVAILABLE} ASC, dirty_since ASC NULLS FIRST, "
            f"id LIMIT %s{skip_locked}) "
            f"UPDATE {LISTINGS} SET lease_owner = %s, lease_until = %s WHERE id IN (SELECT id FROM picked) "
            f"RETURNING {columns(Listing)}",
            [channel.pk, ListingStatus.FAILED, ops.adapt_datetimefield_value(now), ops.adapt_datetimefield_value(now),
             ops.adapt_datetimefield_value(now - timedelta(seconds=SCARCE_FIRST_MAX_AGE_SECONDS)), limit,
             _uuid_param(owner), ops.adapt_datetimefield_value(now + timedelta(seconds=LEASE_SECONDS))])
        listings = instances(Listing, cursor.fetchall())
    if not listings:
        return []
    sku_ids = sorted({listing.sku_id for listing in listings})
    # Not prepared (one shape per count of SKUs would crowd the stock path's statements out of the connection's
    # prepared-statement cache).
    with connection.cursor() as cursor:
        cursor.execute(f"SELECT {columns(Sku)} FROM {Sku._meta.db_table} WHERE id IN "
                       f"({', '.join(['%s'] * len(sku_ids))})", sku_ids)
        skus = {sku.pk: sku for sku in instances(Sku, cursor.fetchall())}
    for listing in listings:
        _LISTING_SKU.set_cached_value(listing, skus[listing.sku_id])
    return [(listing, listing.desired_version) for listing in listings]


def _uuid_param(value: uuid.UUID):
    return Listing._meta.get_field("lease_owner").get_db_prep_value(value, connection)


def push_channel(channel_id: int, *, max_rounds: int = 100, correlation_id: str = "") -> PushSummary:
    summary = PushSummary()
    correlation_id = correlation_id or current_correlation_id.get()
    start_push(channel_id)
    channel = channel_for_push(channel_id)
    if channel is None or not channel.enabled or channel.paused:
        return summary
    adapter = adapter_for(channel)
    owner = uuid.uuid4()
    limit = min(adapter.max_batch * 4, channel.push_batch_size or 100)
    for _ in range(max_rounds):
        # One request's token first: a channel out of tokens costs a Redis call, not a claim and a release.
        wait = adapter.limiter.acquire(1, max_wait=MAX_INLINE_WAIT)
        if wait:
            metrics.RATE_LIMIT_WAITS.labels(channel=channel.slug).inc()
            summary.retry_in = wait
            break
        claimed = claim(channel, limit=limit, owner=owner)
        if not claimed:
            adapter.limiter.refund(1)
            break
        summary.claimed += len(claimed)
        _push_claimed(channel, adapter, claimed, owner, summary, correlation_id, prepaid=1)
        # A short claim took everything due; a change committed since then has woken a new push.
        if summary.retry_in is not None or len(claimed) < limit:
            break
    return summary


def _push_claimed(channel: Channel, adapter: ChannelAdapter, claimed: list[tuple[Listing, int]], owner: uuid.UUID,
                  summary: PushSummary, correlation_id: str, *, prepaid: int = 0) -> None:
    started = timezone.now()
    listings = [listing for listing, _ in claimed]
    versions = {listing.id: version for listing, version in claimed}
    desired = desired_quantities(channel, listings)
    to_send: list[PushItem] = []
    unchanged: list[tuple[Listing, int, int, int | None]] = []
    for listing in listings:
        quantity = desired[listing.id]
        known = listing.remote_quantity if listing.remote_quantity is not None else listing.pushed_quantity
        if listing.remote_quantity is not None and listing.remote_quantity == quantity and (
                listing.pushed_at is None or (listing.remote_seen_at and listing.remote_seen_at >= listing.pushed_at)):
            # The channel already shows this number (it made the sale itself): no echo.
            unchanged.append((listing, versions[listing.id], quantity, None))
            summary.skipped_no_change += 1
            continue
        to_send.append(PushItem(listing=listing, quantity=quantity, expected_remote=known))
    if unchanged:
        _record_ok(unchanged, owner, started, channel, correlation_id, sent=False)
    if not to_send:
        if prepaid:
            adapter.limiter.refund(prepaid)
        return
    previous_attempts = {item.listing.id: item.listing.attempted_quantity for item in to_send}
    for item in to_send:
        item.listing.attempted_quantity = item.quantity
    _set_attempted(to_send)
    for start in range(0, len(to_send), adapter.max_batch):
        batch = to_send[start:start + adapter.max_batch]
        needed = adapter.requests_needed(batch) - prepaid
        prepaid = max(-needed, 0)
        wait = adapter.limiter.acquire(needed, max_wait=MAX_INLINE_WAIT) if needed > 0 else 0.0
        if wait:
            metrics.RATE_LIMIT_WAITS.labels(channel=channel.slug).inc()
            _release([i.listing for i in to_send[start:]], owner, delay=wait, error="")
            summary.retry_in = wait
            return
        _send_batch(channel, adapter, batch, versions, owner, summary, correlation_id, started, previous_attempts)


def _set_attempted(items: list[PushItem]) -> None:
    # Plain SQL: bulk_update would add a transaction and build the CASE through the ORM on every push.
    cases = " ".join(["WHEN %s THEN %s"] * len(items))
    with connection.cursor() as cursor:
        cursor.execute(
            locked_listings(f"id IN ({', '.join(['%s'] * len(items))})")
            + f"UPDATE {LISTINGS} SET attempted_quantity = CASE id {cases} END WHERE id IN (SELECT id FROM locked)",
            [*[item.listing.id for item in items], *[v for item in items for v in (item.listing.id, item.quantity)]])


def _send_batch(channel: Channel, adapter: ChannelAdapter, batch: list[PushItem], versions: dict[int, int],
                owner: uuid.UUID, summary: PushSummary, correlation_id: str, started: datetime,
                previous_attempts: dict[int, int | None]) -> None:
    t0 = time.perf_counter()
    hedged: set[int] = set()
    try:
        results = adapter.push(batch)
        conflicts = [r for r in results if r.conflict or (not r.ok and r.retryable and r.error.startswith("batch refused"))]
        if conflicts:
            reconciled, hedged = _reconcile_conflicts(adapter, batch, conflicts, previous_attempts)
            results = [r for r in results if r not in conflicts] + reconciled
    except RateLimited as exc:
        adapter.limiter.block_for(exc.retry_after)
        metrics.RETRIES.labels(kind="push_429", channel=channel.slug).inc()
        results = adapter.results_all(batch, ok=False, error=str(exc), status=exc.status)
        summary.retry_in = exc.retry_after
        for item in batch:
            _record_failure(item.listing, owner, channel, str(exc), exc.status, delay=exc.retry_after, count=False)
        return
    except PermanentError as exc:
        results = adapter.results_all(batch, ok=False, error=str(exc), status=exc.status, retryable=False)
    except ChannelError as exc:
        results = adapter.results_all(batch, ok=False, error=str(exc), status=exc.status)
    except Exception as exc:  # noqa: BLE001 - an adapter bug must show on the listing, not kill the pusher
        log.exception("push failed", extra={"channel": channel.slug})
        results = adapter.results_all(batch, ok=False, error=f"{type(exc).__name__}: {exc}")
    finally:
        metrics.PUSH_SECONDS.labels(channel=channel.slug).observe(time.perf_counter() - t0)
    by_id = {item.listing.id: item for item in batch}
    acknowledged = [(by_id[r.listing_id].listing, versions[r.listing_id],
                     r.quantity if r.quantity is not None else by_id[r.listing_id].quantity, r.http_status)
                    for r in results if r.ok]
    channel_ok = bool(acknowledged)
    if acknowledged:
        _record_ok(acknowledged, owner, started, channel, correlation_id, hedged=hedged)
        summary.pushed += len(acknowledged)
    for result in results:
        item = by_id[result.listing_id]
        if not result.ok:
            summary.failed += 1
            summary.errors.append(result.error)
            _record_failure(item.listing, owner, channel, result.error, result.http_status,
                            permanent=not result.retryable)
    now = timezone.now()
    if channel_ok:
        _note_push(channel.pk, now)
    elif results:
        Channel.objects.filter(pk=channel.pk).update(last_push_error=results[0].error[:2000], last_push_error_at=now)
        _last_push_noted.pop(channel.pk, None)  # the next success is written, so it reads as after this error


# Seconds a process lets pass between two writes of a channel's last_push_at: it is shown as "seconds ago", and
# writing it on every push cost a statement per push and kept every pusher of the channel updating one row.
LAST_PUSH_RESOLUTION = 1.0
_last_push_noted: dict[int, float] = {}


def _note_push(channel_id: int, now: datetime) -> None:
    noted = _last_push_noted.get(channel_id)
    if noted is not None and time.monotonic() - noted < LAST_PUSH_RESOLUTION:
        return
    with connection.cursor() as cursor:
        cursor.execute(_NOTE_PUSH_SQL, [connection.ops.adapt_datetimefield_value(now), channel_id])
    _last_push_noted[channel_id] = time.monotonic()


_NOTE_PUSH_SQL = f"UPDATE {Channel._meta.db_table} SET last_push_at = %s WHERE id = %s"


def _reconcile_conflicts(adapter: ChannelAdapter, batch: list[PushItem], conflicts: list[PushResult],
                         previous_attempts: dict[int, int | None]) -> tuple[list[PushResult], set[int]]:
    """A compare-and-set was refused: the channel changed under us, most likely a sale we have not
    been told of yet. Publish our number less what the channel sold meanwhile, compared against what
    it holds now, so a stale higher number never lands over that sale. If the channel holds exactly
    what an earlier, unrecorded attempt of ours sent (its pusher died after the channel applied it),
    nothing was sold: publish our number as it is.

    "Sold meanwhile" is an estimate: a sale made while our last push was in flight may be applied here
    and still be read as unseen. Returns the results and the listings published below our number, which
    are pushed again after ``CONFLICT_RECHECK_SECONDS`` (``recheck_conflicted``)."""
    by_id = {item.listing.id: item for item in batch}
    retry = []
    hedged: set[int] = set()
    for result in conflicts:
        item = by_id[result.listing_id]
        actual = result.remote_quantity
        if actual is None:
            retry.append(PushItem(listing=item.listing, quantity=item.quantity, expected_remote=None))
            continue
        ours = actual == previous_attempts.get(item.listing.id)
        unseen = (item.expected_remote - actual) if item.expected_remote is not None and not ours else 0
        if unseen > 0 and item.quantity > 0:
            hedged.add(item.listing.id)
        retry.append(PushItem(listing=item.listing, quantity=max(item.quantity - max(unseen, 0), 0),
                              expected_remote=actual))
        metrics.RETRIES.labels(kind="push_conflict", channel=adapter.channel.slug).inc()
    results = adapter.push(retry)
    return [PushResult(listing_id=r.listing_id, ok=False, error=f"compare-and-set conflict twice: {r.error}",
                       http_status=r.http_status) if r.conflict else r for r in results], hedged


def recheck_conflicted(now: datetime | None = None) -> set[int]:
    """Mark out of date the listings whose conflict estimate has expired; returns their channels.

    By now the channel's sales in flight have been applied (lowering our number, which the push then
    finds already on the channel) or never will be, and our number goes out as it is. Not while that
    channel still has webhooks received before the conflict waiting to be applied (a backlog, or a cancel
    waiting for its order): one of them may be the sale, so the recheck waits for them. Not while a
    pusher holds the listing (its push may be measuring a fresh conflict)."""
    now = now or timezone.now()
    due = Listing.objects.filter(recheck_after__lte=now).filter(Q(lease_until__isnull=True) | Q(lease_until__lt=now))
    if not due.exists():  # a plain read first: on SQLite the locking update takes the database's write lock
        return set()
    marked: set[int] = set()
    with transaction.atomic():
        rows = list(due.select_for_update(skip_locked=True, of=("self",)).order_by()
                    .values_list("pk", "channel_id", "recheck_after")[:1000])
        conflicts_at: dict[int, datetime] = {}
        for _, channel_id, recheck_after in rows:
            at = recheck_after - timedelta(seconds=CONFLICT_RECHECK_SECONDS)
            conflicts_at[channel_id] = max(at, conflicts_at.get(channel_id, at))
        waiting = {channel_id for channel_id, at in conflicts_at.items() if InboundEvent.objects.filter(
            channel_id=channel_id, status__in=[InboundStatus.PENDING, InboundStatus.RETRYING],
            received_at__lte=at).exists()}
        later = [pk for pk, channel_id, _ in rows if channel_id in waiting]
        if later:
            Listing.objects.filter(pk__in=later).update(recheck_after=now + timedelta(seconds=5))
        ready = [(pk, channel_id) for pk, channel_id, _ in rows if channel_id not in waiting]
        if ready:
            Listing.objects.filter(pk__in=[pk for pk, _ in ready]).update(
                recheck_after=None, desired_version=F("desired_version") + 1,
                dirty_since=Case(When(dirty_since__isnull=True, then=Value(timezone.now())), default=F("dirty_since")),
                status=Case(When(status=ListingStatus.FAILED, then=Value(ListingStatus.FAILED)),
                            default=Value(ListingStatus.PENDING), output_field=CharField()))
            marked = {channel_id for _, channel_id in ready}
    return marked


def _record_ok(acknowledged: list[tuple[Listing, int, int, int | None]], owner: uuid.UUID, started: datetime,
               channel: Channel, correlation_id: str, *, sent: bool = True, hedged: set[int] = frozenset()) -> None:
    """Record what the channel now holds, for a whole batch in two statements: (listing, version carried,
    quantity acknowledged, HTTP status) each. A listing whose lease we lost is left to the pusher that took it.

    ``hedged``: listings published below our number after a compare-and-set conflict get their recheck time;
    on the others any pending recheck is dropped (what they show now needs none)."""
    now = timezone.now()
    ops = connection.ops
    by_pk = {listing.pk: (listing, version, quantity, status) for listing, version, quantity, status in acknowledged}
    cases = " ".join(["WHEN %s THEN %s"] * len(by_pk))
    version = f"CAST(CASE id {cases} END AS BIGINT)"
    versions = [v for pk, (_, carried, _, _) in by_pk.items() for v in (pk, carried)]
    quantity = f"CAST(CASE id {cases} END AS INTEGER)"
    quantities = [v for pk, (_, _, q, _) in by_pk.items() for v in (pk, q)]
    at = ops.adapt_datetimefield_value(now)
    low = [pk for pk in by_pk if pk in hedged]
    recheck = f"CASE WHEN id IN ({', '.join(['%s'] * len(low))}) THEN %s ELSE NULL END" if low else "NULL"
    recheck_params = [*low, ops.adapt_datetimefield_value(now + timedelta(seconds=CONFLICT_RECHECK_SECONDS))] \
        if low else []
    with transaction.atomic():
        # One UPDATE for the batch, in plain SQL (the ORM spent more time building it than PostgreSQL running it).
        # Only rows we still lease; changes committed after our claim keep a listing out of date, its lag
        # counted from the claim.
        with connection.cursor() as cursor:
            cursor.execute(
                locked_listings(f"id IN ({', '.join(['%s'] * len(by_pk))}) AND lease_owner = %s")
                + f"UPDATE {LISTINGS} SET pushed_version = {version}, pushed_quantity = {quantity}, "
                f"desired_quantity = {quantity}, remote_quantity = {quantity}, pushed_at = %s, remote_seen_at = %s, "
                f"attempts = 0, next_attempt_at = NULL, last_error = '', lease_owner = NULL, lease_until = NULL, "
                f"dirty_since = CASE WHEN desired_version > {version} THEN %s ELSE NULL END, "
                f"status = CASE WHEN desired_version > {version} THEN %s ELSE %s END, recheck_after = {recheck} "
                f"WHERE id IN (SELECT id FROM locked) RETURNING id",
                [*by_pk, _uuid_param(owner), *versions, *quantities, *quantities, *quantities, at, at, *versions,
                 ops.adapt_datetimefield_value(started), *versions, ListingStatus.PENDING, ListingStatus.OK,
                 *recheck_params])
            mine = {row[0] for row in cursor.fetchall()}
        rows = [by_pk[pk] for pk in by_pk if pk in mine]
        if not rows:
            return
        lags = {listing.pk: max(int((now - listing.dirty_since).total_seconds() * 1000), 0) if listing.dirty_since else None
                for listing, *_ in rows}
        if sent:
            # Plain SQL for the same reason as the UPDATE above.
            with connection.cursor() as cursor:
                cursor.execute(
                    f"INSERT INTO {PushLog._meta.db_table} (listing_id, channel_id, version, quantity, ok, http_status, "
                    f"error, lag_ms, correlation_id, created_at) VALUES "
                    + ", ".join(["(%s, %s, %s, %s, %s, %s, '', %s, %s, %s)"] * len(rows)),
                    [v for listing, carried, q, status in rows
                     for v in (listing.pk, channel.pk, carried, q, True, status, lags[listing.pk], correlation_id[:64],
                               at)])
    metrics.PUSHES.labels(channel=channel.slug, outcome="ok" if sent else "no_change").inc(len(rows))
    for lag_ms in lags.values():
        if lag_ms is not None:
            metrics.SYNC_LAG.labels(channel=channel.slug).observe(lag_ms / 1000)


def _record_failure(listing: Listing, owner: uuid.UUID, channel: Channel, error: str, status: int | None, *,
                    permanent: bool = False, delay: float | None = None, count: bool = True) -> None:
    attempts = listing.attempts + (1 if count else 0)
    give_up = permanent or attempts >= MAX_ATTEMPTS
    wait = delay if delay is not None else backoff(attempts)
    Listing.objects.filter(pk=listing.pk, lease_owner=owner).update(
        attempts=attempts, last_error=error[:2000], lease_owner=None, lease_until=None,
        status=ListingStatus.FAILED if give_up else ListingStatus.RETRYING,
        next_attempt_at=None if give_up else timezone.now() + timedelta(seconds=wait))
    PushLog.objects.create(listing=listing, channel=channel, version=listing.desired_version,
                           quantity=listing.desired_quantity or 0, ok=False, http_status=status, error=error[:2000])
    metrics.PUSHES.labels(channel=channel.slug, outcome="failed" if give_up else "retry").inc()
    if give_up:
        metrics.DEAD_LETTERS.labels(kind="listing", channel=channel.slug).inc()


def _release(listings: list[Listing], owner: uuid.UUID, *, delay: float, error: str) -> None:
    if not listings:
        return
    with connection.cursor() as cursor:
        cursor.execute(
            locked_listings(f"id IN ({', '.join(['%s'] * len(listings))}) AND lease_owner = %s")
            + f"UPDATE {LISTINGS} SET lease_owner = NULL, lease_until = NULL, next_attempt_at = %s "
            "WHERE id IN (SELECT id FROM locked)",
            [*[x.pk for x in listings], _uuid_param(owner),
             connection.ops.adapt_datetimefield_value(timezone.now() + timedelta(seconds=delay))])


def channels_needing_push(now: datetime | None = None) -> list[int]:
    now = now or timezone.now()
    return list(Channel.objects.filter(enabled=True, paused=False, listings__in=dirty_listings_all(now))
                .values_list("id", flat=True).distinct())


def dirty_listings_all(now: datetime):
    return Listing.objects.filter(desired_version__gt=F("pushed_version")).exclude(status=ListingStatus.FAILED).filter(
        Q(next_attempt_at__isnull=True) | Q(next_attempt_at__lte=now)).filter(
        Q(lease_until__isnull=True) | Q(lease_until__lt=now))


def next_retry_delay(channel_id: int) -> float | None:
    """Seconds until the channel's next out-of-date listing may become claimable: a retry falls due, or
    another pusher's lease ends (looked at again after the push interval: a live pusher is done by then,
    and changes committed during its push are still out of date; a dead one's lease runs out)."""
    waiting = Listing.objects.filter(channel_id=channel_id, desired_version__gt=F("pushed_version")).exclude(
        status=ListingStatus.FAILED)
    moments = [
        waiting.filter(next_attempt_at__isnull=False).order_by("next_attempt_at").values_list("next_attempt_at",
                                                                                             flat=True).first(),
        waiting.filter(lease_until__isnull=False).order_by("lease_until").values_list("lease_until", flat=True).first(),
    ]
    if moments[1] is not None:
        moments[1] = min(moments[1], timezone.now() + timedelta(milliseconds=PUSH_INTERVAL_MS))
    moments = [m for m in moments if m is not None]
    if not moments:
        return None
    return max((min(moments) - timezone.now()).total_seconds(), 0.0) + 0.05


def replay_listings(listing_ids: list[int]) -> int:
    """Operator's replay: failed listings go back into the push queue with a fresh retry budget."""
    with transaction.atomic():
        count = Listing.objects.filter(pk__in=listing_ids).update(
            status=ListingStatus.PENDING, attempts=0, next_attempt_at=None, last_error="",
            desired_version=F("desired_version") + 1)
        channel_ids = set(Listing.objects.filter(pk__in=listing_ids).values_list("channel_id", flat=True))
        from channels_app.sync import wake_pushers

        transaction.on_commit(lambda: wake_pushers(channel_ids))
    return count
