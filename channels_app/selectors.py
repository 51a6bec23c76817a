"""Reads of channel data for the API, the admin and the dashboard."""

from __future__ import annotations

import math
from collections.abc import Sequence
from datetime import UTC, datetime, timedelta
from typing import NamedTuple

from django.db import connection
from django.db.models import Count, F, IntegerField, Max, OuterRef, Q, QuerySet, Subquery
from django.db.models.functions import Coalesce
from django.utils import timezone

from channels_app.models import Channel, InboundEvent, InboundStatus, Listing, ListingStatus, PushLog
from channels_app.rules import desired_quantities
from inventory_app.models import Sku

# Written by the pushers and receipts themselves: not configuration, and a copy that differs only in them is current.
_BOOKKEEPING = {"last_inbound_at", "last_push_at", "last_push_error", "last_push_error_at"}
_CONFIG_FIELDS = [f for f in Channel._meta.concrete_fields if f.name not in _BOOKKEEPING]
_channel_copies: dict[int, tuple[tuple, Channel]] = {}


def channel_config_columns(alias: str) -> str:
    """The columns ``channel_from_config`` checks a copy against, to read alongside another row."""
    return ", ".join(f"{alias}.{f.column}" for f in _CONFIG_FIELDS)


_CONFIG_SQL = f"SELECT {channel_config_columns('c')} FROM {Channel._meta.db_table} c WHERE c.{Channel._meta.pk.column} = %s"


def channel_for_push(channel_id: int) -> Channel | None:
    """The channel as configured now, reusing this process's copy while every configuration column still holds
    what the copy was built from: one plain read instead of building the model and decrypting its credentials
    on every push (13% of a push worker's CPU). Any change to the row, even by ``queryset.update``, is seen."""
    with connection.cursor() as cursor:
        cursor.execute(_CONFIG_SQL, [channel_id])
        row = cursor.fetchone()
    if row is None:
        _channel_copies.pop(channel_id, None)
        return None
    return channel_from_config(channel_id, row)


def channels_for_push(channel_ids: list[int]) -> dict[int, Channel]:
    """``channel_for_push`` for several channels in one read; channels that no longer exist are left out."""
    if len(channel_ids) == 1:
        channel = channel_for_push(channel_ids[0])
        return {channel.pk: channel} if channel is not None else {}
    with connection.cursor() as cursor:
        cursor.execute(f"SELECT c.{Channel._meta.pk.column}, {channel_config_columns('c')} FROM "
                       f"{Channel._meta.db_table} c WHERE c.{Channel._meta.pk.column} IN "
                       f"({', '.join(['%s'] * len(channel_ids))})", channel_ids)
        found = {row[0]: channel_from_config(row[0], row[1:]) for row in cursor.fetchall()}
    for channel_id in channel_ids:
        if channel_id not in found:
            _channel_copies.pop(channel_id, None)
    return found


def channel_from_config(channel_id: int, row: Sequence) -> Channel:
    """This process's copy of the channel if ``row`` (its ``channel_config_columns``, read just now) is what the
    copy was built from, else a fresh copy."""
    row = tuple(row)
    cached = _channel_copies.get(channel_id)
    if cached is not None and cached[0] == row:
        return cached[1]
    channel = Channel.objects.get(pk=channel_id)
    _channel_copies[channel_id] = (row, channel)
    return channel


def availability_by_channel(sku: Sku) -> list[dict]:
    """What each enabled channel that lists this SKU would be sent now."""
    result = []
    for listing in Listing.objects.filter(sku=sku, channel__enabled=True).select_related("channel", "sku"):
        quantity = desired_quantities(listing.channel, [listing])[listing.id]
        result.append({"channel": listing.channel.slug, "available": quantity})
    return result


def preview(channel: Channel, limit: int = 500) -> list[dict]:
    """Per listing: what the rules would publish now, next to what the channel last got."""
    listings = list(Listing.objects.filter(channel=channel).select_related("sku").order_by("sku__code")[:limit])
    desired = desired_quantities(channel, listings)
    return [{"sku": x.sku.code, "would_send": desired[x.id], "pushed": x.pushed_quantity, "remote": x.remote_quantity,
             "status": x.status} for x in listings]


def percentile_ms(values: list[int], pct: float) -> int | None:
    """The smallest value at least ``pct`` percent of ``values`` are at or below (PostgreSQL's ``percentile_disc``,
    which ``lag_minutes`` and ``lag_summary`` ask the database for: one definition wherever a lag is summed up)."""
    if not values:
        return None
    ordered = sorted(values)
    return ordered[min(len(ordered), max(math.ceil(pct / 100 * len(ordered)), 1)) - 1]


LAG_PERCENTILES = (50, 95, 99)
_PUSHLOG = PushLog._meta.db_table


class LagSummary(NamedTuple):
    count: int
    p50_ms: int | None
    p95_ms: int | None
    p99_ms: int | None
    max_ms: int | None


def _lag_summaries(since: datetime, until: datetime | None, channel_id: int | None, *,
                   per_minute: bool) -> dict[tuple, LagSummary]:
    """Acknowledged pushes' lag in [since, until), summed up per (channel id, UTC minute), or for all of them (key
    ()). On PostgreSQL in the database, whatever the number of rows (the dashboard read at most 20,000 of an hour's,
    and a channel pushed 50 times a second writes 180,000); elsewhere (the single-box demo on SQLite) here."""
    if connection.vendor == "postgresql":
        where, params = ["ok", "lag_ms IS NOT NULL", "created_at >= %s"], [since]
        for condition, value in (("created_at < %s", until), ("channel_id = %s", channel_id)):
            if value is not None:
                where.append(condition)
                params.append(value)
        keys = "channel_id, date_trunc('minute', created_at AT TIME ZONE 'UTC')" if per_minute else ""
        fractions = ", ".join(str(p / 100) for p in LAG_PERCENTILES)
        with connection.cursor() as cursor:
            cursor.execute(f"SELECT {keys + ', ' if keys else ''}count(*), percentile_disc(ARRAY[{fractions}]) "
                           f"WITHIN GROUP (ORDER BY lag_ms), max(lag_ms) FROM {_PUSHLOG} WHERE {' AND '.join(where)}"
                           f"{' GROUP BY 1, 2' if keys else ''}", params)
            found = cursor.fetchall()
        width = 2 if per_minute else 0
        return {_key(row[:width]): LagSummary(row[width], *(row[width + 1] or [None] * len(LAG_PERCENTILES)),
                                              row[width + 2])
                for row in found if row[width]}
    rows = PushLog.objects.filter(ok=True, lag_ms__isnull=False, created_at__gte=since)
    if until is not None:
        rows = rows.filter(created_at__lt=until)
    if channel_id is not None:
        rows = rows.filter(channel_id=channel_id)
    lags: dict[tuple, list[int]] = {}
    for channel, created_at, lag in rows.values_list("channel_id", "created_at", "lag_ms").iterator(5000):
        lags.setdefault(_key((channel, created_at)) if per_minute else (), []).append(lag)
    return {key: LagSummary(len(values), *(percentile_ms(values, p) for p in LAG_PERCENTILES), max(values))
            for key, values in lags.items()}


def _key(row) -> tuple:
    if not row:
        return ()
    channel_id, at = row
    at = at.replace(tzinfo=UTC) if at.tzinfo is None else at.astimezone(UTC)
    return channel_id, at.replace(second=0, microsecond=0)


def lag_minutes(since: datetime, until: datetime, channel_id: int | None = None) -> dict[tuple, LagSummary]:
    """Per (channel id, UTC minute) in [since, until): the lag of its acknowledged pushes (the rollups, and the live
    chart's minutes not rolled up yet)."""
    return _lag_summaries(since, until, channel_id, per_minute=True)


def lag_summary(channel_id: int, since: datetime) -> LagSummary:
    """The lag of a channel's acknowledged pushes since ``since``."""
    return _lag_summaries(since, None, channel_id, per_minute=False).get((), LagSummary(0, None, None, None, None))


def sync_status(channel: Channel, *, now=None) -> dict:
    now = now or timezone.now()
    listings = Listing.objects.filter(channel=channel)
    counts = listings.aggregate(
        total=Count("id"),
        backlog=Count("id", filter=Q(desired_version__gt=F("pushed_version")) & ~Q(status=ListingStatus.FAILED)),
        failed=Count("id", filter=Q(status=ListingStatus.FAILED)),
        edited=Count("id", filter=Q(edited_on_channel_at__isnull=False)),
        oldest_dirty=Max("dirty_since"),
    )
    inbox = InboundEvent.objects.filter(channel=channel).aggregate(
        dead=Count("id", filter=Q(status__in=[InboundStatus.DEAD, InboundStatus.PARKED, InboundStatus.FAILED])),
        pending=Count("id", filter=Q(status__in=[InboundStatus.PENDING, InboundStatus.RETRYING])),
        last=Max("received_at"),
    )
    lags = {}
    for label, window in (("5m", timedelta(minutes=5)), ("1h", timedelta(hours=1))):
        summary = lag_summary(channel.pk, now - window)
        lags[label] = {"count": summary.count, "p50_ms": summary.p50_ms, "p95_ms": summary.p95_ms,
                       "p99_ms": summary.p99_ms}
    oldest = listings.filter(desired_version__gt=F("pushed_version"), dirty_since__isnull=False).order_by(
        "dirty_since").values_list("dirty_since", flat=True).first()
    health, reason = _health(channel, counts, inbox, oldest, now)
    return {
        "channel": channel.slug, "health": health, "reason": reason, "listings": counts["total"],
        "push_backlog": counts["backlog"], "failed_listings": counts["failed"], "edited_on_channel": counts["edited"],
        "oldest_unpushed_seconds": round((now - oldest).total_seconds(), 3) if oldest else 0,
        "inbox_pending": inbox["pending"], "inbox_dead_lettered": inbox["dead"], "last_webhook_at": inbox["last"],
        "last_push_at": channel.last_push_at, "last_push_error": channel.last_push_error,
        "last_push_error_at": channel.last_push_error_at, "sync_lag": lags,
    }


def with_health(channels: QuerySet) -> QuerySet:
    """``channels`` with what their health badge reads, for a list of them in one query (``health_of``).
    ``sync_status`` per channel also read an hour of push history, twice: for the badge alone, a list of channels
    cost a dozen queries and up to 40,000 rows each (review finding, 2026-12-07)."""
    def counted(queryset) -> Coalesce:
        return Coalesce(Subquery(queryset.filter(channel=OuterRef("pk")).order_by().values("channel")
                                 .annotate(n=Count("id")).values("n")[:1], output_field=IntegerField()), 0)

    return channels.annotate(
        health_failed=counted(Listing.objects.filter(status=ListingStatus.FAILED)),
        health_dead=counted(InboundEvent.objects.filter(
            status__in=[InboundStatus.DEAD, InboundStatus.PARKED, InboundStatus.FAILED])),
        health_oldest=Subquery(Listing.objects.filter(
            channel=OuterRef("pk"), desired_version__gt=F("pushed_version"), dirty_since__isnull=False)
            .order_by("dirty_since").values("dirty_since")[:1]))


def health_of(channel: Channel, *, now=None) -> tuple[str, str]:
    """The badge and its reason of a channel read through ``with_health``: what ``sync_status`` says."""
    return _health(channel, {"failed": channel.health_failed}, {"dead": channel.health_dead}, channel.health_oldest,
                   now or timezone.now())


def _health(channel: Channel, counts: dict, inbox: dict, oldest, now) -> tuple[str, str]:
    if not channel.enabled:
        return "grey", "disabled"
    if channel.paused:
        return "grey", "paused"
    if counts["failed"]:
        return "red", f"{counts['failed']} listing(s) failed: {channel.last_push_error[:200]}"
    if oldest and (now - oldest).total_seconds() > 60:
        return "red", f"changes waiting {(now - oldest).total_seconds():.0f}s: {channel.last_push_error[:200]}"
    if inbox["dead"]:
        return "amber", f"{inbox['dead']} inbound event(s) need attention"
    if oldest and (now - oldest).total_seconds() > 5:
        return "amber", "push backlog"
    return "green", "in sync"
