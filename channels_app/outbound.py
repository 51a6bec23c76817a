"""Channels out: claim out-of-date listings, push their numbers, record what the channel acknowledged.

A push never depends on a message surviving: listings are out of date exactly while
desired_version > pushed_version. A pusher takes a short lease on a batch (SKIP LOCKED, so
pushers on any number of hosts split the work), computes each number from committed stock,
waits for the channel's shared rate-limit bucket, sends one batched request through the
adapter, and records the version it carried. A pusher that dies leaves its lease to expire
and the next one pushes the latest number (absolute values, so a repeat is harmless).
"""

from __future__ import annotations

import contextlib
import contextvars
import logging
import os
import random
import time
import uuid
from collections import Counter
from concurrent.futures import FIRST_COMPLETED, ThreadPoolExecutor
from concurrent.futures import wait as until_answered
from dataclasses import dataclass, field
from datetime import datetime, timedelta
from typing import NamedTuple

from django.db import connection, transaction
from django.db.models import Case, CharField, F, Min, Q, Value, When
from django.utils import timezone

from channels_app import metrics, rules
from channels_app.adapters import adapter_for, http
from channels_app.adapters.base import BATCH_REFUSED, ChannelAdapter, PushItem, PushResult
from channels_app.adapters.http import ChannelError, OutOfTokens, PermanentError, RateLimited, Unavailable
from channels_app.models import MAPPING_FIELDS, Channel, InboundEvent, InboundStatus, Listing, ListingStatus, PushLog
from channels_app.ratelimit import request_sized, wait_each
from channels_app.rules import desired_quantities_many
from channels_app.selectors import channels_for_push
from channels_app.sync import locked_listings, start_push, wake_pushers
from hub.observability import correlation_id as current_correlation_id
from inventory_app.availability import available_sql
from inventory_app.models import Sku
from inventory_app.statements import Statements, columns, commits_without_flush_wait, fetch, instances, rows_cte

log = logging.getLogger(__name__)
LISTINGS = Listing._meta.db_table
_LISTING_SKU = Listing._meta.get_field("sku")

# Longer than one batch's requests with their in-call retries; a dead pusher's batch is retaken after it.
LEASE_SECONDS = int(os.environ.get("TALLY_PUSH_LEASE_SECONDS", "20"))
# Of a lease, what its last request leaves for recording the outcome.
RECORD_SECONDS = 2.0
# With equal-jitter backoff capped at 30 s, 12 attempts span about three minutes: a platform outage
# of a minute or two heals by itself; longer ones park the listing for the operator.
MAX_ATTEMPTS = 12
MAX_LAG_MS = 2**31 - 1  # PushLog.lag_ms, an integer
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
# After a compare-and-set refused twice, how long before the listing is pushed again, doubled for each such attempt
# in a row (``_failure``): time for the webhooks of the sales racing us to be applied, at 200 orders/s.
CONFLICT_RETRY_SECONDS = float(os.environ.get("TALLY_CONFLICT_RETRY_SECONDS", "0.25"))
# A channel that cannot keep up (Amazon takes 5 updates a second) is sent its scarcest SKUs first: a stale
# number oversells only where stock is nearly gone, and 30 stale units of a SKU with 500 left cost nothing.
# A listing out of date longer than this goes first regardless, so plentiful SKUs are never starved.
SCARCE_FIRST_MAX_AGE_SECONDS = float(os.environ.get("TALLY_SCARCE_FIRST_MAX_AGE_SECONDS", "5"))
# Listings another pusher leases are looked at again after this, not after the lease: a live pusher is done by
# then (a round takes milliseconds), a dead one's lease runs out. Not the push interval, which is 50 ms now: a
# channel whose listings a slow push held would be woken every few tens of milliseconds for nothing.
LEASE_RECHECK_MS = 250
# Threads per worker process that send push rounds' requests, one channel each at a time.
SEND_THREADS = int(os.environ.get("TALLY_PUSH_SEND_THREADS", "16"))
# How long a round waits for its channels' answers to record them in one transaction.
RECORD_TOGETHER_SECONDS = 0.05


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


# One shape for any number of SKUs (an array), so it is prepared once per connection.
_CLAIMED_SKUS_SQL = f"SELECT {columns(Sku)} FROM {Sku._meta.db_table} WHERE id = ANY(%s)"


def claim(channel: Channel, *, limit: int, owner: uuid.UUID) -> list[tuple[Listing, int]]:
    """Lease up to ``limit`` out-of-date listings, scarcest SKUs first; returns each with the version it will carry."""
    return claim_many({channel.pk: limit}, owner=owner).get(channel.pk, [])


def claim_many(limits: dict[int, int], *, owner: uuid.UUID) -> dict[int, list[tuple[Listing, int]]]:
    """``claim`` for several channels at once: channel id -> up to that channel's limit of leased listings.

    One statement (an UPDATE over a SKIP LOCKED pick, the job-queue pattern): pushers on any number of
    hosts split the work, and the hottest path of channels out costs one round trip for every channel a
    sale moved, not one each. On PostgreSQL the pick is a LATERAL subquery per channel (each with its own
    limit and order); elsewhere (SQLite, the one-box demo) one statement per channel."""
    now = timezone.now()
    ops = connection.ops
    pick = (f"SELECT id FROM {LISTINGS} WHERE channel_id = {{channel}} "
            f"AND desired_version > pushed_version AND status <> %s "
            f"AND (next_attempt_at IS NULL OR next_attempt_at <= %s) AND (lease_until IS NULL OR lease_until < %s) "
            f"ORDER BY (dirty_since IS NOT NULL AND dirty_since > %s), {_AVAILABLE} ASC, dirty_since ASC NULLS FIRST, "
            f"id LIMIT {{limit}}")
    rule = [ListingStatus.FAILED, ops.adapt_datetimefield_value(now), ops.adapt_datetimefield_value(now),
            ops.adapt_datetimefield_value(now - timedelta(seconds=SCARCE_FIRST_MAX_AGE_SECONDS))]
    lease = [_uuid_param(owner), ops.adapt_datetimefield_value(now + timedelta(seconds=LEASE_SECONDS))]
    update = (f"UPDATE {LISTINGS} SET lease_owner = %s, lease_until = %s WHERE id IN (SELECT id FROM picked) "
              f"RETURNING {columns(Listing)}")
    rows: list = []
    if connection.features.has_select_for_update_skip_locked:
        # MATERIALIZED: picked once; as a plain IN (subquery) the planner may rescan it and lease past the limit.
        # Prepared (``fetch``): one shape whatever the channels, and planning it took longer than running it.
        rows = fetch(f"WITH picked AS MATERIALIZED (SELECT p.id FROM unnest(%s::bigint[], %s::int[]) AS c(channel_id, n) "
                     f"CROSS JOIN LATERAL ({pick.format(channel='c.channel_id', limit='c.n')} FOR UPDATE SKIP LOCKED) p) "
                     + update, [list(limits), list(limits.values()), *rule, *lease])
    else:
        with connection.cursor() as cursor:
            for channel_id, limit in limits.items():
                cursor.execute(f"WITH picked AS ({pick.format(channel='%s', limit='%s')}) " + update,
                               [channel_id, *rule, limit, *lease])
                rows += cursor.fetchall()
    if not rows:
        return {}
    listings = instances(Listing, rows)
    sku_ids = sorted({listing.sku_id for listing in listings})
    if connection.vendor == "postgresql":
        sku_rows = fetch(_CLAIMED_SKUS_SQL, [sku_ids])
    else:
        with connection.cursor() as cursor:
            cursor.execute(f"SELECT {columns(Sku)} FROM {Sku._meta.db_table} WHERE id IN "
                           f"({', '.join(['%s'] * len(sku_ids))})", sku_ids)
            sku_rows = cursor.fetchall()
    skus = {sku.pk: sku for sku in instances(Sku, sku_rows)}
    claimed: dict[int, list[tuple[Listing, int]]] = {}
    for listing in sorted(listings, key=lambda x: x.pk):
        _LISTING_SKU.set_cached_value(listing, skus[listing.sku_id])
        claimed.setdefault(listing.channel_id, []).append((listing, listing.desired_version))
    return claimed


def _uuid_param(value: uuid.UUID):
    return Listing._meta.get_field("lease_owner").get_db_prep_value(value, connection)


def push_channel(channel_id: int, *, max_rounds: int = 100, correlation_id: str = "") -> PushSummary:
    return push_channels([channel_id], max_rounds=max_rounds, correlation_id=correlation_id)[channel_id]


@dataclass
class _Pushing:
    channel: Channel
    adapter: ChannelAdapter
    limit: int
    summary: PushSummary


def push_channels(channel_ids: list[int], *, max_rounds: int = 100, correlation_id: str = "") -> dict[int, PushSummary]:
    """Push every out-of-date listing of these channels: the channels a change woke together go in one round.

    A sale moves one SKU on every channel at once. Pushed channel by channel, each paid its own claim, stock
    read, bookkeeping and task: on eight channels that was three quarters of a push's cost, paid eight times.
    A round claims for all of them in one statement, computes their numbers from one snapshot, sends to
    each channel from its own thread, and records what each acknowledged together. Each channel keeps its
    own rate limit, retries, conflicts and failures; a slow channel's answer is recorded when it comes,
    without holding up the others'."""
    channel_ids = list(dict.fromkeys(channel_ids))
    summaries = {channel_id: PushSummary() for channel_id in channel_ids}
    correlation_id = correlation_id or current_correlation_id.get()
    start_push(channel_ids)
    # A push's own writes (lease, attempt, record) are bookkeeping a lost commit only repeats: a lease lost is
    # taken again, a record lost leaves the listing out of date and it is pushed again (an absolute number),
    # an attempt lost makes a later compare-and-set conflict publish low until its recheck.
    with commits_without_flush_wait():
        _push_rounds(channel_ids, summaries, correlation_id, max_rounds)
    return summaries


def _push_rounds(channel_ids: list[int], summaries: dict[int, PushSummary], correlation_id: str,
                 max_rounds: int) -> None:
    pushing: dict[int, _Pushing] = {}
    for channel_id, channel in channels_for_push(channel_ids).items():
        if channel.enabled and not channel.paused:
            adapter = adapter_for(channel)
            pushing[channel_id] = _Pushing(channel, adapter, min(adapter.max_batch * 4, channel.push_batch_size or 100),
                                           summaries[channel_id])
    owner = uuid.uuid4()
    for _ in range(max_rounds):
        # A request's token there first: a channel out of tokens costs a Redis call, not a claim and a release.
        ready = _with_a_token(pushing)
        if not ready:
            break
        leased_at = time.monotonic()
        claimed = claim_many({channel_id: p.limit for channel_id, p in ready.items()}, owner=owner)
        for channel_id, listings in claimed.items():
            ready[channel_id].summary.claimed += len(listings)
        _push_round([(ready[channel_id], listings) for channel_id, listings in claimed.items()], owner,
                    correlation_id, leased_at=leased_at)
        # A short claim took everything due; a change committed since then has woken a new push.
        pushing = {channel_id: p for channel_id, p in ready.items()
                   if p.summary.retry_in is None and len(claimed.get(channel_id, ())) == p.limit}
        if not pushing:
            break
    else:
        # Out of rounds with full claims still coming (a resync of a large catalog): the rest is woken, not left to
        # the sweeper (review finding, 2026-12-08).
        if pushing:
            wake_pushers(list(pushing))


def _with_a_token(pushing: dict[int, _Pushing]) -> dict[int, _Pushing]:
    """The channels whose bucket holds a request's token, waiting in-process at most MAX_INLINE_WAIT once for all.
    Nothing is taken here: each request takes its tokens as it is sent (``_send``). Taken here, before the claim and
    the stock read, a token granted early was spent late: on a loaded machine requests granted at different times
    reached the platform together and crossed a leaky bucket the grants kept within (the sandbox refused one in
    several runs of the several-pushers test, 2026-12-07)."""
    ready, short = {}, {}
    waits = wait_each([p.adapter.limiter for p in pushing.values()])
    for (channel_id, p), wait in zip(pushing.items(), waits, strict=True):
        (ready if wait == 0 else short)[channel_id] = (p, wait)
    if short and min(wait for _, wait in short.values()) <= MAX_INLINE_WAIT:
        time.sleep(min(max(wait for _, wait in short.values()), MAX_INLINE_WAIT))
        waits = wait_each([p.adapter.limiter for p, _ in short.values()])
        for (channel_id, (p, _)), wait in zip(list(short.items()), waits, strict=True):
            if wait == 0:
                ready[channel_id] = short.pop(channel_id)
            else:
                short[channel_id] = (p, wait)
    for p, wait in short.values():
        metrics.RATE_LIMIT_WAITS.labels(channel=p.channel.slug).inc()
        p.summary.retry_in = wait
    return {channel_id: p for channel_id, (p, _) in ready.items()}


def _push_claimed(channel: Channel, adapter: ChannelAdapter, claimed: list[tuple[Listing, int]], owner: uuid.UUID,
                  summary: PushSummary, correlation_id: str) -> None:
    """Push listings already leased to ``owner`` (one channel; no token taken for them yet)."""
    pushing = _Pushing(channel, adapter, len(claimed), summary)
    _push_round([(pushing, claimed)], owner, correlation_id)


@dataclass
class _Batch:
    """One request's worth of a channel's listings and what became of it."""
    items: list[PushItem]
    results: list[PushResult] = field(default_factory=list)
    hedged: set[int] = field(default_factory=set)
    rate_limited: RateLimited | None = None
    # Not sent for want of rate-limit tokens (or of lease time): released, to be pushed after this many seconds.
    throttled_for: float | None = None
    # False: never reached the channel (throttled, or what was left when the send failed on our side).
    sent: bool = True


def _push_round(work: list[tuple[_Pushing, list[tuple[Listing, int]]]], owner: uuid.UUID, correlation_id: str, *,
                leased_at: float | None = None) -> None:
    started = timezone.now()
    # Sends stop at half the lease, counted from the claim: the rest must be recorded before the lease runs out.
    send_until = (leased_at or time.monotonic()) + LEASE_SECONDS / 2
    versions = {listing.id: version for _, claimed in work for listing, version in claimed}
    guarded: set[int] = set()
    desired = desired_quantities_many([(p.channel, [listing for listing, _ in claimed]) for p, claimed in work],
                                      guarded=guarded)
    unchanged: list[_Ack] = []
    sends: list[tuple[_Pushing, list[PushItem]]] = []
    for p, claimed in work:
        to_send = []
        for listing, version in claimed:
            quantity = desired[listing.id]
            known = listing.remote_quantity if listing.remote_quantity is not None else listing.pushed_quantity
            if listing.remote_quantity is not None and listing.remote_quantity == quantity and not listing.remote_unsure and (
                    listing.pushed_at is None or (listing.remote_seen_at and listing.remote_seen_at >= listing.pushed_at)):
                # The channel already shows this number (it made the sale itself): no echo.
                unchanged.append(_Ack(p.channel, listing, version, quantity, None, sent=False))
                p.summary.skipped_no_change += 1
                continue
            to_send.append(PushItem(listing=listing, quantity=quantity, expected_remote=known))
        if to_send:
            sends.append((p, to_send))
    if unchanged:
        _record_ok(unchanged, owner, started, correlation_id, guarded=guarded)
    if not sends:
        return
    previous_attempts = {item.listing.id: item.listing.attempted_quantity for _, items in sends for item in items}
    _set_attempted([item for _, items in sends for item in items], owner)
    if len(sends) == 1:
        p, items = sends[0]
        _record_sent([(p, _send(p, items, previous_attempts, send_until))], owner, started, versions,
                     correlation_id, previous_attempts, guarded)
        return
    # Each send in a copy of this context: its log lines carry the round's correlation id.
    futures = {_send_pool().submit(contextvars.copy_context().run, _send, p, items, previous_attempts,
                                   send_until): p for p, items in sends}
    # The channels that answer within RECORD_TOGETHER_SECONDS are recorded together (typically all of them, a
    # few milliseconds apart); a slow one is recorded on its own when it answers, holding up no one else's.
    done, pending = until_answered(futures, timeout=RECORD_TOGETHER_SECONDS)
    while done or pending:
        if done:
            _record_sent([(futures[f], f.result()) for f in done], owner, started, versions, correlation_id,
                         previous_attempts, guarded)
        done, pending = until_answered(pending, return_when=FIRST_COMPLETED) if pending else (set(), set())


_pool: tuple[int, ThreadPoolExecutor] | None = None


def _send_pool() -> ThreadPoolExecutor:
    """Threads that send a round's requests (one per channel at a time); made after a fork, never inherited."""
    global _pool
    if _pool is None or _pool[0] != os.getpid():
        _pool = (os.getpid(), ThreadPoolExecutor(max_workers=SEND_THREADS, thread_name_prefix="push-send"))
    return _pool[1]


def _send(p: _Pushing, to_send: list[PushItem], previous_attempts: dict[int, int | None],
          send_until: float) -> list[_Batch]:
    """Send one channel's listings, a request at a time, each after its rate-limit tokens. No database here:
    it runs in a send thread, and the round records the outcome. Never raises: whatever goes wrong becomes
    the failure of the listings not yet sent, recorded (and retried) with the rest of the round."""
    adapter, batches = p.adapter, []
    sent = 0
    try:
        # Every request ends before the lease does, with time left to record what the channel said: a send
        # that outlasted it let another pusher take the listing and send a newer number under this one.
        with http.deadline(send_until + LEASE_SECONDS / 2 - min(RECORD_SECONDS, LEASE_SECONDS / 4)):
            for items in _batches(adapter, to_send):
                if batches and time.monotonic() > send_until:
                    # Our lease must outlast the send and its record: what is left goes to the next push, at once.
                    batches.append(_Batch(to_send[sent:], throttled_for=0.0, sent=False))
                    break
                batch = _Batch(items)
                batches.append(batch)
                wait_for = adapter.limiter.acquire(adapter.requests_needed(batch.items), max_wait=MAX_INLINE_WAIT)
                if wait_for:
                    metrics.RATE_LIMIT_WAITS.labels(channel=p.channel.slug).inc()
                    batch.items = to_send[sent:]
                    batch.throttled_for = wait_for
                    batch.sent = False
                    break
                _call(p, batch, previous_attempts)
                sent += len(items)
    except Exception as exc:  # noqa: BLE001 - e.g. Redis gone while taking tokens: the listings show it, retried
        log.exception("push failed", extra={"channel": p.channel.slug})
        if batches and not batches[-1].results and batches[-1].throttled_for is None:
            batches.pop()  # the batch that was being sent when it happened
        rest = to_send[sent:]
        if rest:
            batches.append(_Batch(rest, results=adapter.results_all(rest, ok=False,
                                                                    error=f"{type(exc).__name__}: {exc}"),
                                  sent=False))
    return batches


def _batches(adapter: ChannelAdapter, items: list[PushItem]):
    """Request-sized slices, each within the adapter's batch and the bucket's capacity."""
    return request_sized(items, adapter.max_batch, adapter.requests_needed, adapter.limiter.capacity)


def _call(p: _Pushing, batch: _Batch, previous_attempts: dict[int, int | None]) -> None:
    channel, adapter = p.channel, p.adapter
    t0 = time.perf_counter()
    try:
        results = adapter.push(batch.items)
        conflicts = [r for r in results if r.conflict or _refused_with_its_batch(r)]
        if conflicts:
            reconciled, batch.hedged = _reconcile_conflicts(adapter, batch.items, conflicts, previous_attempts)
            results = [r for r in results if r not in conflicts] + reconciled
    except OutOfTokens as exc:  # our bucket's, for a conflict's re-read or retry: nothing to block, nothing refused
        metrics.RATE_LIMIT_WAITS.labels(channel=channel.slug).inc()
        batch.rate_limited = exc
        results = adapter.results_all(batch.items, ok=False, error=str(exc))
    except RateLimited as exc:
        try:
            adapter.limiter.block_for(exc.retry_after)
        except Exception:  # noqa: BLE001 - the listings still wait for Retry-After; the bucket learns on the next 429
            log.warning("could not block the channel's bucket", extra={"channel": channel.slug})
        metrics.RETRIES.labels(kind="push_429", channel=channel.slug).inc()
        batch.rate_limited = exc
        results = adapter.results_all(batch.items, ok=False, error=str(exc), status=exc.status)
    except PermanentError as exc:
        results = adapter.results_all(batch.items, ok=False, error=str(exc), status=exc.status, retryable=False)
    except ChannelError as exc:
        results = adapter.results_all(batch.items, ok=False, error=str(exc), status=exc.status)
    except Exception as exc:  # noqa: BLE001 - an adapter bug must show on the listing, not kill the pusher
        log.exception("push failed", extra={"channel": channel.slug})
        results = adapter.results_all(batch.items, ok=False, error=f"{type(exc).__name__}: {exc}")
    finally:
        metrics.PUSH_SECONDS.labels(channel=channel.slug).observe(time.perf_counter() - t0)
    batch.results = results


def _record_sent(outcomes: list[tuple[_Pushing, list[_Batch]]], owner: uuid.UUID, started: datetime,
                 versions: dict[int, int], correlation_id: str, previous_attempts: dict[int, int | None],
                 guarded: set[int] = frozenset()) -> None:
    # What never reached the channel must not stay "attempted": a later compare-and-set conflict would take the
    # channel's number for our unsent attempt, not for a sale, and publish over that sale.
    unsent = [item for _, batches in outcomes for batch in batches if not batch.sent for item in batch.items]
    if unsent:
        _set_attempted(unsent, owner, [previous_attempts.get(item.listing.id) for item in unsent])
    acks: list[_Ack] = []
    hedged: set[int] = set()
    failures: list[tuple[_Pushing, list[tuple[PushItem, PushResult]], bool]] = []
    not_taken: list[_Failure] = []
    errors: dict[int, list[str]] = {}
    for p, batches in outcomes:
        errors[p.channel.pk] = []
        for batch in batches:
            if batch.throttled_for is not None:
                _release([item.listing for item in batch.items], owner, delay=batch.throttled_for, error="")
                p.summary.retry_in = batch.throttled_for
                continue
            if batch.rate_limited is not None:
                exc = batch.rate_limited
                p.summary.retry_in = exc.retry_after
                # A 429 is our pace, not the listing's fault: not counted. A 5xx that said when to come back is the
                # platform failing: counted as any 5xx, so one that says "later" for ever parks in the end.
                not_taken.extend(_failure(item.listing, p.channel, str(exc), exc.status, delay=exc.retry_after,
                                          count=isinstance(exc, Unavailable)) for item in batch.items)
                continue
            by_id = {item.listing.id: item for item in batch.items}
            hedged |= batch.hedged
            failed = []
            for r in batch.results:
                item = by_id[r.listing_id]
                if r.ok:
                    acks.append(_Ack(p.channel, item.listing, versions[r.listing_id],
                                     r.quantity if r.quantity is not None else item.quantity, r.http_status))
                    p.summary.pushed += 1
                else:
                    p.summary.failed += 1
                    p.summary.errors.append(r.error)
                    errors[p.channel.pk].append(r.error)
                    failed.append((item, r))
            if failed:
                failures.append((p, failed, batch.sent))
    if acks:
        _record_ok(acks, owner, started, correlation_id, hedged=hedged, guarded=guarded)
    for p, failed, sent in failures:
        for item, result in failed:
            # Not sent (our side failed, e.g. Redis gone): retried without spending the listing's attempts, so an
            # outage of ours does not park listings the channel never refused. Refused only because another
            # listing of its request conflicted (a compare-and-set refuses the whole request): pushed again in
            # the next round, not after a backoff. That one backs off; this one is not at fault. With the
            # backoff, a Shopify channel selling fast kept a listing seconds behind for a sale of another SKU
            # (at 200 orders/s, a sixth of its pushed listings).
            innocent = _refused_with_its_batch(result)
            not_taken.append(_failure(item.listing, p.channel, result.error, result.http_status,
                                     permanent=not result.retryable, count=sent and not innocent,
                                     delay=0.0 if innocent else None, conflict=result.conflict))
    _record_failures(not_taken, owner, correlation_id)
    now = timezone.now()
    acked = {ack.channel.pk for ack in acks}
    for p, _ in outcomes:
        if p.channel.pk in acked:
            _note_push(p.channel.pk, now)
        elif errors[p.channel.pk]:
            Channel.objects.filter(pk=p.channel.pk).update(last_push_error=errors[p.channel.pk][0][:2000],
                                                           last_push_error_at=now)
            _last_push_noted.pop(p.channel.pk, None)  # the next success is written, so it reads as after this error


def _set_attempted(items: list[PushItem], owner: uuid.UUID, quantities: list[int | None] | None = None) -> None:
    """Note what we are about to send (``quantities``: what to note instead, None for nothing), on the listings we
    still lease: a pusher whose lease ran out wrote over the number the pusher that took over had noted, and a
    compare-and-set conflict then took a real sale for that pusher's own attempt."""
    quantities = [item.quantity for item in items] if quantities is None else quantities
    for item, quantity in zip(items, quantities, strict=True):
        item.listing.attempted_quantity = quantity
    noted, params = rows_cte("noted", (("id", "bigint"), ("quantity", "integer")),
                             [(item.listing.id, quantity) for item, quantity in zip(items, quantities, strict=True)])
    writes = Statements()
    writes.add(locked_listings("id IN (SELECT id FROM noted) AND lease_owner = %s", after=noted)
               + f"UPDATE {LISTINGS} SET attempted_quantity = noted.quantity FROM noted "
               f"WHERE {LISTINGS}.id = noted.id AND {LISTINGS}.id IN (SELECT id FROM locked)",
               [*params, _uuid_param(owner)])
    writes.run()


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
    adapter.take_tokens(adapter.requests_needed(retry), what="compare-and-set retry")
    results = adapter.push(retry)
    twice = {r.listing_id for r in results if r.conflict}
    bystanders = [r for r in results if _refused_with_its_batch(r)]
    if twice and bystanders:
        # Refused again, for a listing whose channel keeps selling while we reconcile: the others go out now on their
        # own, not a round later (where, at 200 orders/s, another conflict refused many of them again: seconds).
        results = _bystanders_on_their_own(adapter, retry, results, {b.listing_id for b in bystanders})
    return [PushResult(listing_id=r.listing_id, ok=False, error=f"compare-and-set conflict twice: {r.error}",
                       http_status=r.http_status, conflict=True) if r.listing_id in twice else r
            for r in results], hedged


def _bystanders_on_their_own(adapter: ChannelAdapter, retry: list[PushItem], results: list[PushResult],
                             bystanders: set[int]) -> list[PushResult]:
    """``results`` with those of ``bystanders`` sent again in a request of their own, if a token is there. Whatever
    goes wrong with it (no token, Redis, the channel's error, THROTTLED) leaves the retry's results as they were:
    the bystanders go in the next round, attempts unspent, and the retry's outcome is not lost to this request."""
    try:
        if adapter.limiter.try_acquire() != 0:
            return results
        again = {r.listing_id: r for r in adapter.push([item for item in retry if item.listing.id in bystanders])}
    except RateLimited as exc:
        # The channel's pushes wait for it as after any 429 or THROTTLED: the next round would meet it too.
        with contextlib.suppress(Exception):
            adapter.limiter.block_for(exc.retry_after)
        return results
    except Exception:  # noqa: BLE001 - see above; logged, as any failed push
        log.warning("the refused listings' own request failed", exc_info=True, extra={"channel": adapter.channel.slug})
        return results
    return [again.get(r.listing_id, r) for r in results]


def recheck_conflicted(now: datetime | None = None) -> set[int]:
    """Mark out of date the listings whose conflict estimate (or sell-out guard) has expired; returns their channels.

    A guarded listing's number was lowered by the SKU's pace of sales: pushed again, it is shown what the pace is
    now (all of it once the SKU stopped selling).

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
                    .values_list("pk", "channel_id", "recheck_after", "pushed_at")[:1000])
        conflicts_at: dict[int, datetime] = {}
        for _, channel_id, recheck_after, pushed_at in rows:
            # Never after the push that set the recheck: a guarded listing's (set for the pace window, not for a
            # conflict) or one put off below would otherwise wait for webhooks received after it, for ever on a
            # channel that always has some waiting.
            at = recheck_after - timedelta(seconds=CONFLICT_RECHECK_SECONDS)
            at = min(at, pushed_at) if pushed_at else at
            conflicts_at[channel_id] = max(at, conflicts_at.get(channel_id, at))
        waiting = {channel_id for channel_id, at in conflicts_at.items() if InboundEvent.objects.filter(
            channel_id=channel_id, status__in=[InboundStatus.PENDING, InboundStatus.RETRYING],
            received_at__lte=at).exists()}
        later = [pk for pk, channel_id, _, _ in rows if channel_id in waiting]
        if later:
            Listing.objects.filter(pk__in=later).update(recheck_after=now + timedelta(seconds=5))
        ready = [(pk, channel_id) for pk, channel_id, _, _ in rows if channel_id not in waiting]
        if ready:
            Listing.objects.filter(pk__in=[pk for pk, _ in ready]).update(
                recheck_after=None, desired_version=F("desired_version") + 1,
                dirty_since=Case(When(dirty_since__isnull=True, then=Value(timezone.now())), default=F("dirty_since")),
                status=Case(When(status=ListingStatus.FAILED, then=Value(ListingStatus.FAILED)),
                            default=Value(ListingStatus.PENDING), output_field=CharField()))
            marked = {channel_id for _, channel_id in ready}
    return marked


class _Ack(NamedTuple):
    """A listing the channel acknowledged (or already showed: ``sent`` False), with the version it carried."""
    channel: Channel
    listing: Listing
    version: int
    quantity: int
    http_status: int | None
    sent: bool = True


def _record_ok(acks: list[_Ack], owner: uuid.UUID, started: datetime, correlation_id: str, *,
               hedged: set[int] = frozenset(), guarded: set[int] = frozenset()) -> None:
    """Record what the channels now hold, for a whole round in two statements. A listing whose lease we lost
    is left to the pusher that took it.

    Listings published below our number get a recheck time: ``hedged`` after a compare-and-set conflict,
    ``guarded`` by the sell-out guard (looked at again once the pace window has passed: the SKU may have stopped
    selling). On the others any pending recheck is dropped (what they show now needs none)."""
    now = timezone.now()
    ops = connection.ops
    by_pk = {ack.listing.pk: ack for ack in acks}
    at, since = ops.adapt_datetimefield_value(now), ops.adapt_datetimefield_value(started)
    recheck = {pk: ops.adapt_datetimefield_value(now + timedelta(seconds=CONFLICT_RECHECK_SECONDS)) if pk in hedged
               else ops.adapt_datetimefield_value(now + timedelta(seconds=rules.SALES_PACE_WINDOW_SECONDS)) if pk in guarded
               else None for pk in by_pk}
    acked, acked_params = rows_cte(
        "acked", (("id", "bigint"), ("version", "bigint"), ("quantity", "integer"), ("recheck_after", "timestamptz"),
                  *((f"claimed_{name}", "text") for name in MAPPING_FIELDS)),
        [(pk, ack.version, ack.quantity, recheck[pk], *(getattr(ack.listing, name) for name in MAPPING_FIELDS))
         for pk, ack in by_pk.items()])
    # Remapped while this push was out (``services.remap_listing``): what was acknowledged is the old item's number,
    # not the new one's, which has never been sent ours. Written as what the channel shows, it was taken for the
    # new item's: the next push skipped it, or sent it as the compare-and-set's expected number (review finding).
    remapped = "NOT (" + " AND ".join(f"{LISTINGS}.{name} = acked.claimed_{name}" for name in MAPPING_FIELDS) + ")"
    with transaction.atomic():
        # One UPDATE for the round, in plain SQL (the ORM spent more time building it than PostgreSQL running it),
        # prepared (``rows_cte``). Only rows we still lease; changes committed after our claim keep a listing out
        # of date, its lag counted from the claim.
        mine = {(row[0], row[1]) for row in fetch(
            locked_listings("id IN (SELECT id FROM acked) AND lease_owner = %s", after=acked)
            + f"UPDATE {LISTINGS} SET pushed_version = acked.version, "
            f"pushed_quantity = CASE WHEN {remapped} THEN NULL ELSE acked.quantity END, "
            f"desired_quantity = acked.quantity, pushed_at = %s, "
            # The channel noted a sale of its own after this round began (the drain applied its webhook while our
            # request was out): whether it sold before our number landed or after, we cannot tell, so what it
            # shows is forgotten and the next push is sent, not skipped as "it has it already". Kept, our 79
            # over its later sale read as 79 while it showed 78, for good (chaos run, amazon-1).
            f"remote_quantity = CASE WHEN remote_seen_at > %s OR {remapped} THEN NULL ELSE acked.quantity END, "
            f"remote_seen_at = CASE WHEN remote_seen_at > %s THEN remote_seen_at ELSE %s END, remote_unsure = FALSE, "
            f"attempts = 0, next_attempt_at = NULL, last_error = '', lease_owner = NULL, lease_until = NULL, "
            f"dirty_since = CASE WHEN desired_version > acked.version THEN %s ELSE NULL END, "
            f"status = CASE WHEN desired_version > acked.version THEN %s ELSE %s END, "
            f"recheck_after = acked.recheck_after "
            f"FROM acked WHERE {LISTINGS}.id = acked.id AND {LISTINGS}.id IN (SELECT id FROM locked) "
            f"RETURNING {LISTINGS}.id, {LISTINGS}.desired_version > acked.version",
            [*acked_params, _uuid_param(owner), at, since, since, at, since, ListingStatus.PENDING, ListingStatus.OK])}
        # Changed while we held them: the change's own wake-up found them leased and went by (a push claims what
        # is free), so nobody would push the newer number until the sweeper came by (review finding, 2026-12-08).
        behind = {by_pk[pk].channel.pk for pk, newer in mine if newer}
        if behind:
            transaction.on_commit(lambda: wake_pushers(behind))
        mine = {pk for pk, _ in mine}
        # In id order: the log's foreign keys share-lock each listing, and every write of many listings locks them
        # in id order (``sync.locked_listings``); out of it, a stock write and this insert could deadlock.
        rows = [by_pk[pk] for pk in sorted(by_pk) if pk in mine]
        if not rows:
            return
        # Within the column's range: a change dated weeks back (a count as of last month, a replay of a listing
        # parked that long) made a lag past 2^31 ms, the insert failed, and the round's record with it, for ever.
        lags = {ack.listing.pk: min(max(int((now - ack.listing.dirty_since).total_seconds() * 1000), 0), MAX_LAG_MS)
                if ack.listing.dirty_since else None for ack in rows}
        sent = [ack for ack in rows if ack.sent]
        if sent:
            pushed, pushed_params = rows_cte(
                "pushed", (("listing_id", "bigint"), ("channel_id", "bigint"), ("version", "bigint"),
                           ("quantity", "integer"), ("http_status", "smallint"), ("lag_ms", "integer")),
                [(ack.listing.pk, ack.channel.pk, ack.version, ack.quantity, ack.http_status, lags[ack.listing.pk])
                 for ack in sent])
            writes = Statements()
            writes.add(f"WITH {pushed} INSERT INTO {PushLog._meta.db_table} (listing_id, channel_id, version, "
                       f"quantity, ok, http_status, error, lag_ms, correlation_id, created_at) "
                       f"SELECT listing_id, channel_id, version, quantity, TRUE, http_status, '', lag_ms, %s, %s "
                       f"FROM pushed", [*pushed_params, correlation_id[:64], at])
            writes.run()
    counts = Counter((ack.channel.slug, "ok" if ack.sent else "no_change") for ack in rows)
    for (slug, outcome), n in counts.items():
        metrics.PUSHES.labels(channel=slug, outcome=outcome).inc(n)
    for ack in rows:
        if lags[ack.listing.pk] is not None:
            metrics.SYNC_LAG.labels(channel=ack.channel.slug).observe(lags[ack.listing.pk] / 1000)


def _refused_with_its_batch(result: PushResult) -> bool:
    """The channel refused this listing only because another in the same request failed its compare-and-set."""
    return not result.ok and not result.conflict and result.retryable and result.error.startswith(BATCH_REFUSED)


class _Failure(NamedTuple):
    channel: Channel
    listing: Listing
    error: str
    status: int | None
    attempts: int
    give_up: bool
    wait: float
    permanent: bool = False


def _failure(listing: Listing, channel: Channel, error: str, status: int | None, *, permanent: bool = False,
             delay: float | None = None, count: bool = True, conflict: bool = False) -> _Failure:
    """What becomes of a listing the channel did not take: attempts spent, parked or when to try again.

    ``conflict``: refused twice by a compare-and-set, the channel selling the SKU while we reconciled: a race with
    its sales, not a fault of the channel: pushed again after CONFLICT_RETRY_SECONDS, doubling with each attempt in
    a row, where the backoff starts at half a second to a second (it held hot SKUs of a Shopify channel selling 25
    orders a second seconds behind). Counted all the same: a listing whose number someone else keeps moving
    (another app) parks after MAX_ATTEMPTS in a row, a couple of minutes, as with any failure."""
    attempts = listing.attempts + (1 if count else 0)
    if delay is not None:
        wait = delay
    elif conflict:
        wait = min(CONFLICT_RETRY_SECONDS * 2 ** max(attempts - 1, 0), MAX_BACKOFF_SECONDS)
    else:
        wait = backoff(attempts)
    return _Failure(channel, listing, error[:2000], status, attempts, permanent or attempts >= MAX_ATTEMPTS, wait,
                    permanent)


def _record_failures(failures: list[_Failure], owner: uuid.UUID, correlation_id: str) -> None:
    """Record a round's failures in two statements, as ``_record_ok`` its successes: each failure was two ORM
    statements of its own, and a Shopify channel selling fast fails a few dozen listings a second (requests refused
    by a conflict, THROTTLED), on the two cores the inbox drain needs at 200 orders/s. The listing is updated only
    while we still lease it; the attempt is logged either way, in a transaction of its own: its foreign keys take
    a share lock on each listing, out of id order, and with the update's locks still held a listing whose lease we
    lost could deadlock with a stock write marking it.

    A listing replayed while this push held it (its attempts no longer those claimed) keeps the fresh budget the
    operator gave it: this attempt began before the replay, and counted against the claimed attempts it parked the
    listing again seconds after the replay. It is tried again after the first backoff; a permanent refusal still
    parks it, as the same request would be refused again; unless the listing was remapped meanwhile
    (``services.remap_listing``, which gives a fresh budget too): the refusal was of the item it named before."""
    if not failures:
        return
    # In id order, as every write of many listings: the log's foreign keys share-lock each listing, and out of order
    # the insert deadlocked with a stock write locking them in order (review finding, 2026-12-08).
    failures = sorted(failures, key=lambda f: f.listing.pk)
    ops = connection.ops
    now = timezone.now()
    failed, failed_params = rows_cte(
        "failed", (("id", "bigint"), ("attempts", "integer"), ("claimed_attempts", "integer"), ("last_error", "text"),
                   ("status", "text"), ("next_attempt_at", "timestamptz"), ("permanent", "boolean"),
                   ("replayed_retry_at", "timestamptz"), *((f"claimed_{name}", "text") for name in MAPPING_FIELDS)),
        [(f.listing.pk, f.attempts, f.listing.attempts, f.error,
          ListingStatus.FAILED if f.give_up else ListingStatus.RETRYING,
          None if f.give_up else ops.adapt_datetimefield_value(now + timedelta(seconds=f.wait)), f.permanent,
          ops.adapt_datetimefield_value(now + timedelta(seconds=backoff(1))),
          *(getattr(f.listing, name) for name in MAPPING_FIELDS)) for f in failures])
    logged, logged_params = rows_cte(
        "logged", (("listing_id", "bigint"), ("channel_id", "bigint"), ("version", "bigint"), ("quantity", "integer"),
                   ("http_status", "smallint"), ("error", "text")),
        [(f.listing.pk, f.channel.pk, f.listing.desired_version, f.listing.desired_quantity or 0, f.status, f.error)
         for f in failures])
    # Not replayed meanwhile, or refused for good: as decided here. Replayed or remapped: retried soon, on the
    # fresh budget.
    mapped_as_claimed = " AND ".join(f"{LISTINGS}.{name} = failed.claimed_{name}" for name in MAPPING_FIELDS)
    as_claimed = f"({mapped_as_claimed} AND ({LISTINGS}.attempts = failed.claimed_attempts OR failed.permanent))"
    parked: set[int] = set()
    update = Statements()
    update.add(locked_listings("id IN (SELECT id FROM failed) AND lease_owner = %s", after=failed)
               + f"UPDATE {LISTINGS} SET last_error = failed.last_error, "
               f"attempts = CASE WHEN {as_claimed} THEN failed.attempts ELSE {LISTINGS}.attempts END, "
               f"status = CASE WHEN {as_claimed} THEN failed.status ELSE %s END, "
               f"next_attempt_at = CASE WHEN {as_claimed} THEN failed.next_attempt_at ELSE failed.replayed_retry_at END, "
               f"lease_owner = NULL, lease_until = NULL FROM failed "
               f"WHERE {LISTINGS}.id = failed.id AND {LISTINGS}.id IN (SELECT id FROM locked) "
               f"RETURNING {LISTINGS}.id, {LISTINGS}.status",
               [*failed_params, _uuid_param(owner), ListingStatus.RETRYING.value],
               on_rows=lambda rows: parked.update(pk for pk, status in rows if status == ListingStatus.FAILED))
    log_them = Statements()
    log_them.add(f"WITH {logged} INSERT INTO {PushLog._meta.db_table} (listing_id, channel_id, version, quantity, ok, "
                 f"http_status, error, lag_ms, correlation_id, created_at) SELECT listing_id, channel_id, version, "
                 f"quantity, FALSE, http_status, error, NULL, %s, %s FROM logged",
                 [*logged_params, correlation_id[:64], ops.adapt_datetimefield_value(now)])
    for statements in (update, log_them):
        with transaction.atomic():
            statements.run()
    for f in failures:
        gave_up = f.listing.pk in parked
        metrics.PUSHES.labels(channel=f.channel.slug, outcome="failed" if gave_up else "retry").inc()
        if gave_up:
            metrics.DEAD_LETTERS.labels(kind="listing", channel=f.channel.slug).inc()


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
    return next_retry_delays([channel_id])[channel_id]


def next_retry_delays(channel_ids: list[int]) -> dict[int, float | None]:
    """Channel id -> seconds until its next out-of-date listing may become claimable (None: none is waiting):
    a retry falls due, or another pusher's lease ends (looked at again after LEASE_RECHECK_MS: changes
    committed during its push are still out of date). One query for all the channels of a push round."""
    rows = (Listing.objects.filter(channel_id__in=channel_ids, desired_version__gt=F("pushed_version"))
            .exclude(status=ListingStatus.FAILED).values("channel_id")
            .annotate(retry_at=Min("next_attempt_at"), lease_ends=Min("lease_until")).order_by())
    now = timezone.now()
    delays: dict[int, float | None] = dict.fromkeys(channel_ids)
    for row in rows:
        moments = [row["retry_at"]]
        if row["lease_ends"] is not None:
            moments.append(min(row["lease_ends"], now + timedelta(milliseconds=LEASE_RECHECK_MS)))
        moments = [m for m in moments if m is not None]
        if moments:
            delays[row["channel_id"]] = max((min(moments) - now).total_seconds(), 0.0) + 0.05
    return delays


def replay_listings(listing_ids: list[int]) -> int:
    """Operator's replay: failed listings go back into the push queue with a fresh retry budget."""
    with transaction.atomic():
        from channels_app.sync import update_listings_in_order, wake_pushers

        count = update_listings_in_order(
            Listing.objects.filter(pk__in=listing_ids), status=ListingStatus.PENDING, attempts=0, next_attempt_at=None,
            last_error="", desired_version=F("desired_version") + 1)
        channel_ids = set(Listing.objects.filter(pk__in=listing_ids).values_list("channel_id", flat=True))
        transaction.on_commit(lambda: wake_pushers(channel_ids))
    return count
