"""Outbound mends from a review (2026-12-08): a change to a listing another pusher holds, a backlog longer than a
push task's rounds, and the failure log's lock order."""

from __future__ import annotations

import json
import threading
import time
import uuid

import pytest
from django.db import connection, transaction
from django.db.models import F

from channels_app import outbound, sync, tasks
from channels_app.models import Listing
from hub.redis import get_redis
from inventory_app import stock
from inventory_app.stock import LineRequest
from tests.channels.helpers import list_sku, make_channel
from tests.channels.sandboxed import connect, remote
from tests.factories import make_location, make_sku

pytestmark = pytest.mark.django_db(transaction=True)


def queued_for(channel_id: int) -> list[dict]:
    from hub.celery import app
    with app.connection_for_write() as conn:
        client = conn.default_channel.client
        out = [json.loads(raw)["headers"] for raw in client.lrange("push", 0, -1)]
    return [h for h in out if str(channel_id) in h["argsrepr"]]


def clear_queue() -> None:
    from hub.celery import app
    with app.connection_for_write() as conn:
        conn.default_channel.client.delete("push")


def test_change_to_a_leased_listing_is_not_left_for_the_sweeper():
    wh = make_location()
    tee, cap = make_sku(stock_at={wh: 12}), make_sku(stock_at={wh: 7})
    channel, box = connect("standard", {tee: 0, cap: 0}, channel_fields={
        "rate_limit_capacity": 100, "rate_limit_per_second": "100"})
    with box:
        tasks.push_channels([channel.pk])  # both in sync
        assert not Listing.objects.filter(channel=channel, desired_version__gt=F("pushed_version")).exists()
        stock.reserve(lines=[LineRequest(tee.code, 1)])  # tee's listing out of date
        box.state.set_faults({"latency_ms": 1500})
        clear_queue()
        get_redis().delete(sync.wake_key(channel.pk))

        def pusher_a():
            try:
                tasks.push_channels([channel.pk])  # claims tee's listing, slow send
            finally:
                connection.close()

        a = threading.Thread(target=pusher_a)
        a.start()
        deadline = time.monotonic() + 5
        while not Listing.objects.filter(channel=channel, sku=tee, lease_owner__isnull=False).exists():
            assert time.monotonic() < deadline
            time.sleep(0.01)
        # An order for both SKUs while A's request is out: both listings out of date, one push woken.
        stock.reserve(lines=[LineRequest(tee.code, 1), LineRequest(cap.code, 1)])
        assert queued_for(channel.pk)  # the wake this change made
        clear_queue()  # ... which a worker now runs: push B
        tasks.push_channels([channel.pk])  # B claims cap only (tee is A's)
        a.join(30)
        time.sleep(0.2)
        tee_listing = Listing.objects.get(channel=channel, sku=tee)
        # tee's newest number (10) was never sent: A carried 11.
        assert remote(box, tee) == 11
        assert tee_listing.desired_version > tee_listing.pushed_version
        # Expected: a push is queued for it. Actual: nothing until the sweeper (every 2 s, if running).
        assert queued_for(channel.pk), "listing left out of date with no push queued"


def test_a_backlog_longer_than_max_rounds_wakes_a_follow_up_push():
    wh = make_location()
    skus = [make_sku(stock_at={wh: 5}) for _ in range(103)]
    channel, box = connect("standard", {sku: 0 for sku in skus}, channel_fields={
        "rate_limit_capacity": 1000, "rate_limit_per_second": "1000", "push_batch_size": 1})
    with box:
        Listing.objects.filter(channel=channel).update(desired_version=F("desired_version") + 1)
        clear_queue()
        result = tasks.push_channels([channel.pk])  # max_rounds=100, one listing a round
        assert result[str(channel.pk)]["claimed"] == 100
        left = Listing.objects.filter(channel=channel, desired_version__gt=F("pushed_version")).count()
        assert left == 3
        assert queued_for(channel.pk), "3 listings left out of date, no push queued (sweeper only)"


def waiting_on_lock(n: int) -> bool:
    with connection.cursor() as cursor:
        cursor.execute("SELECT count(*) FROM pg_stat_activity WHERE wait_event_type = 'Lock' AND datname = current_database()")
        return cursor.fetchone()[0] >= n


def wait_until(pred, timeout=10.0):
    deadline = time.monotonic() + timeout
    while not pred():
        assert time.monotonic() < deadline, "timed out"
        time.sleep(0.02)


def test_failure_log_insert_does_not_deadlock_with_a_stock_write():
    wh = make_location()
    sku = make_sku(stock_at={wh: 10})
    chans = [make_channel("standard") for _ in range(3)]
    a, c, b = (list_sku(ch, sku) for ch in chans)  # ids a < c < b
    assert a.pk < c.pk < b.pk
    # A round whose failures come in this order (e.g. b's channel answered first, or b was 429'd in a later
    # batch and a failed in an earlier one: rate-limited ones are appended first in _record_sent). Leases are
    # another pusher's now (ours ran out), so the update locks nothing.
    failures = [outbound._failure(Listing.objects.get(pk=b.pk), chans[2], "boom", 500),
                outbound._failure(Listing.objects.get(pk=a.pk), chans[0], "boom", 500)]
    errors: list = []
    release_c = threading.Event()
    c_held = threading.Event()

    def holder():  # someone holding c briefly (a pusher recording c, say)
        try:
            with transaction.atomic():
                list(Listing.objects.select_for_update().filter(pk=c.pk))
                c_held.set()
                release_c.wait(20)
        finally:
            connection.close()

    def stock_write():  # locks a, c, b in id order (mark_listings_dirty)
        try:
            stock.adjust(sku=sku, location=wh, delta=1, reason="found")
        except Exception as exc:  # noqa: BLE001
            errors.append(("stock write", exc))
        finally:
            connection.close()

    def pusher():
        try:
            outbound._record_failures(failures, uuid.uuid4(), "")
        except Exception as exc:  # noqa: BLE001
            errors.append(("pusher", exc))
        finally:
            connection.close()

    threads = [threading.Thread(target=holder)]
    threads[0].start()
    c_held.wait(10)
    threads.append(threading.Thread(target=stock_write))
    threads[1].start()
    wait_until(lambda: waiting_on_lock(1))  # holds a, waits on c
    threads.append(threading.Thread(target=pusher))
    threads[2].start()
    wait_until(lambda: waiting_on_lock(2))  # KEY SHARE on b taken, waits on a
    release_c.set()
    for t in threads:
        t.join(30)
    assert errors == [], errors


def test_a_pusher_whose_lease_ran_out_does_not_note_its_attempt_over_the_one_that_took_over():
    """The attempted number is what a compare-and-set conflict tells our own attempt from a sale by: written by a
    pusher whose lease had run out, over the number of the pusher that took the listing over, it made a real sale
    look like our attempt (review suspicion, 2026-12-08). Only the lease holder notes it."""
    from channels_app.adapters.base import PushItem

    channel = make_channel("shopify")
    listing = list_sku(channel, make_sku(stock_at={make_location(): 5}))
    late, holder = uuid.uuid4(), uuid.uuid4()
    Listing.objects.filter(pk=listing.pk).update(lease_owner=holder, attempted_quantity=4)
    outbound._set_attempted([PushItem(listing=listing, quantity=9)], late)
    assert Listing.objects.get(pk=listing.pk).attempted_quantity == 4
    outbound._set_attempted([PushItem(listing=listing, quantity=9)], holder)
    assert Listing.objects.get(pk=listing.pk).attempted_quantity == 9
