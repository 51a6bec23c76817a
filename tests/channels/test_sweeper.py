"""The inbox drain and its sweeper: a burst of webhooks costs one broker message, drains never share an event,
and the sweeper wakes a drain only when one is missing, so under a backlog it never multiplies the queue.

Against the real Redis broker (the test settings' database): the tests read the inbound queue's contents.
"""

from __future__ import annotations

import json
import threading
from datetime import timedelta

import pytest
from django.db import connection
from django.test import Client
from django.utils import timezone

from channels_app import inbound
from channels_app.models import InboundEvent, InboundStatus
from hub.redis import get_redis
from inventory_app.models import LedgerKind, StockLedgerEntry, StockLevel
from tests.channels.helpers import list_sku, make_channel, post, shopify_headers, shopify_order
from tests.factories import make_location, make_sku
from tests.threads import run_together

pytestmark = pytest.mark.django_db


@pytest.fixture
def inbound_queue():
    from hub.celery import app

    with app.connection_for_write() as conn:
        client = conn.default_channel.client
        client.delete("inbound")
        get_redis().delete(inbound.DRAIN_WAKE_KEY)
        yield client
        client.delete("inbound")
        get_redis().delete(inbound.DRAIN_WAKE_KEY)


def queued_tasks(client) -> list[str]:
    return [json.loads(message)["headers"]["task"] for message in client.lrange("inbound", 0, -1)]


def pending_events(n: int, *, age: timedelta = timedelta(minutes=1)) -> list[InboundEvent]:
    channel = make_channel("standard")
    events = [InboundEvent.objects.create(channel=channel, dedup_key=f"k{i}", delivery_id=f"k{i}", topic="t",
                                          headers={}, body="{}") for i in range(n)]
    InboundEvent.objects.filter(pk__in=[e.pk for e in events]).update(received_at=timezone.now() - age)
    return events


@pytest.fixture
def shop():
    channel = make_channel("shopify", slug="shop", secret="shh")
    wh = make_location("wh-main")
    tee = make_sku("TEE", stock_at={wh: 100})
    list_sku(channel, tee, external_variant_id="111")
    return channel, tee


def deliver(n: int, first: int = 1) -> None:
    from django.test import TestCase

    client = Client()
    for k in range(first, first + n):
        body = shopify_order(k, [(k * 10, "TEE", 111, 1)])
        with TestCase.captureOnCommitCallbacks(execute=True):  # what a real commit would run
            assert post(client, "shop", body, shopify_headers("shh", body, "orders/create")).status_code == 200


def test_a_burst_of_webhooks_queues_one_drain_and_the_drain_applies_them_all(inbound_queue, shop):
    _, tee = shop
    deliver(5)
    assert queued_tasks(inbound_queue) == ["inbound.drain"]  # one message for the burst, not five
    assert inbound.drain() == 5
    assert StockLevel.objects.get(sku=tee).on_hand == 95
    assert set(InboundEvent.objects.values_list("status", flat=True)) == {InboundStatus.PROCESSED}
    # The drain cleared the flag when it started: the next delivery wakes a drain of its own.
    deliver(1, first=6)
    assert queued_tasks(inbound_queue) == ["inbound.drain", "inbound.drain"]
    assert inbound.drain() == 1


def test_a_drain_takes_the_oldest_first_and_hands_over_after_its_share(inbound_queue):
    events = pending_events(3)
    InboundEvent.objects.filter(pk=events[2].pk).update(received_at=timezone.now() - timedelta(hours=1))
    assert inbound.drain(max_events=1) == 1
    assert InboundEvent.objects.get(pk=events[2].pk).status != InboundStatus.PENDING  # the oldest went first
    assert InboundEvent.objects.filter(status=InboundStatus.PENDING).count() == 2
    assert queued_tasks(inbound_queue) == ["inbound.drain"]  # the rest is woken, not dropped
    assert inbound.drain() == 2


@pytest.mark.django_db(transaction=True)
def test_an_event_another_transaction_holds_is_skipped_not_waited_for(inbound_queue):
    held, release = threading.Event(), threading.Event()
    first, second = pending_events(2)

    def hold():
        from django.db import transaction

        with transaction.atomic():
            list(InboundEvent.objects.select_for_update().filter(pk=first.pk))
            held.set()
            release.wait(30)
        connection.close()

    thread = threading.Thread(target=hold)
    thread.start()
    try:
        assert held.wait(10)
        assert inbound.drain() == 1  # the held one is another drain's: skipped, not applied twice or waited for
        assert InboundEvent.objects.get(pk=second.pk).status != InboundStatus.PENDING
        assert InboundEvent.objects.get(pk=first.pk).status == InboundStatus.PENDING
    finally:
        release.set()
        thread.join()


@pytest.mark.django_db(transaction=True)
def test_concurrent_drains_apply_each_event_exactly_once(inbound_queue, shop):
    _, tee = shop
    deliver(40)
    counts: list[int] = []

    def run():
        counts.append(inbound.drain())

    assert run_together(run, run, run, run) == []
    assert sum(counts) == 40
    assert StockLevel.objects.get(sku=tee).on_hand == 60
    assert StockLedgerEntry.objects.filter(sku=tee, kind=LedgerKind.COMMIT).count() == 40


def test_a_lost_drain_is_woken_once_not_every_sweep(inbound_queue):
    pending_events(3)
    assert inbound.sweep_inbox() == 1  # nothing in the queue: the drain's message was lost
    assert queued_tasks(inbound_queue) == ["inbound.drain"]
    assert inbound.sweep_inbox() == 0  # a drain is waiting now: a backlog, not a loss
    assert queued_tasks(inbound_queue) == ["inbound.drain"]


def test_a_flag_left_by_a_lost_message_does_not_stop_the_sweeper(inbound_queue):
    pending_events(1)
    get_redis().set(inbound.DRAIN_WAKE_KEY, 1)  # a drain "queued", but its message never reached the broker
    assert inbound.sweep_inbox() == 1
    assert queued_tasks(inbound_queue) == ["inbound.drain"]


def test_fresh_events_are_left_to_the_drain_their_receipt_woke(inbound_queue):
    pending_events(2, age=timedelta(seconds=0))
    assert inbound.sweep_inbox() == 0


def test_overdue_retries_are_re_enqueued_whatever_the_queue_holds(inbound_queue):
    (event,) = pending_events(1)
    InboundEvent.objects.filter(pk=event.pk).update(status=InboundStatus.RETRYING,
                                                    next_attempt_at=timezone.now() - timedelta(seconds=30))
    for _ in range(5):
        inbound._enqueue(999_999)  # an unrelated backlog
    assert inbound.sweep_inbox() == 1


def test_replayed_events_are_drained(inbound_queue):
    (event,) = pending_events(1)
    InboundEvent.objects.filter(pk=event.pk).update(status=InboundStatus.DEAD)
    from django.test import TestCase

    with TestCase.captureOnCommitCallbacks(execute=True):
        assert inbound.replay([event.pk]) == 1
    assert queued_tasks(inbound_queue) == ["inbound.drain"]
    assert inbound.drain() == 1


def test_an_empty_queue_has_depth_zero_not_unknown(inbound_queue):
    # Redis deletes an empty list: the queue "does not exist", which means nothing waits in it.
    from hub.broker import queue_depth

    assert queue_depth("inbound") == 0
    inbound._enqueue(1)
    assert queue_depth("inbound") == 1
