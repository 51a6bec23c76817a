"""Catalog and price publishing by watermark: nothing skipped, nothing sent twice in effect."""

from __future__ import annotations

from datetime import timedelta
from decimal import Decimal

import pytest
from django.utils import timezone

from channels_app.models import PublishCursor
from channels_app.publishing import SETTLE_SECONDS, publish
from inventory_app.models import Price, Sku
from tests.channels.sandboxed import connect
from tests.factories import make_location, make_sku

pytestmark = pytest.mark.django_db(transaction=True)


def remote_price(sandbox, sku) -> str:
    return next(i["price"] for i in sandbox.state.snapshot()["inventory"] if i["sku"] == sku.code)


def test_many_rows_with_one_timestamp_are_all_published_across_pages():
    wh = make_location()
    skus = [make_sku(stock_at={wh: 1}) for _ in range(230)]
    channel, sandbox = connect("woocommerce", {s: 0 for s in skus})
    stamp = timezone.now() - timedelta(minutes=1)
    for i, sku in enumerate(skus):
        Price.objects.create(sku=sku, amount=Decimal("10.00") + i, valid_from=stamp - timedelta(days=1))
    Price.objects.update(updated_at=stamp)  # every row shares one timestamp
    with sandbox:
        run = publish(channel, "prices", page_size=100)
        assert run.count_in == 230 and run.count_out == 230 and run.ok
        assert all(remote_price(sandbox, s) == f"{Decimal('10.00') + i:.2f}" for i, s in enumerate(skus))
        cursor = PublishCursor.objects.get(channel=channel, stream="prices")
        assert cursor.updated_at == stamp and cursor.last_id == Price.objects.order_by("-id").first().id
        again = publish(channel, "prices", page_size=100)
        assert again.count_in == 0 and again.count_out == 0  # nothing is sent twice


def test_rows_still_settling_wait_for_the_next_run():
    wh = make_location()
    tee = make_sku(stock_at={wh: 1})
    channel, sandbox = connect("standard", {tee: 0})
    Price.objects.create(sku=tee, amount=Decimal("5.00"), valid_from=timezone.now() - timedelta(days=1))
    now = timezone.now()
    with sandbox:
        first = publish(channel, "prices", now=now)
        assert first.count_in == 0  # updated_at is within the settle window of this run
        later = publish(channel, "prices", now=now + timedelta(seconds=SETTLE_SECONDS + 1))
        assert later.count_in == 1 and remote_price(sandbox, tee) == "5.00"


def test_a_failed_page_keeps_the_cursor_and_the_next_run_resumes_there():
    wh = make_location()
    skus = [make_sku(stock_at={wh: 1}) for _ in range(120)]
    channel, sandbox = connect("woocommerce", {s: 0 for s in skus})
    old = timezone.now() - timedelta(minutes=5)
    for i, sku in enumerate(skus):
        Price.objects.create(sku=sku, amount=Decimal("20.00") + i, valid_from=old)
    Price.objects.update(updated_at=old)
    with sandbox:
        sandbox.state.set_faults({"error_rate": 1.0})
        failed = publish(channel, "prices", page_size=50)
        assert not failed.ok and failed.count_out == 0
        assert PublishCursor.objects.get(channel=channel, stream="prices").last_id == 0
        sandbox.state.set_faults({})
        done = publish(channel, "prices", page_size=50)
        assert done.ok and done.count_out == 120
        assert remote_price(sandbox, skus[-1]) == f"{Decimal('20.00') + 119:.2f}"


def test_future_dated_price_goes_live_on_its_date_by_itself():
    wh = make_location()
    tee = make_sku(stock_at={wh: 1})
    channel, sandbox = connect("shopify", {tee: 0})
    t0 = timezone.now()
    Price.objects.create(sku=tee, amount=Decimal("30.00"), valid_from=t0 - timedelta(days=1))
    Price.objects.create(sku=tee, amount=Decimal("24.00"), valid_from=t0 + timedelta(hours=1))  # a sale next hour
    with sandbox:
        publish(channel, "prices", now=t0 + timedelta(seconds=10))
        assert remote_price(sandbox, tee) == "30.00"
        publish(channel, "prices", now=t0 + timedelta(minutes=59))
        assert remote_price(sandbox, tee) == "30.00"
        run = publish(channel, "prices", now=t0 + timedelta(hours=1, seconds=1))
        assert run.count_out == 1 and remote_price(sandbox, tee) == "24.00"


def test_catalog_names_and_active_flags():
    wh = make_location()
    tee = make_sku(stock_at={wh: 1})
    channel, sandbox = connect("woocommerce", {tee: 0})
    Sku.objects.filter(pk=tee.pk).update(name="Black tee", is_active=False,
                                          updated_at=timezone.now() - timedelta(minutes=1))
    with sandbox:
        run = publish(channel, "catalog")
        assert run.count_out == 1
        item = next(i for i in sandbox.state.snapshot()["inventory"] if i["sku"] == tee.code)
        assert item["name"] == "Black tee" and item["active"] is False


def test_platform_without_catalog_support_says_so_in_the_run_record():
    wh = make_location()
    tee = make_sku(stock_at={wh: 1})
    channel, sandbox = connect("bigcommerce", {tee: 0})
    Price.objects.create(sku=tee, amount=Decimal("9.99"), valid_from=timezone.now() - timedelta(days=1))
    Price.objects.update(updated_at=timezone.now() - timedelta(minutes=1))
    with sandbox:
        run = publish(channel, "prices")
        assert run.ok is False and run.count_rejected == 1
        assert "not supported" in run.details["errors"][0]


def test_a_batch_costing_more_calls_than_the_bucket_holds_is_split_not_refused_for_ever():
    """A Shopify store publishes a price per call, 20 items a batch: against a bucket of 9 the batch's 20 tokens were
    never there at once, and every run failed it with "rate limited" (review finding, 2026-12-07)."""
    wh = make_location()
    skus = [make_sku(stock_at={wh: 1}) for _ in range(20)]
    channel, sandbox = connect("shopify", {s: 0 for s in skus}, credentials={"api": "rest"},
                               channel_fields={"rate_limit_capacity": 10, "rate_limit_per_second": 20})
    for i, sku in enumerate(skus):
        Price.objects.create(sku=sku, amount=Decimal("5.00") + i, valid_from=timezone.now() - timedelta(days=1))
    Price.objects.update(updated_at=timezone.now() - timedelta(minutes=1))
    with sandbox:
        run = publish(channel, "prices")
        assert run.ok and run.count_out == 20, run.details
        assert all(remote_price(sandbox, s) == f"{Decimal('5.00') + i:.2f}" for i, s in enumerate(skus))
        assert sandbox.state.snapshot()["injected"]["429"] == 0


def test_a_row_a_standard_channel_refuses_fails_the_run_not_silently():
    """A Standard channel answers a catalog batch per row, as a stock batch: a SKU it does not have was counted as
    published (review note, 2026-12-08). The run records the refusal."""
    wh = make_location()
    tee, ghost = make_sku(stock_at={wh: 1}), make_sku(stock_at={wh: 1})
    channel, sandbox = connect("standard", {tee: 0, ghost: 0})
    sandbox.state.set_catalog([{"sku": tee.code, "quantity": 0}])  # the channel no longer has the other
    Sku.objects.filter(pk__in=[tee.pk, ghost.pk]).update(name="Renamed", updated_at=timezone.now() - timedelta(minutes=1))
    with sandbox:
        run = publish(channel, "catalog")
        assert run.count_rejected == 2 and run.count_out == 0, (run.count_out, run.count_rejected)
        assert "unknown_sku" in str(run.details)
