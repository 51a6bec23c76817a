"""Push rounds: the channels one sale moved are pushed together (one claim, one snapshot, one record), each
with its own rate limit and failures, against real sandbox servers."""

from __future__ import annotations

import threading
import time

import pytest
from django.db import connection
from django.test.utils import CaptureQueriesContext

from channels_app import outbound
from channels_app.adapters import adapter_for
from channels_app.models import Listing, ListingStatus, PushLog
from inventory_app import stock
from inventory_app.stock import LineRequest
from tests.channels.sandboxed import connect, remote
from tests.factories import make_location, make_sku

pytestmark = pytest.mark.django_db(transaction=True)

KINDS = ["shopify", "woocommerce", "standard"]


def three_channels(skus: dict):
    pairs = [connect(kind, skus) for kind in KINDS]
    for _, sandbox in pairs:
        sandbox.__enter__()
    return pairs


def close(pairs) -> None:
    for _, sandbox in pairs:
        sandbox.__exit__(None, None, None)


def statements(queries, text: str) -> int:
    return sum(text in q["sql"] for q in queries.captured_queries)


def test_a_round_pushes_every_channel_a_sale_moved_with_one_claim_one_stock_read_and_one_record(monkeypatch):
    monkeypatch.setattr(outbound, "RECORD_TOGETHER_SECONDS", 30.0)  # however slowly this machine answers
    wh = make_location()
    tee, cap = make_sku(stock_at={wh: 12}), make_sku(stock_at={wh: 5})
    pairs = three_channels({tee: 0, cap: 0})
    try:
        ids = [channel.pk for channel, _ in pairs]
        outbound.push_channels(ids)
        stock.reserve(lines=[LineRequest(tee.code, 2)])
        with CaptureQueriesContext(connection) as queries:
            summaries = outbound.push_channels(ids)
        assert [summaries[i].pushed for i in ids] == [1, 1, 1]
        assert [remote(sandbox, tee) for _, sandbox in pairs] == [10, 10, 10]
        assert [remote(sandbox, cap) for _, sandbox in pairs] == [5, 5, 5]
        # Channel by channel this was three claims, three stock reads, three records and three history inserts.
        assert statements(queries, "WITH picked AS MATERIALIZED") == 1
        assert statements(queries, "ISOLATION LEVEL REPEATABLE READ") == 1
        assert statements(queries, "SET pushed_version") == 1
        assert statements(queries, f"INSERT INTO {PushLog._meta.db_table}") == 1
        logs = PushLog.objects.filter(listing__sku=tee, version__gt=1)
        assert sorted(logs.values_list("channel_id", flat=True)) == sorted(ids)
        assert not Listing.objects.filter(channel_id__in=ids, desired_version__gt=0,
                                          pushed_version__lt=1).exists()
    finally:
        close(pairs)


def test_a_failing_channel_and_a_slow_one_do_not_hold_back_the_others_records():
    wh = make_location()
    tee = make_sku(stock_at={wh: 12})
    pairs = three_channels({tee: 0})
    (ok, ok_box), (failing, failing_box), (slow, slow_box) = pairs
    try:
        ids = [ok.pk, failing.pk, slow.pk]
        outbound.push_channels(ids)
        stock.reserve(lines=[LineRequest(tee.code, 3)])
        failing_box.state.set_faults({"error_rate": 1.0})
        slow_box.state.set_faults({"latency_ms": 2500})
        done: dict = {}

        def push_round() -> None:
            try:
                done.update(outbound.push_channels(ids))
            finally:
                connection.close()  # this thread's own

        round_ = threading.Thread(target=push_round)
        round_.start()
        deadline = time.monotonic() + 2.0
        recorded = False
        while time.monotonic() < deadline and not recorded:
            recorded = Listing.objects.filter(channel=ok, pushed_quantity=9).exists()
            time.sleep(0.02)
        still_waiting_for_slow = round_.is_alive()
        round_.join(timeout=30)
        assert recorded and still_waiting_for_slow  # recorded while the slow channel had not answered yet
        assert (remote(ok_box, tee), remote(slow_box, tee), remote(failing_box, tee)) == (9, 9, 12)
        assert Listing.objects.get(channel=slow).pushed_quantity == 9
        failed = Listing.objects.get(channel=failing)
        assert failed.status == ListingStatus.RETRYING and failed.last_error and failed.lease_owner is None
        assert (done[ok.pk].pushed, done[slow.pk].pushed, done[failing.pk].failed) == (1, 1, 1)
        failing.refresh_from_db()
        ok.refresh_from_db()
        assert failing.last_push_error and not ok.last_push_error
    finally:
        close(pairs)


def test_a_channel_out_of_tokens_waits_for_them_while_the_others_are_pushed():
    wh = make_location()
    tee = make_sku(stock_at={wh: 12})
    throttled, throttled_box = connect("shopify", {tee: 0}, channel_fields={
        "rate_limit_capacity": 1, "rate_limit_per_second": "0.2"})
    free, free_box = connect("woocommerce", {tee: 0})
    with throttled_box, free_box:
        outbound.push_channels([throttled.pk, free.pk])  # spends the throttled channel's one token
        stock.reserve(lines=[LineRequest(tee.code, 4)])
        summaries = outbound.push_channels([throttled.pk, free.pk])
        assert summaries[free.pk].pushed == 1 and remote(free_box, tee) == 8
        assert summaries[throttled.pk].claimed == 0 and summaries[throttled.pk].retry_in > 1
        listing = Listing.objects.get(channel=throttled)
        assert listing.lease_owner is None and listing.pushed_version < listing.desired_version
        assert remote(throttled_box, tee) == 12


def test_an_adapter_used_from_several_threads_sends_each_on_that_threads_own_session():
    """requests.Session is not thread-safe: a round sends to its channels from a pool of threads."""
    wh = make_location()
    channel, sandbox = connect("shopify", {make_sku(stock_at={wh: 1}): 0})
    with sandbox:
        adapter = adapter_for(channel)
        seen = []
        thread = threading.Thread(target=lambda: seen.append(adapter.session))
        thread.start()
        thread.join()
        assert adapter.session is adapter.session
        assert seen[0] is not adapter.session
