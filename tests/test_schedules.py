"""Schedules: created from settings, kept in step, one beat at a time, and DST-proof."""

from __future__ import annotations

from datetime import UTC, datetime, timedelta

import pytest
from django_celery_beat.models import IntervalSchedule, PeriodicTask

from hub.beat import LOCK_KEY
from hub.redis import get_redis
from hub.schedules import sync_schedules
from tests.channels.helpers import make_channel

pytestmark = pytest.mark.django_db


def test_sync_creates_global_and_channel_schedules_idempotently():
    channel = make_channel("shopify", slug="shop", reconcile_interval_seconds=600)
    first = sync_schedules()
    assert "Expire due reservations" in first and "shop: reconcile" in first
    count = PeriodicTask.objects.count()
    assert sync_schedules() == first and PeriodicTask.objects.count() == count
    channel.reconcile_interval_seconds = 120
    channel.save()
    sync_schedules()
    assert PeriodicTask.objects.get(name="shop: reconcile").interval.every == 120
    expiry = PeriodicTask.objects.get(name="Expire due reservations")
    assert expiry.interval.every == 1 and expiry.interval.period == IntervalSchedule.SECONDS


def test_operator_disabling_a_schedule_is_respected():
    sync_schedules()
    PeriodicTask.objects.filter(name="Retention clean-up").update(enabled=False)
    sync_schedules()
    assert PeriodicTask.objects.get(name="Retention clean-up").enabled is False


def test_a_second_beat_refuses_to_start():
    from hub.beat import SingleBeatScheduler

    redis = get_redis()
    redis.set(LOCK_KEY, "other-host:123", ex=30)
    try:
        with pytest.raises(SystemExit) as info:
            SingleBeatScheduler(app=None)
        assert "Another celery beat is running" in str(info.value)
    finally:
        redis.delete(LOCK_KEY)


@pytest.mark.parametrize("zone_switch", [datetime(2026, 3, 29, 1, 0, tzinfo=UTC), datetime(2026, 10, 25, 1, 0, tzinfo=UTC)])
def test_interval_schedules_neither_double_run_nor_skip_across_dst(zone_switch):
    """Beat runs in UTC; a local DST switch (Europe, both directions) must not change the count of runs."""
    every = IntervalSchedule(every=900, period=IntervalSchedule.SECONDS).schedule
    clock = zone_switch - timedelta(hours=2)
    last_run = clock
    runs = 0
    while clock < zone_switch + timedelta(hours=2):
        clock += timedelta(seconds=30)
        every.nowfun = lambda clock=clock: clock
        due, _ = every.is_due(last_run)
        if due:
            runs += 1
            last_run = clock
    assert runs == 16  # four hours at one run per 15 minutes, no more, no less
