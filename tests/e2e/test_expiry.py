"""Reservations past expires_at are released within seconds by the real beat, under load, and the
freed stock reaches the channels."""

from __future__ import annotations

import threading
import time

import pytest
from django.db import connection
from django.db.models import Max

from inventory_app import stock
from inventory_app.models import LedgerKind, Reservation, ReservationStatus, StockLedgerEntry
from inventory_app.stock import LineRequest
from tests.channels.sandboxed import connect, remote
from tests.e2e.stack import Beat, Worker, purge_queues, wait_until
from tests.factories import make_location, make_sku

pytestmark = [pytest.mark.django_db(transaction=True), pytest.mark.slow]


def test_expiry_is_on_time_under_load_and_reaches_channels():
    purge_queues()
    wh = make_location()
    skus = [make_sku(stock_at={wh: 400}) for _ in range(4)]
    channel, sandbox = connect("standard", {s: 400 for s in skus})
    worker = Worker("expiry", concurrency=2)
    beat = Beat()
    stop = threading.Event()

    def load():  # reservations and releases keep the database busy meanwhile
        try:
            while not stop.is_set():
                held = stock.reserve(lines=[LineRequest(skus[0].code, 1)], ttl_seconds=600)
                stock.release(reservation_id=held["id"])
        finally:
            connection.close()

    try:
        with sandbox:
            wait_until(lambda: all(remote(sandbox, s) == 400 for s in skus), timeout=90, message="first sync")
            background = threading.Thread(target=load)
            background.start()
            for i in range(300):
                stock.reserve(lines=[LineRequest(skus[1 + i % 3].code, 1)], ttl_seconds=10)
            wait_until(lambda: all(remote(sandbox, s) == 300 for s in skus[1:]), timeout=90,
                       message="held stock to reach the channel")
            wait_until(lambda: not Reservation.objects.filter(status=ReservationStatus.ACTIVE, expires_at__isnull=False,
                                                              lines__sku__in=skus[1:]).exists(),
                       timeout=90, message="every short reservation to expire")
            stop.set()
            background.join()
            lateness = []
            for reservation in Reservation.objects.filter(status=ReservationStatus.EXPIRED):
                released = StockLedgerEntry.objects.filter(reference=str(reservation.id), kind=LedgerKind.EXPIRE).aggregate(
                    at=Max("recorded_at"))["at"]
                lateness.append((released - reservation.expires_at).total_seconds())
            assert len(lateness) == 300
            print(f"expiry lateness: max {max(lateness):.2f}s, mean {sum(lateness) / len(lateness):.2f}s")
            assert max(lateness) < 3.0  # beat ticks every second; a second or two late at most
            wait_until(lambda: all(remote(sandbox, s) == 400 for s in skus[1:]), timeout=90,
                       message="released stock to reach the channel")
    finally:
        stop.set()
        beat.stop()
        worker.stop()
        time.sleep(0.1)
