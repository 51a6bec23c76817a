"""Sync lag rolled up per channel and minute: exact per minute, never counted twice, a late row not lost."""

from __future__ import annotations

from datetime import UTC, datetime, timedelta

import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from channels_app.models import Listing, PushLog, SyncLagMinute
from channels_app.rollups import REROLL_MINUTES, lag_history, roll_up_sync_lag
from channels_app.selectors import lag_minutes, lag_summary, percentile_ms
from tests.channels.helpers import make_channel
from tests.factories import make_sku

pytestmark = pytest.mark.django_db

NOON = datetime(2026, 12, 7, 12, 0, tzinfo=UTC)


def log(listing: Listing, at: datetime, lag_ms: int | None, ok: bool = True) -> None:
    PushLog.objects.create(listing=listing, channel=listing.channel, version=1, quantity=1, ok=ok, lag_ms=lag_ms,
                           created_at=at)


def minutes(channel) -> dict[str, tuple]:
    return {f"{row.minute:%H:%M}": (row.count, row.p50_ms, row.p95_ms, row.p99_ms, row.max_ms)
            for row in SyncLagMinute.objects.filter(channel=channel)}


def test_each_complete_minute_is_rolled_up_once_and_a_late_row_is_counted_on_the_next_run():
    channel = make_channel("standard")
    listing = Listing.objects.create(channel=channel, sku=make_sku())
    other = Listing.objects.create(channel=make_channel("standard"), sku=make_sku())
    for second, lag in ((0, 40), (20, 10), (59.999, 30)):  # 12:00, its last millisecond included
        log(listing, NOON + timedelta(seconds=second), lag)
    log(listing, NOON + timedelta(minutes=1), 500)  # 12:01, the next minute
    log(listing, NOON + timedelta(seconds=30), None, ok=False)  # a failure is no lag sample
    log(other, NOON + timedelta(seconds=5), 7)  # another channel's minute
    log(listing, NOON + timedelta(minutes=2, seconds=1), 9)  # 12:02: not complete at the run below

    assert roll_up_sync_lag(now=NOON + timedelta(minutes=2, seconds=30)) == 3
    assert minutes(channel) == {"12:00": (3, 30, 40, 40, 40), "12:01": (1, 500, 500, 500, 500)}
    assert minutes(other.channel) == {"12:00": (1, 7, 7, 7, 7)}

    # Committed after its minute was rolled up (a round's rows carry the round's time): counted when it is rolled
    # up again; the run repeated counts nothing twice.
    log(listing, NOON + timedelta(minutes=1, seconds=50), 100)
    for _ in range(2):
        roll_up_sync_lag(now=NOON + timedelta(minutes=3, seconds=30))
    assert minutes(channel) == {"12:00": (3, 30, 40, 40, 40), "12:01": (2, 100, 500, 500, 500),
                                "12:02": (1, 9, 9, 9, 9)}
    assert REROLL_MINUTES >= 2  # the minute before the last one rolled up is looked at again


def test_history_shows_the_worst_minute_of_each_span_and_the_page_charts_it(client, django_user_model):
    channel = make_channel("standard", slug="lag-history")
    for minute, (count, p50, p99) in {0: (10, 20, 90), 1: (5, 60, 70), 40: (2, 15, 15)}.items():
        SyncLagMinute.objects.create(channel=channel, minute=NOON + timedelta(minutes=minute), count=count,
                                     p50_ms=p50, p95_ms=p99, p99_ms=p99, max_ms=p99)
    spans = lag_history(channel.pk, hours=1, now=NOON + timedelta(hours=1), points=4)  # 15-minute spans
    assert [(s["count"], s["p50"], s["p99"]) for s in spans] == [(15, 60, 90), (0, None, None), (2, 15, 15),
                                                                 (0, None, None)]

    user = django_user_model.objects.create_user(username="ops", password="pw-ops-1", is_staff=True, is_superuser=True)
    client.force_login(user)
    page = client.get(f"/admin/dashboard/lag/{channel.pk}/")
    assert page.status_code == 200
    html = page.content.decode()
    assert html.count('<svg class="tally-chart"') == 3 and 'data-hours="24"' in html
    assert client.get("/admin/dashboard/lag/999999/").status_code == 404
    assert client.get("/admin/channels_app/synclagminute/").status_code == 200


@given(lags=st.lists(st.integers(min_value=0, max_value=10_000), min_size=1, max_size=60))
@settings(max_examples=40, deadline=None, suppress_health_check=[HealthCheck.function_scoped_fixture])
def test_the_database_and_python_sum_up_lags_alike(lags):
    """One definition of a percentile: the database's sum-up (the dashboard, the rollups on PostgreSQL) and
    ``percentile_ms`` (elsewhere) give the same numbers for any lags."""
    listing = Listing.objects.select_related("channel").first() or Listing.objects.create(
        channel=make_channel("standard"), sku=make_sku())
    PushLog.objects.filter(channel=listing.channel).delete()
    PushLog.objects.bulk_create(PushLog(listing=listing, channel=listing.channel, version=1, quantity=1, ok=True,
                                        lag_ms=lag, created_at=NOON) for lag in lags)
    summary = lag_summary(listing.channel_id, NOON - timedelta(seconds=1))
    assert summary == (len(lags), *(percentile_ms(lags, p) for p in (50, 95, 99)), max(lags))
    assert lag_minutes(NOON, NOON + timedelta(minutes=1), listing.channel_id) == {(listing.channel_id, NOON): summary}
