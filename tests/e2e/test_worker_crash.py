"""At-least-once with real Celery workers: SIGKILL mid-processing, the event is redone and applied once."""

from __future__ import annotations

import json
import threading

import pytest
from django.db import connection, transaction
from django.test import Client

from channels_app import inbound
from channels_app.models import InboundEvent, InboundStatus
from inventory_app.models import LedgerKind, StockLedgerEntry, StockLevel
from tests.channels.helpers import list_sku, make_channel, post, shopify_headers, shopify_order
from tests.e2e.stack import Worker, purge_queues, wait_until
from tests.factories import make_location, make_sku

pytestmark = [pytest.mark.django_db(transaction=True), pytest.mark.slow]


@pytest.fixture
def shop():
    channel = make_channel("shopify", slug="shop", secret="shh")
    wh = make_location("wh-main")
    tee = make_sku("TEE", stock_at={wh: 10})
    list_sku(channel, tee, external_variant_id="111")
    purge_queues()
    return channel, tee


def hold_stock_lock(tee, release: threading.Event, held: threading.Event):
    """Hold the stock row lock from another connection, so the worker blocks inside its transaction."""
    with transaction.atomic():
        list(StockLevel.objects.select_for_update().filter(sku=tee))
        held.set()
        release.wait(60)
    connection.close()


def waiting_on_lock() -> bool:
    with connection.cursor() as cursor:
        cursor.execute("SELECT count(*) FROM pg_stat_activity WHERE wait_event_type = 'Lock' AND datname = current_database()")
        return cursor.fetchone()[0] > 0


def test_pool_process_killed_mid_event_is_redelivered_and_applied_once(shop):
    channel, tee = shop
    release, held = threading.Event(), threading.Event()
    locker = threading.Thread(target=hold_stock_lock, args=(tee, release, held))
    locker.start()
    held.wait(10)
    worker = Worker("crash", concurrency=2)
    try:
        body = shopify_order(1, [(11, "TEE", 111, 3)])
        assert post(Client(), "shop", body, shopify_headers("shh", body, "orders/create")).status_code == 200
        wait_until(waiting_on_lock, message="the worker to block inside its transaction")
        killed = worker.kill_children()
        assert killed
        release.set()
        locker.join()
        # task_reject_on_worker_lost puts the message back; a fresh pool process applies it.
        wait_until(lambda: InboundEvent.objects.filter(status=InboundStatus.PROCESSED).exists(), timeout=60,
                   message="the redelivered event to be processed")
    finally:
        release.set()
        worker.stop()
    assert StockLevel.objects.get(sku=tee).on_hand == 7
    assert StockLedgerEntry.objects.filter(sku=tee, kind=LedgerKind.COMMIT).count() == 1
    assert "WorkerLostError" in worker.log_path.read_text() or "exited with 'signal 9" in worker.log_path.read_text()


def test_whole_worker_killed_before_ack_the_sweeper_recovers_the_event(shop):
    channel, tee = shop
    release, held = threading.Event(), threading.Event()
    locker = threading.Thread(target=hold_stock_lock, args=(tee, release, held))
    locker.start()
    held.wait(10)
    worker = Worker("doomed", concurrency=1)
    body = shopify_order(2, [(21, "TEE", 111, 2)])
    post(Client(), "shop", body, shopify_headers("shh", body, "orders/create"))
    wait_until(waiting_on_lock, message="the worker to block inside its transaction")
    worker.kill()  # parent and children: the message stays unacked in the broker
    release.set()
    locker.join()
    assert InboundEvent.objects.get().status == InboundStatus.PENDING
    survivor = Worker("survivor", concurrency=1)
    try:
        # Redis keeps the dead worker's unacked message until the visibility timeout: the sweeper re-enqueues it
        # rather than wait. RabbitMQ requeues it as soon as the dead consumer's connection closes: nothing is
        # missing, and the sweeper must not add a second message.
        from django.conf import settings

        on_rabbitmq = settings.CELERY_BROKER_URL.startswith("amqp")
        assert inbound.sweep_inbox(older_than_seconds=0) == (0 if on_rabbitmq else 1)
        wait_until(lambda: InboundEvent.objects.filter(status=InboundStatus.PROCESSED).exists(), timeout=60,
                   message="the swept event to be processed")
    finally:
        survivor.stop()
    assert StockLevel.objects.get(sku=tee).on_hand == 8
    assert StockLedgerEntry.objects.filter(sku=tee, kind=LedgerKind.COMMIT).count() == 1
    assert json.loads(InboundEvent.objects.get().body)["id"] == 2
