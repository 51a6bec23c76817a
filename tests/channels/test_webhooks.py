"""Receipt: verified, stored once, answered; bad deliveries refused with a reason and recorded."""

from __future__ import annotations

import json

import pytest
from django.test import Client

from channels_app import inbound
from channels_app.models import Channel, InboundEvent, InboundStatus, WebhookRejection
from inventory_app.models import Order, OrderLine, StockLedgerEntry, StockLevel
from tests.channels.helpers import (
    STANDARD_SECRET,
    list_sku,
    make_channel,
    map_location,
    post,
    shopify_headers,
    shopify_order,
    standard_headers,
    woo_headers,
)
from tests.factories import make_location, make_sku

pytestmark = pytest.mark.django_db


@pytest.fixture
def client():
    return Client()


@pytest.fixture
def shop(db):
    channel = make_channel("shopify", slug="shop", secret="shh")
    wh = make_location("wh-main", priority=1)
    tee = make_sku("TEE", stock_at={wh: 10})
    list_sku(channel, tee, external_variant_id="111", external_inventory_item_id="9001")
    return channel


def test_valid_delivery_is_stored_once_and_duplicates_answer_200(client, shop):
    body = shopify_order(1001, [(1, "TEE", 111, 2)])
    headers = shopify_headers("shh", body, "orders/create", webhook_id="wh-1")
    first = post(client, "shop", body, headers)
    assert first.status_code == 200 and first.json()["status"] == "accepted"
    again = post(client, "shop", body, headers)
    assert again.status_code == 200 and again.json()["status"] == "duplicate"
    assert InboundEvent.objects.filter(channel=shop).count() == 1
    event = InboundEvent.objects.get()
    assert event.topic == "orders/create" and event.status == InboundStatus.PENDING
    assert event.headers["x-shopify-webhook-id"] == "wh-1" and "x-shopify-hmac-sha256" not in event.headers


@pytest.mark.parametrize(
    "slug,mutate,status,reason",
    [
        ("nobody", None, 404, "unknown_channel"),
        ("shop", lambda h: h.update({"X-Shopify-Hmac-Sha256": "AAAA"}), 401, "bad_signature"),
        ("shop", lambda h: h.pop("X-Shopify-Hmac-Sha256"), 401, "missing_header"),
    ],
)
def test_refusals_have_a_reason_and_are_recorded(client, shop, slug, mutate, status, reason):
    body = shopify_order(1002, [(1, "TEE", 111, 1)])
    headers = shopify_headers("shh", body, "orders/create")
    if mutate:
        mutate(headers)
    response = post(client, slug, body, headers)
    assert response.status_code == status and response.json()["error"] == reason
    assert WebhookRejection.objects.filter(reason=reason, channel_slug=slug).count() == 1
    assert InboundEvent.objects.count() == 0


def test_posts_to_many_unknown_slugs_add_no_metric_label_or_log_key_each(client, shop):
    """Anyone can post to any slug: a label of the webhook counter and a log-throttle key per unknown slug grew every
    gunicorn process, and every metrics scrape, without bound (review finding, 2026-12-07). Each is still recorded,
    under its own slug, in the rejections."""
    from channels_app import metrics

    def labels() -> set[str]:
        return {sample.labels["channel"] for family in metrics.WEBHOOKS.collect() for sample in family.samples}

    body = shopify_order(1004, [(1, "TEE", 111, 1)])
    before_labels, before_keys = labels(), set(inbound._last_log)
    for n in range(40):
        response = post(client, f"nobody-{n}", body, shopify_headers("shh", body, "orders/create"))
        assert response.status_code == 404
    assert len(labels() - before_labels) <= 1  # one label for them all
    assert len(set(inbound._last_log) - before_keys) <= 1
    assert WebhookRejection.objects.filter(reason="unknown_channel", channel_slug__startswith="nobody-").count() == 40


def test_disabled_channel_is_refused(client, shop):
    Channel.objects.filter(pk=shop.pk).update(enabled=False)
    body = shopify_order(1003, [(1, "TEE", 111, 1)])
    assert post(client, "shop", body, shopify_headers("shh", body, "orders/create")).status_code == 403


def test_a_known_channel_takes_one_statement_and_a_change_behind_its_copy_is_still_seen(client, shop):
    """After the first delivery a process answers from its copy of the channel in one INSERT that checks
    the channel row; an update that skips save() (so updated_at stays) or a new secret is still honoured."""
    from django.db import connection
    from django.test.utils import CaptureQueriesContext

    first = shopify_order(1010, [(1, "TEE", 111, 1)])
    assert post(client, "shop", first, shopify_headers("shh", first, "orders/create")).status_code == 200
    second = shopify_order(1011, [(1, "TEE", 111, 1)])
    with CaptureQueriesContext(connection) as queries:
        assert post(client, "shop", second, shopify_headers("shh", second, "orders/create")).json()["status"] == "accepted"
    assert len(queries) == 1 and queries[0]["sql"].startswith("INSERT")

    shop.webhook_secret = "rotated"
    shop.save()
    third = shopify_order(1012, [(1, "TEE", 111, 1)])
    assert post(client, "shop", third, shopify_headers("rotated", third, "orders/create")).status_code == 200

    Channel.objects.filter(pk=shop.pk).update(enabled=False)
    fourth = shopify_order(1013, [(1, "TEE", 111, 1)])
    assert post(client, "shop", fourth, shopify_headers("rotated", fourth, "orders/create")).status_code == 403
    assert InboundEvent.objects.filter(channel=shop).count() == 3


def test_the_receipts_adapter_is_built_once_per_copy_of_the_channel(client, shop):
    from channels_app import inbound

    for order_id in (1020, 1021):
        body = shopify_order(order_id, [(1, "TEE", 111, 1)])
        assert post(client, "shop", body, shopify_headers("shh", body, "orders/create")).status_code == 200
    copy, adapter = inbound._channel_cache["shop"]
    assert adapter.channel is copy
    shop.webhook_secret = "rotated"
    shop.save()
    for order_id in (1022, 1023):  # the first takes the full path and a new copy; the second the new copy's adapter
        body = shopify_order(order_id, [(1, "TEE", 111, 1)])
        assert post(client, "shop", body, shopify_headers("rotated", body, "orders/create")).status_code == 200
    renewed_copy, renewed = inbound._channel_cache["shop"]
    assert renewed is not adapter and renewed.channel is renewed_copy
    assert renewed.channel.webhook_secret == "rotated"
    assert InboundEvent.objects.filter(channel=shop).count() == 4


def test_signed_but_broken_json_is_recorded_as_failed_and_400(client, shop):
    body = b'{"id": 1, "line_items": ['
    response = post(client, "shop", body, shopify_headers("shh", body, "orders/create"))
    assert response.status_code == 400 and response.json()["error"] == "bad_payload"
    event = InboundEvent.objects.get()
    assert event.status == InboundStatus.FAILED and "JSON" in event.last_error


def test_oversized_body_is_413(client, shop):
    body = b'{"pad": "' + b"x" * (inbound.MAX_BODY_BYTES + 10) + b'"}'
    response = post(client, "shop", body, shopify_headers("shh", body, "orders/create"))
    assert response.status_code == 413
    assert WebhookRejection.objects.filter(reason="too_large").exists()


def test_woocommerce_creation_ping_is_answered(client):
    make_channel("woocommerce", slug="woo", secret="wc")
    response = client.post("/webhooks/woo/", data="webhook_id=12", content_type="application/x-www-form-urlencoded")
    assert response.status_code == 200 and InboundEvent.objects.count() == 0


def test_woocommerce_dedup_uses_resource_and_modification_time(client):
    make_channel("woocommerce", slug="woo", secret="wc")
    for modified in ("2026-11-23T10:00:00", "2026-11-23T10:00:00", "2026-11-23T10:00:05"):
        body = json.dumps({"id": 55, "status": "processing", "date_modified_gmt": modified, "line_items": []}).encode()
        # Same delivery id for all three: WooCommerce's id collides within a second.
        post(client, "woo", body, woo_headers("wc", body, "order.updated", 55))
    assert InboundEvent.objects.count() == 2


def test_standard_stale_timestamp_is_refused(client):
    from datetime import UTC, datetime, timedelta

    make_channel("standard", slug="pos", secret=STANDARD_SECRET)
    body = json.dumps({"type": "order.created", "timestamp": 0, "data": {}}).encode()
    headers = standard_headers(STANDARD_SECRET, body, when=datetime.now(UTC) - timedelta(minutes=10))
    response = post(client, "pos", body, headers)
    assert response.status_code == 401 and response.json()["error"] == "stale_timestamp"


def test_amazon_notification_relay_dedups_on_notification_id(client):
    make_channel("amazon", slug="amzn", secret="relay")
    envelope = {"NotificationType": "ORDER_CHANGE", "EventTime": "2026-11-23T10:00:00Z", "Payload": {},
                "NotificationMetadata": {"NotificationId": "n-1", "PublishTime": "2026-11-23T10:00:00Z"}}
    body = json.dumps(envelope).encode()
    headers = {"Authorization": "Bearer relay", "Content-Type": "application/json"}
    assert post(client, "amzn", body, headers).json()["status"] == "accepted"
    assert post(client, "amzn", body, headers).json()["status"] == "duplicate"
    assert post(client, "amzn", body, {"Authorization": "Bearer wrong"}).status_code == 401


@pytest.mark.parametrize("notification_id", ["n-\u0000-1", "n-\ud800-1"])
def test_a_signed_delivery_whose_ids_the_driver_refuses_is_stored_not_a_500(client, notification_id):
    """The delivery's id comes from the body (Amazon's NotificationId, Standard's type as the topic): a NUL or a lone
    surrogate in it reached the driver, which refused the insert: a 500, nothing stored, and the sender retrying
    for ever (review finding, 2026-12-07). It is stored with the character shown, and still deduplicated."""
    make_channel("amazon", slug="amzn2", secret="relay")
    envelope = {"NotificationType": "ORDER_CHANGE", "EventTime": "2026-11-23T10:00:00Z", "Payload": {},
                "NotificationMetadata": {"NotificationId": notification_id, "PublishTime": "2026-11-23T10:00:00Z"}}
    body = json.dumps(envelope).encode()
    headers = {"Authorization": "Bearer relay", "Content-Type": "application/json"}
    for expected in ("accepted", "accepted", "duplicate"):  # the first through the full path, then the fast one
        if expected == "accepted" and InboundEvent.objects.exists():
            envelope["NotificationMetadata"]["NotificationId"] += "x"
            body = json.dumps(envelope).encode()
        response = post(client, "amzn2", body, headers)
        assert response.status_code == 200 and response.json()["status"] == expected, response.content
    assert InboundEvent.objects.count() == 2 and all("\\" in e.dedup_key for e in InboundEvent.objects.all())


def test_fuzzed_requests_never_5xx_and_never_change_state(client, shop):
    """Random bodies and header sets, none correctly signed: all refused, each counted, nothing applied."""
    from hypothesis import HealthCheck, given, settings
    from hypothesis import strategies as st

    header_names = ["X-Shopify-Hmac-Sha256", "X-Shopify-Topic", "X-Shopify-Webhook-Id", "webhook-id",
                    "webhook-timestamp", "webhook-signature", "Content-Type", "X-WC-Webhook-Signature"]
    before = (StockLevel.objects.get().on_hand, StockLedgerEntry.objects.count(), Order.objects.count())

    @settings(max_examples=150, deadline=None, suppress_health_check=[HealthCheck.function_scoped_fixture])
    @given(body=st.binary(max_size=3000),
           headers=st.dictionaries(st.sampled_from(header_names),
                                   st.text(alphabet=st.characters(min_codepoint=33, max_codepoint=126), max_size=80)),
           slug=st.sampled_from(["shop", "shop", "missing"]))
    def fuzz(body, headers, slug):
        rejections = WebhookRejection.objects.count()
        response = post(client, slug, body, headers)
        assert response.status_code < 500
        assert response.status_code in (401, 404, 400), response.status_code
        assert WebhookRejection.objects.count() == rejections + 1

    fuzz()
    assert (StockLevel.objects.get().on_hand, StockLedgerEntry.objects.count(), Order.objects.count()) == before
    assert InboundEvent.objects.count() == 0
    assert OrderLine.objects.count() == 0


def test_channel_owned_location_mapping_is_scoped_to_the_channel(shop):
    other = make_channel("shopify", slug="other", secret="x")
    store = make_location("store")
    map_location(other, store, "L-1", channel_owns_stock=True)
    with pytest.raises(inbound.ParkEvent):
        inbound._location_for(shop, "L-1")


def test_nul_bytes_in_a_refused_body_are_recorded_not_a_500(client, shop):
    """Found by the fuzzer: PostgreSQL text refuses NUL, which turned a rejection into a 500."""
    body = b'{"a": "\x00\x00"}\x00'
    response = post(client, "shop", body, {"X-Shopify-Hmac-Sha256": "AAAA", "X-Shopify-Topic": "orders/create"})
    assert response.status_code == 401
    assert "\x00" not in WebhookRejection.objects.get().body_excerpt
