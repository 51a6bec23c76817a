"""Sync lag rolled up per channel and UTC minute (``SyncLagMinute``), from the push history.

The push history (``PushLog``) is kept two weeks; the live dashboard charts its last hour from these rows, and from
the push history for the minutes not rolled up yet (``last_rolled_up``). The rollup
keeps each minute's count and p50/p95/p99/max for months, for the admin's longer charts. A beat task runs it every
minute; each run recomputes the last few complete minutes from the raw rows and writes them over (an upsert per
channel and minute), so a run repeated, or a row committed a moment after its minute was first rolled up, never
counts twice or goes missing.
"""

from __future__ import annotations

from datetime import datetime, timedelta

from django.db.models import Max
from django.utils import timezone

from channels_app.models import SyncLagMinute
from channels_app.selectors import lag_minutes

# A minute is rolled up once it ended this long ago: a round's log rows carry the round's time and commit just after.
SETTLE_SECONDS = 10
# Each run recomputes this many minutes before the last one rolled up (rows committed late, a run that died).
REROLL_MINUTES = 3
# The furthest back a first run (or one after a long stop) reaches; older minutes are left unrolled.
BACKFILL_MINUTES = 24 * 60


def roll_up_sync_lag(now: datetime | None = None) -> int:
    """Roll up the complete minutes not yet rolled up (and the last few again). Returns the (channel, minute)
    rows written."""
    now = now or timezone.now()
    end = (now - timedelta(seconds=SETTLE_SECONDS)).replace(second=0, microsecond=0)
    last = last_rolled_up()
    start = end - timedelta(minutes=BACKFILL_MINUTES)
    if last is not None:
        start = max(start, last - timedelta(minutes=REROLL_MINUTES))
    minutes = [SyncLagMinute(channel_id=channel_id, minute=minute, count=lag.count, max_ms=lag.max_ms,
                             p50_ms=lag.p50_ms, p95_ms=lag.p95_ms, p99_ms=lag.p99_ms)
               for (channel_id, minute), lag in lag_minutes(start, end).items()]
    SyncLagMinute.objects.bulk_create(minutes, batch_size=1000, update_conflicts=True,
                                      unique_fields=["channel", "minute"],
                                      update_fields=["count", "p50_ms", "p95_ms", "p99_ms", "max_ms"])
    return len(minutes)


def last_rolled_up():
    """The last minute a roll-up has written (every minute before it, back to the roll-up's start, is rolled up:
    each run covers every complete minute since the one before), or None."""
    return SyncLagMinute.objects.aggregate(last=Max("minute"))["last"]


def lag_history(channel_id: int, *, hours: int, now: datetime | None = None, points: int = 96) -> list[dict]:
    """The channel's rolled-up minutes over the last ``hours``, in ``points`` spans (oldest first), each the worst
    minute in it (the highest p50, p95 and p99 of its minutes; percentiles of different minutes do not add up to
    a percentile of the span), and the span's count. A span with no pushes has None."""
    now = now or timezone.now()
    start = now - timedelta(hours=hours)
    span = timedelta(hours=hours) / points
    spans: list[dict] = [{"minute": i, "count": 0, "p50": None, "p95": None, "p99": None} for i in range(points)]
    for row in SyncLagMinute.objects.filter(channel_id=channel_id, minute__gte=start, minute__lt=now):
        bucket = spans[min(int((row.minute - start) / span), points - 1)]
        bucket["count"] += row.count
        for label, value in (("p50", row.p50_ms), ("p95", row.p95_ms), ("p99", row.p99_ms)):
            bucket[label] = value if bucket[label] is None else max(bucket[label], value)
    return spans
