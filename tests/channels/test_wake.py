"""Waking pushers: one queued push per channel, pushed at once when quiet, at most once per interval when busy.

Against the real Redis broker: the tests read the push queue's messages, as a worker would receive them.
"""

from __future__ import annotations

import json
from datetime import timedelta

import pytest
from django.test import Client
from django.utils import timezone

from channels_app import inbound, sync
from channels_app.models import InboundEvent
from hub.redis import get_redis
from tests.channels.helpers import list_sku, make_channel, map_location, post, shopify_headers, shopify_order
from tests.factories import make_location, make_sku

CHANNEL = 987_654  # no such channel: nothing here needs one, and no real channel's keys are touched
OTHERS = (987_655, 987_656)


@pytest.fixture
def push_queue():
    redis = get_redis()
    from hub.celery import app

    with app.connection_for_write() as conn:
        client = conn.default_channel.client
        client.delete("push")
        keys = [key for c in (CHANNEL, *OTHERS) for key in (sync.wake_key(c), sync.last_push_key(c))]
        redis.delete(*keys)

        def messages() -> list[dict]:
            out = [json.loads(raw) for raw in reversed(client.lrange("push", 0, -1))]  # LPUSH: newest first
            return [m["headers"] for m in out if any(str(c) in m["headers"]["argsrepr"] for c in (CHANNEL, *OTHERS))]

        yield messages
        client.delete("push")
    redis.delete(*keys)


def test_a_quiet_channel_is_woken_at_once_and_only_once(push_queue):
    sync.wake_pushers([CHANNEL])
    sync.wake_pushers([CHANNEL])  # a burst: the queued push will claim this change as well
    sync.wake_pushers([CHANNEL])
    queued = push_queue()
    assert len(queued) == 1 and queued[0]["eta"] is None


def test_a_busy_channel_is_pushed_at_most_once_per_interval(push_queue):
    sync.wake_pushers([CHANNEL])
    sync.start_push([CHANNEL])  # the pusher starts: later changes need a new push
    sync.wake_pushers([CHANNEL])
    sync.wake_pushers([CHANNEL])
    queued = push_queue()
    assert len(queued) == 2
    assert queued[0]["eta"] is None
    assert queued[1]["eta"] is not None  # held back until the interval since the last push has passed
    ttl = get_redis().pttl(sync.wake_key(CHANNEL))
    assert sync.WAKE_TTL_SECONDS * 1000 < ttl <= sync.PUSH_INTERVAL_MS + sync.WAKE_TTL_SECONDS * 1000


def test_channels_woken_together_are_pushed_in_one_task_and_those_the_interval_holds_back_in_one_more(push_queue):
    """A sale moves every channel at once: a task per channel was most of the drain's time at 50 orders/s."""
    sync.start_push([CHANNEL])  # just pushed: the interval holds it back
    sync.wake_pushers([CHANNEL, *OTHERS])
    queued = push_queue()
    assert [(q["argsrepr"], q["eta"] is None) for q in queued] == [(f"[{list(OTHERS)}]", True), (f"[[{CHANNEL}]]", False)]
    sync.wake_pushers([CHANNEL, *OTHERS])  # all queued already: nothing more
    assert len(push_queue()) == 2


def test_a_wake_of_many_channels_is_split_into_tasks_of_at_most_a_rounds_size(push_queue, monkeypatch):
    monkeypatch.setattr(sync, "ROUND_MAX_CHANNELS", 2)
    sync.wake_pushers([CHANNEL, *OTHERS])
    assert [q["argsrepr"] for q in push_queue()] == [f"[[{CHANNEL}, {OTHERS[0]}]]", f"[[{OTHERS[1]}]]"]


def test_a_rate_limited_push_holds_the_flag_so_changes_meanwhile_wake_nothing(push_queue):
    sync.wake_pushers([CHANNEL], countdown=3, hold=True)
    sync.wake_pushers([CHANNEL])
    queued = push_queue()
    assert len(queued) == 1 and queued[0]["eta"] is not None
    assert get_redis().pttl(sync.wake_key(CHANNEL)) > 3000


def test_a_retry_countdown_does_not_hold_the_flag(push_queue):
    # A backoff retry or another pusher's lease: fresh changes must still be pushed at once.
    sync.wake_pushers([CHANNEL], countdown=10)
    sync.wake_pushers([CHANNEL])
    queued = push_queue()
    assert len(queued) == 2 and queued[1]["eta"] is None


@pytest.mark.django_db
def test_only_operations_that_move_availability_mark_listings_out_of_date():
    from channels_app.models import Listing
    from inventory_app import stock
    from inventory_app.stock import LineRequest
    from tests.channels.helpers import list_sku, make_channel
    from tests.factories import make_bundle, make_location, make_sku

    wh = make_location()
    tee = make_sku(stock_at={wh: 10})
    pack = make_bundle({tee: 2})
    channel = make_channel("standard")
    single, bundle = list_sku(channel, tee), list_sku(channel, pack)

    def versions() -> list[int]:
        return list(Listing.objects.filter(pk__in=[single.pk, bundle.pk]).order_by("pk")
                    .values_list("desired_version", flat=True))

    before = versions()
    held = stock.reserve(lines=[LineRequest(tee.code, 3)], channel="pos")
    after_reserve = versions()
    assert after_reserve == [v + 1 for v in before]  # the SKU and the bundle made of it
    stock.commit(reservation_id=held["id"])
    assert versions() == after_reserve  # on_hand and reserved fell together: every channel's number stands
    again = stock.reserve(lines=[LineRequest(tee.code, 1)], channel="pos")
    stock.release(reservation_id=again["id"])
    assert versions() == [v + 2 for v in after_reserve]


def test_a_rate_limited_push_does_not_start_a_second_chain_when_a_push_is_queued(push_queue):
    # Woken while the throttled push ran: that queued push will meet the limit and reschedule itself.
    sync.wake_pushers([CHANNEL])
    sync.wake_pushers([CHANNEL], countdown=0.5, hold=True)
    assert len(push_queue()) == 1


@pytest.mark.django_db
def test_a_listing_another_pusher_holds_is_looked_at_again_after_the_interval_not_the_lease():
    from datetime import timedelta

    from django.db.models import F
    from django.utils import timezone

    from channels_app import outbound
    from channels_app.models import Listing
    from tests.channels.helpers import list_sku, make_channel
    from tests.factories import make_location, make_sku

    channel = make_channel("standard")
    listing = list_sku(channel, make_sku(stock_at={make_location(): 3}))
    assert outbound.next_retry_delay(channel.pk) is None  # nothing out of date
    Listing.objects.filter(pk=listing.pk).update(desired_version=F("pushed_version") + 1,
                                                 lease_until=timezone.now() + timedelta(seconds=20))
    # A live pusher is done well before its 20 s lease; changes during its push must not wait that long.
    assert outbound.LEASE_RECHECK_MS / 1000 - 0.01 < outbound.next_retry_delay(channel.pk) <= \
        outbound.LEASE_RECHECK_MS / 1000 + 0.05
    Listing.objects.filter(pk=listing.pk).update(lease_until=None,
                                                 next_attempt_at=timezone.now() + timedelta(seconds=7))
    assert 6 < outbound.next_retry_delay(channel.pk) <= 7.05  # a backoff retry waits its turn


@pytest.mark.django_db
def test_a_rounds_channels_that_wait_are_looked_up_in_one_query(django_assert_num_queries):
    from django.db.models import F

    from channels_app import outbound
    from channels_app.models import Listing

    wh = make_location()
    held, retrying, idle = (make_channel("standard") for _ in range(3))
    for channel in (held, retrying, idle):
        list_sku(channel, make_sku(stock_at={wh: 3}))
    Listing.objects.filter(channel=held).update(desired_version=F("pushed_version") + 1,
                                                lease_until=timezone.now() + timedelta(seconds=20))
    Listing.objects.filter(channel=retrying).update(desired_version=F("pushed_version") + 1,
                                                    next_attempt_at=timezone.now() + timedelta(seconds=7))
    with django_assert_num_queries(1):
        delays = outbound.next_retry_delays([held.pk, retrying.pk, idle.pk])
    assert delays[held.pk] <= outbound.LEASE_RECHECK_MS / 1000 + 0.05
    assert 6 < delays[retrying.pk] <= 7.05
    assert delays[idle.pk] is None


def test_the_interval_grows_with_how_far_behind_the_drain_is():
    assert sync.push_interval_ms(0) == sync.PUSH_INTERVAL_MS
    assert sync.push_interval_ms(2_000) == 500  # a quarter of the delay
    assert sync.push_interval_ms(600_000) == sync.PUSH_INTERVAL_MAX_MS


@pytest.mark.django_db(transaction=True)
@pytest.mark.parametrize(("received_ago", "retried", "interval"), [
    (0, False, sync.PUSH_INTERVAL_MS), (8, False, sync.PUSH_INTERVAL_MAX_MS),
    (8, True, sync.PUSH_INTERVAL_MS),  # received long ago, but a retry that fell due just now: no backlog
])
def test_an_order_applied_seconds_after_it_came_wakes_its_pushers_with_a_longer_interval(received_ago, retried,
                                                                                          interval):
    """While the drain is behind, pushes every few milliseconds of numbers already seconds old only take the
    CPU it needs to catch up: the stock change it applies wakes the pushers with a quarter of the delay."""
    channel = make_channel("shopify", secret="shh")
    wh = make_location()
    tee = make_sku(stock_at={wh: 20})
    list_sku(channel, tee, external_variant_id="111", external_inventory_item_id="9001")
    map_location(channel, wh, "L-WH")
    body = shopify_order(1, [(11, tee.code, 111, 1)])
    assert post(Client(), channel.slug, body, shopify_headers("shh", body, "orders/create")).status_code == 200
    event = InboundEvent.objects.get(channel=channel)
    InboundEvent.objects.filter(pk=event.pk).update(received_at=timezone.now() - timedelta(seconds=received_ago),
                                                    next_attempt_at=timezone.now() if retried else None)
    redis = get_redis()
    redis.delete(sync.wake_key(channel.pk), sync.last_push_key(channel.pk))
    assert inbound.process_event(event.pk) == "processed"
    ttl = redis.pttl(sync.wake_key(channel.pk))  # the flag lasts the interval plus WAKE_TTL_SECONDS
    assert interval - 300 < ttl - sync.WAKE_TTL_SECONDS * 1000 <= interval
    redis.delete(sync.wake_key(channel.pk), sync.last_push_key(channel.pk))


def test_a_held_push_for_several_channels_is_one_task_and_skips_those_already_queued(push_queue):
    """A round whose throttled channels each woke a task of their own sent several messages per round."""
    sync.wake_pushers([OTHERS[1]])  # already queued: its flag stands
    sync.wake_pushers([CHANNEL, *OTHERS], countdown=0.5, hold=True)
    queued = push_queue()
    assert [q["argsrepr"] for q in queued] == [f"[[{OTHERS[1]}]]", f"[[{CHANNEL}, {OTHERS[0]}]]"]
    assert queued[1]["eta"] is not None


def test_a_rounds_follow_ups_due_about_together_go_in_one_task(push_queue):
    from channels_app import outbound
    from channels_app.tasks import _follow_up

    _follow_up({CHANNEL: outbound.PushSummary(retry_in=0.31), OTHERS[0]: outbound.PushSummary(retry_in=0.35),
                OTHERS[1]: outbound.PushSummary(retry_in=2.0)})
    assert sorted(q["argsrepr"] for q in push_queue()) == sorted([f"[[{CHANNEL}, {OTHERS[0]}]]", f"[[{OTHERS[1]}]]"])
