"""Channels out with real workers: a pusher SIGKILLed mid-push, and a one-minute platform outage."""

from __future__ import annotations

import time

import pytest
from django.db.models import F

from channels_app.models import Listing, ListingStatus
from channels_app.rules import desired_quantities
from inventory_app import stock
from inventory_app.stock import LineRequest
from tests.channels.sandboxed import connect, remote
from tests.e2e.stack import Beat, Worker, purge_queues, wait_until
from tests.factories import make_location, make_sku

pytestmark = [pytest.mark.django_db(transaction=True), pytest.mark.slow]


def converged(channel, sandbox) -> bool:
    listings = list(Listing.objects.filter(channel=channel).select_related("sku"))
    wanted = desired_quantities(channel, listings)
    return all(remote(sandbox, x.sku) == wanted[x.id] and x.pushed_version >= x.desired_version for x in listings)


def test_pusher_killed_mid_push_converges_without_duplicated_deltas():
    purge_queues()
    wh = make_location()
    tee = make_sku(stock_at={wh: 50})
    channel, sandbox = connect("shopify", {tee: 50})
    worker = Worker("pusher", concurrency=1, TALLY_PUSH_LEASE_SECONDS="3")
    beat = Beat()
    try:
        with sandbox:
            wait_until(lambda: converged(channel, sandbox), timeout=90, message="first sync")
            sandbox.state.set_faults({"latency_ms": 4000})
            stock.reserve(lines=[LineRequest(tee.code, 7)])
            wait_until(lambda: sandbox.state.snapshot()["max_in_flight"] >= 1 and sandbox.state.in_flight >= 1,
                       timeout=20, message="a push in flight")
            assert worker.kill_children()
            sandbox.state.set_faults({})
            stock.reserve(lines=[LineRequest(tee.code, 2)])  # more change while the lease is orphaned
            wait_until(lambda: converged(channel, sandbox), timeout=60, message="convergence after the kill")
            # Absolute values, never deltas: a repeated push cannot take the 7 twice.
            assert remote(sandbox, tee) == 41
            assert Listing.objects.get(channel=channel).status == ListingStatus.OK
    finally:
        beat.stop()
        worker.stop()


def test_one_minute_outage_with_orders_flowing_heals_by_itself():
    purge_queues()
    wh = make_location()
    skus = [make_sku(stock_at={wh: 40}) for _ in range(5)]
    channel, sandbox = connect("woocommerce", {s: 40 for s in skus})
    worker = Worker("outage", concurrency=2)
    beat = Beat()
    try:
        with sandbox:
            wait_until(lambda: converged(channel, sandbox), timeout=90, message="first sync")
            sandbox.state.set_faults({"down_for": 60})
            started = time.monotonic()
            while time.monotonic() - started < 60:
                stock.reserve(lines=[LineRequest(skus[int(time.monotonic()) % 5].code, 1)])
                time.sleep(1.5)
            assert Listing.objects.filter(channel=channel, desired_version__gt=F("pushed_version")).exists()
            assert not Listing.objects.filter(channel=channel, status=ListingStatus.FAILED).exists()
            faults_stopped = time.monotonic()
            wait_until(lambda: converged(channel, sandbox), timeout=90, interval=0.5,
                       message="convergence after the outage")
            healed_in = time.monotonic() - faults_stopped
            print(f"converged {healed_in:.1f}s after the outage ended")
            assert not Listing.objects.filter(channel=channel, status=ListingStatus.FAILED).exists()
    finally:
        beat.stop()
        worker.stop()
