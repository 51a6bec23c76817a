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

from django.db import transaction
from django.db.models import F, Q
from django.utils import timezone

from channels_app import metrics
from channels_app.adapters import adapter_for
from channels_app.adapters.base import ChannelAdapter, PushItem, PushResult
from channels_app.adapters.http import ChannelError, PermanentError, RateLimited
from channels_app.models import Channel, Listing, ListingStatus, PushLog
from channels_app.rules import desired_quantities
from channels_app.sync import wake_key
from hub.observability import correlation_id as current_correlation_id
from hub.redis import get_redis

log = logging.getLogger(__name__)

# Longer than one batch's requests with their in-call retries; a dead pusher's batch is retaken after it.
LEASE_SECONDS = int(os.environ.get("TALLY_PUSH_LEASE_SECONDS", "20"))
# With equal-jitter backoff capped at 30 s, 12 attempts span about three minutes: a platform outage
# of a minute or two heals by itself; longer ones park the listing for the operator.
MAX_ATTEMPTS = 12
MAX_BACKOFF_SECONDS = 30
# A pusher waits at most this long in-process for rate-limit tokens; longer waits become a countdown,
# so a throttled channel never holds a worker process that inbound events need.
MAX_INLINE_WAIT = 0.2


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
    return Listing.objects.filter(channel=channel, desired_version__gt=F("pushed_version")).exclude(
        status=ListingStatus.FAILED).filter(Q(next_attempt_at__isnull=True) | Q(next_attempt_at__lte=now)).filter(
        Q(lease_until__isnull=True) | Q(lease_until__lt=now))


def claim(channel: Channel, *, limit: int, owner: uuid.UUID) -> list[tuple[Listing, int]]:
    """Lease up to ``limit`` out-of-date listings; returns each with the version it will carry."""
    now = timezone.now()
    with transaction.atomic():
        ids = list(dirty_listings(channel, now).select_for_update(skip_locked=True)
                   .order_by(F("dirty_since").asc(nulls_first=True), "id").values_list("id", flat=True)[:limit])
        if not ids:
            return []
        Listing.objects.filter(pk__in=ids).update(lease_owner=owner, lease_until=now + timedelta(seconds=LEASE_SECONDS))
    listings = list(Listing.objects.filter(pk__in=ids, lease_owner=owner).select_related("sku"))
    return [(listing, listing.desired_version) for listing in listings]


def push_channel(channel_id: int, *, max_rounds: int = 100, correlation_id: str = "") -> PushSummary:
    summary = PushSummary()
    correlation_id = correlation_id or current_correlation_id.get()
    get_redis().delete(wake_key(channel_id))
    channel = Channel.objects.filter(pk=channel_id).first()
    if channel is None or not channel.enabled or channel.paused:
        return summary
    adapter = adapter_for(channel)
    owner = uuid.uuid4()
    for _ in range(max_rounds):
        claimed = claim(channel, limit=min(adapter.max_batch * 4, channel.push_batch_size or 100), owner=owner)
        if not claimed:
            break
        summary.claimed += len(claimed)
        _push_claimed(channel, adapter, claimed, owner, summary, correlation_id)
        if summary.retry_in is not None:
            break
    return summary


def _push_claimed(channel: Channel, adapter: ChannelAdapter, claimed: list[tuple[Listing, int]], owner: uuid.UUID,
                  summary: PushSummary, correlation_id: str) -> None:
    started = timezone.now()
    listings = [listing for listing, _ in claimed]
    versions = {listing.id: version for listing, version in claimed}
    desired = desired_quantities(channel, listings)
    to_send: list[PushItem] = []
    for listing in listings:
        quantity = desired[listing.id]
        known = listing.remote_quantity if listing.remote_quantity is not None else listing.pushed_quantity
        if listing.remote_quantity is not None and listing.remote_quantity == quantity and (
                listing.pushed_at is None or (listing.remote_seen_at and listing.remote_seen_at >= listing.pushed_at)):
            # The channel already shows this number (it made the sale itself): no echo.
            _record_ok(listing, versions[listing.id], quantity, owner, started, channel, correlation_id, sent=False)
            summary.skipped_no_change += 1
            continue
        to_send.append(PushItem(listing=listing, quantity=quantity, expected_remote=known))
    if not to_send:
        return
    previous_attempts = {item.listing.id: item.listing.attempted_quantity for item in to_send}
    for item in to_send:
        item.listing.attempted_quantity = item.quantity
    Listing.objects.bulk_update([item.listing for item in to_send], ["attempted_quantity"])
    for start in range(0, len(to_send), adapter.max_batch):
        batch = to_send[start:start + adapter.max_batch]
        wait = adapter.limiter.acquire(adapter.requests_needed(batch), max_wait=MAX_INLINE_WAIT)
        if wait:
            metrics.RATE_LIMIT_WAITS.labels(channel=channel.slug).inc()
            _release([i.listing for i in to_send[start:]], owner, delay=wait, error="")
            summary.retry_in = wait
            return
        _send_batch(channel, adapter, batch, versions, owner, summary, correlation_id, started, previous_attempts)


def _send_batch(channel: Channel, adapter: ChannelAdapter, batch: list[PushItem], versions: dict[int, int],
                owner: uuid.UUID, summary: PushSummary, correlation_id: str, started: datetime,
                previous_attempts: dict[int, int | None]) -> None:
    t0 = time.perf_counter()
    try:
        results = adapter.push(batch)
        conflicts = [r for r in results if r.conflict or (not r.ok and r.retryable and r.error.startswith("batch refused"))]
        if conflicts:
            results = [r for r in results if r not in conflicts] + _reconcile_conflicts(adapter, batch, conflicts,
                                                                                         previous_attempts)
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
    channel_ok = False
    by_id = {item.listing.id: item for item in batch}
    for result in results:
        item = by_id[result.listing_id]
        if result.ok:
            channel_ok = True
            _record_ok(item.listing, versions[item.listing.id], result.quantity if result.quantity is not None
                       else item.quantity, owner, started, channel, correlation_id, status=result.http_status)
            summary.pushed += 1
        else:
            summary.failed += 1
            summary.errors.append(result.error)
            _record_failure(item.listing, owner, channel, result.error, result.http_status,
                            permanent=not result.retryable)
    now = timezone.now()
    if channel_ok:
        Channel.objects.filter(pk=channel.pk).update(last_push_at=now)
    elif results:
        Channel.objects.filter(pk=channel.pk).update(last_push_error=results[0].error[:2000], last_push_error_at=now)


def _reconcile_conflicts(adapter: ChannelAdapter, batch: list[PushItem], conflicts: list[PushResult],
                         previous_attempts: dict[int, int | None]) -> list[PushResult]:
    """A compare-and-set was refused: the channel changed under us, most likely a sale we have not
    been told of yet. Publish our number less what the channel sold meanwhile, compared against what
    it holds now, so a stale higher number never lands over that sale. If the channel holds exactly
    what an earlier, unrecorded attempt of ours sent (its pusher died after the channel applied it),
    nothing was sold: publish our number as it is."""
    by_id = {item.listing.id: item for item in batch}
    retry = []
    for result in conflicts:
        item = by_id[result.listing_id]
        actual = result.remote_quantity
        if actual is None:
            retry.append(PushItem(listing=item.listing, quantity=item.quantity, expected_remote=None))
            continue
        ours = actual == previous_attempts.get(item.listing.id)
        unseen = (item.expected_remote - actual) if item.expected_remote is not None and not ours else 0
        retry.append(PushItem(listing=item.listing, quantity=max(item.quantity - max(unseen, 0), 0),
                              expected_remote=actual))
        metrics.RETRIES.labels(kind="push_conflict", channel=adapter.channel.slug).inc()
    results = adapter.push(retry)
    return [PushResult(listing_id=r.listing_id, ok=False, error=f"compare-and-set conflict twice: {r.error}",
                       http_status=r.http_status) if r.conflict else r for r in results]


def _record_ok(listing: Listing, version: int, quantity: int, owner: uuid.UUID, started: datetime, channel: Channel,
               correlation_id: str, *, status: int | None = None, sent: bool = True) -> None:
    now = timezone.now()
    lag_ms = int((now - listing.dirty_since).total_seconds() * 1000) if listing.dirty_since else None
    with transaction.atomic():
        updated = Listing.objects.filter(pk=listing.pk, lease_owner=owner).update(
            pushed_version=version, pushed_quantity=quantity, pushed_at=now, desired_quantity=quantity,
            remote_quantity=quantity, remote_seen_at=now, attempts=0, next_attempt_at=None, last_error="",
            lease_owner=None, lease_until=None)
        if not updated:
            return  # our lease expired and another pusher took over; it records its own result
        # Changes committed after our claim keep the listing dirty, counted from when we claimed.
        Listing.objects.filter(pk=listing.pk, desired_version__gt=version).update(
            dirty_since=started, status=ListingStatus.PENDING)
        Listing.objects.filter(pk=listing.pk, desired_version__lte=version).update(dirty_since=None,
                                                                                     status=ListingStatus.OK)
        if sent:
            PushLog.objects.create(listing=listing, channel=channel, version=version, quantity=quantity, ok=True,
                                   http_status=status, lag_ms=lag_ms, correlation_id=correlation_id[:64])
    metrics.PUSHES.labels(channel=channel.slug, outcome="ok" if sent else "no_change").inc()
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
    Listing.objects.filter(pk__in=[x.pk for x in listings], lease_owner=owner).update(
        lease_owner=None, lease_until=None, next_attempt_at=timezone.now() + timedelta(seconds=delay))


def channels_needing_push(now: datetime | None = None) -> list[int]:
    now = now or timezone.now()
    return list(Channel.objects.filter(enabled=True, paused=False, listings__in=dirty_listings_all(now))
                .values_list("id", flat=True).distinct())


def dirty_listings_all(now: datetime):
    return Listing.objects.filter(desired_version__gt=F("pushed_version")).exclude(status=ListingStatus.FAILED).filter(
        Q(next_attempt_at__isnull=True) | Q(next_attempt_at__lte=now)).filter(
        Q(lease_until__isnull=True) | Q(lease_until__lt=now))


def next_retry_delay(channel: Channel) -> float | None:
    """Seconds until the channel's next out-of-date listing becomes claimable (a retry falls due or
    another pusher's lease runs out), if any."""
    waiting = Listing.objects.filter(channel=channel, desired_version__gt=F("pushed_version")).exclude(
        status=ListingStatus.FAILED)
    moments = [
        waiting.filter(next_attempt_at__isnull=False).order_by("next_attempt_at").values_list("next_attempt_at",
                                                                                             flat=True).first(),
        waiting.filter(lease_until__isnull=False).order_by("lease_until").values_list("lease_until", flat=True).first(),
    ]
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
