"""The sync dashboard view through Django's test client: access, badges, numbers, chart, links, JSON refresh."""

from __future__ import annotations

from datetime import timedelta

import pytest
from django.utils import timezone

from channels_app import selectors
from channels_app.models import InboundEvent, InboundStatus, Listing, ListingStatus, PushLog
from channels_app.ratelimit import limiter_for
from hub import dashboard
from hub.models import JobRun
from hub.redis import get_redis
from tests.channels.helpers import list_sku, make_channel
from tests.factories import make_location, make_sku

pytestmark = pytest.mark.django_db


@pytest.fixture
def staff(client, django_user_model):
    user = django_user_model.objects.create_user(username="ops", password="pw-ops-1", is_staff=True,
                                                 is_superuser=True)
    client.force_login(user)
    return client


@pytest.fixture
def channels():
    wh = make_location()
    tee, mug = make_sku("DASH-TEE", stock_at={wh: 5}), make_sku("DASH-MUG", stock_at={wh: 3})
    now = timezone.now()
    good = make_channel("shopify", slug="dash-good")
    ok = list_sku(good, tee, external_variant_id="1")
    Listing.objects.filter(pk=ok.pk).update(pushed_version=1, status=ListingStatus.OK, pushed_at=now)
    for minutes_ago, lag in ((1, 100), (1, 300), (2, 900), (30, 5000)):
        PushLog.objects.create(listing=ok, channel=good, version=1, quantity=5, ok=True, lag_ms=lag,
                               created_at=now - timedelta(minutes=minutes_ago, seconds=10))
    JobRun.objects.create(job="reconcile", channel=good, finished_at=now, ok=True, count_in=4, variance_percent="2.500")
    bad = make_channel("woocommerce", slug="dash-bad", last_push_error="PUT /products/9: 401 Unauthorized",
                       last_push_error_at=now)
    failed = list_sku(bad, mug, external_product_id="9")
    Listing.objects.filter(pk=failed.pk).update(status=ListingStatus.FAILED, attempts=1,
                                                last_error="PUT /products/9: 401 Unauthorized")
    InboundEvent.objects.create(channel=bad, dedup_key="d1", topic="order.created", body="{}",
                                status=InboundStatus.PARKED, last_error="No listing on dash-bad for sku X")
    off = make_channel("amazon", slug="dash-off", enabled=False)
    for channel in (good, bad, off):
        get_redis().delete(limiter_for(channel).key)
    return {"good": good, "bad": bad, "off": off, "ok_listing": ok, "failed_listing": failed, "mug": mug}


def test_anonymous_and_non_staff_are_sent_to_the_login(client, django_user_model):
    for url in ("/admin/dashboard/", "/admin/dashboard/data.json", "/admin/dashboard/flower/"):
        response = client.get(url)
        assert response.status_code == 302 and "/admin/login/" in response["Location"]
    client.force_login(django_user_model.objects.create_user(username="shopper", password="pw-shop-1"))
    response = client.get("/admin/dashboard/")
    assert response.status_code == 302 and "/admin/login/" in response["Location"]


def test_dashboard_shows_each_channel_with_badge_reason_and_numbers(staff, channels):
    response = staff.get("/admin/dashboard/")
    assert response.status_code == 200
    html = response.content.decode()
    assert '<div class="module tally-card" id="channel-dash-good" data-channel="dash-good" data-health="green">' in html
    assert '<div class="module tally-card" id="channel-dash-bad" data-channel="dash-bad" data-health="red">' in html
    assert '<div class="module tally-card" id="channel-dash-off" data-channel="dash-off" data-health="grey">' in html
    assert "1 listing(s) failed: PUT /products/9: 401 Unauthorized" in html
    assert "in sync" in html and "disabled" in html
    assert "1 green" in html and "1 red" in html and "1 grey" in html
    # lag percentiles: 5 min window holds 100, 300, 900 ms; the hour adds 5000 ms (of four, the median is the lower
    # middle one, as PostgreSQL's percentile_disc has it)
    assert '<tr class="lag-5m"><th>last 5 min</th><td>300 ms</td><td>900 ms</td><td>900 ms</td><td>3</td></tr>' in html
    assert '<tr class="lag-1h"><th>last hour</th><td>300 ms</td><td>5.0 s</td><td>5.0 s</td><td>4</td></tr>' in html
    assert "<svg" in html and 'class="p99"' in html and "no acknowledged pushes in the last hour" in html
    assert "2.50% variance" in html
    assert "22 / 22 tokens (100%)" in html  # woocommerce bucket untouched: full (25, less the margin)
    assert "PUT /products/9: 401 Unauthorized" in html
    assert "No listing on dash-bad for sku X" in html
    # extends the admin's base: header, breadcrumbs, the refresh script, no external assets
    assert 'id="site-name"' in html and "Sync dashboard" in html and "fetch(" in html
    assert "https://" not in html.split("<body", 1)[1].split("tally-dashboard", 1)[0]


def test_drill_down_links_open_filtered_admin_pages(staff, channels):
    bad, failed, mug = channels["bad"], channels["failed_listing"], channels["mug"]
    html = staff.get("/admin/dashboard/").content.decode()
    links = {
        "inbox": f"/admin/channels_app/inboundevent/?channel__id__exact={bad.pk}&amp;attention=yes",
        "failed": f"/admin/channels_app/listing/?channel__id__exact={bad.pk}&amp;status__exact=failed",
        "history": f"/admin/channels_app/pushlog/?listing__id__exact={failed.pk}",
        "ledger": f"/admin/inventory_app/stockledgerentry/?sku__id__exact={mug.pk}",
    }
    for name, link in links.items():
        assert link in html, name
        response = staff.get(link.replace("&amp;", "&"))
        assert response.status_code == 200, (name, response.status_code)
        assert "?e=1" not in response.get("Location", ""), name
    inbox = staff.get(links["inbox"].replace("&amp;", "&")).content.decode()
    assert "order.created" in inbox and "Replay selected parked / failed / dead events" in inbox
    ledger = staff.get(links["ledger"].replace("&amp;", "&")).content.decode()
    assert "DASH-MUG" in ledger and "DASH-TEE" not in ledger


def test_data_json_refresh_carries_numbers_and_rendered_body(staff, channels):
    response = staff.get("/admin/dashboard/data.json")
    assert response.status_code == 200 and "no-store" in response["Cache-Control"]
    data = response.json()
    by_slug = {c["channel"]: c for c in data["channels"]}
    assert by_slug["dash-bad"]["health"] == "red" and by_slug["dash-bad"]["failed_listings"] == 1
    assert by_slug["dash-bad"]["inbox_dead_lettered"] == 1
    assert by_slug["dash-good"]["sync_lag"]["5m"] == {"count": 3, "p50_ms": 300, "p95_ms": 900, "p99_ms": 900}
    assert by_slug["dash-good"]["reconcile"]["variance_percent"] == 2.5
    assert by_slug["dash-off"]["health"] == "grey"
    assert len(by_slug["dash-good"]["lag_buckets"]) == 60
    assert 'id="channel-dash-bad"' in data["html"] and "<svg" in data["html"]
    assert data["totals"] == {"green": 1, "amber": 0, "red": 1, "grey": 1}


def test_lag_buckets_per_minute():
    now = timezone.now().replace(second=59, microsecond=500_000)  # the chart's minutes are UTC minutes
    channel = make_channel("shopify")
    listing = list_sku(channel, make_sku())
    for seconds_ago, lag in ((5, 10), (20, 30), (50, 20), (125, 400), (3700, 9)):
        PushLog.objects.create(listing=listing, channel=channel, version=1, quantity=1, ok=True, lag_ms=lag,
                               created_at=now - timedelta(seconds=seconds_ago))
    PushLog.objects.create(listing=listing, channel=channel, version=1, quantity=1, ok=False, error="x",
                           created_at=now - timedelta(seconds=3))
    buckets = dashboard.lag_buckets(channel, now)
    assert len(buckets) == 60 and buckets[-1]["minute"] == 0
    assert buckets[-1] == {"minute": 0, "count": 3, "p50": 20, "p95": 30, "p99": 30}
    assert buckets[-3] == {"minute": -2, "count": 1, "p50": 400, "p95": 400, "p99": 400}
    assert sum(b["count"] for b in buckets) == 4  # failures and pushes older than the hour are not lag samples
    svg = str(dashboard.lag_chart(buckets))
    assert svg.startswith("<svg") and svg.count("<polyline") == 0 and svg.count("<circle") == 6


def test_a_busy_channels_hour_is_counted_whole_and_its_rolled_up_minutes_read_from_the_rollup():
    """The dashboard read at most 20,000 of the hour's push rows, in no order: a channel pushed 25 times a second
    showed 20,000 pushes for the hour and percentiles of whichever rows came first (noted as not mended,
    2026-12-07). The database sums the hour up now; the chart's minutes come from the rollups where the roll-up
    has been, from the history after it."""
    from channels_app.models import SyncLagMinute
    from channels_app.rollups import roll_up_sync_lag

    now = timezone.now().replace(second=30, microsecond=0)
    channel = make_channel("shopify")
    listing = list_sku(channel, make_sku())
    rows = [PushLog(listing=listing, channel=channel, version=1, quantity=1, ok=True, lag_ms=1 + i % 100,
                    created_at=now - timedelta(minutes=3, seconds=i % 25)) for i in range(24_000)]
    rows += [PushLog(listing=listing, channel=channel, version=1, quantity=1, ok=True, lag_ms=1000,
                     created_at=now - timedelta(seconds=5)) for _ in range(10)]
    PushLog.objects.bulk_create(rows, batch_size=5000)
    status = selectors.sync_status(channel, now=now)
    assert status["sync_lag"]["1h"] == {"count": 24_010, "p50_ms": 51, "p95_ms": 96, "p99_ms": 100}
    buckets = dashboard.lag_buckets(channel, now)
    assert sum(b["count"] for b in buckets) == 24_010
    assert buckets[-4] == {"minute": -3, "count": 24_000, "p50": 50, "p95": 95, "p99": 99}
    assert buckets[-1] == {"minute": 0, "count": 10, "p50": 1000, "p95": 1000, "p99": 1000}

    assert roll_up_sync_lag(now=now) >= 1  # minutes up to the last complete one are rolled up
    assert SyncLagMinute.objects.filter(channel=channel).count() == 1
    PushLog.objects.filter(channel=channel, lag_ms__lt=1000).delete()  # the history's retention, say
    assert dashboard.lag_buckets(channel, now)[-4] == buckets[-4]  # read from the rollup
    assert dashboard.lag_buckets(channel, now)[-1] == buckets[-1]  # not rolled up yet: from the history


def test_rate_limit_headroom_reads_the_shared_bucket():
    channel = make_channel("shopify", rate_limit_capacity=40)
    limiter = limiter_for(channel)
    redis = get_redis()
    redis.delete(limiter.key)
    assert dashboard.rate_limit_headroom(channel)["tokens"] == 36  # the burst less its margin
    seconds, micros = redis.time()
    now_ms = int(seconds) * 1000 + int(micros) // 1000
    redis.hset(limiter.key, mapping={"tokens": 3, "ts": now_ms})
    headroom = dashboard.rate_limit_headroom(channel)
    assert 3 <= headroom["tokens"] < 5 and headroom["capacity"] == 36
    limiter.block_for(30)
    blocked = dashboard.rate_limit_headroom(channel)
    assert blocked["tokens"] == 0 and 25 < blocked["blocked_seconds"] <= 30
    redis.delete(limiter.key)


def test_admin_index_links_to_dashboard_and_flower(staff, monkeypatch):
    monkeypatch.setenv("FLOWER_URL", "http://flower.example:5555/")
    html = staff.get("/admin/").content.decode()
    assert 'href="/admin/dashboard/"' in html and 'href="/admin/dashboard/flower/"' in html
    assert "Sync dashboard" in html and "Flower" in html
    response = staff.get("/admin/dashboard/flower/")
    assert response.status_code == 302 and response["Location"] == "http://flower.example:5555/"
