"""Inbound mends from a review (2026-12-08): a refund to two locations, a cancel after a refund without restock, two
WooCommerce updates within a second, a long topic on an unreadable body."""

from __future__ import annotations

import json

import pytest
from django.db.models import Sum
from django.test import Client

from channels_app import inbound
from channels_app.models import InboundEvent, InboundStatus
from inventory_app.models import StockLevel
from tests.channels.helpers import list_sku, make_channel, map_location, post, shopify_headers, shopify_order, woo_headers
from tests.factories import make_location, make_sku

pytestmark = pytest.mark.django_db


@pytest.fixture
def setup(db):
    channel = make_channel("shopify", slug="shop", secret="shh")
    wh = make_location("wh-main", priority=1)
    tee = make_sku("TEE", stock_at={wh: 20})
    list_sku(channel, tee, external_variant_id="111", external_inventory_item_id="9001")
    map_location(channel, wh, "L-WH")
    return channel, wh, tee


def deliver(client, topic, payload, webhook_id=None):
    body = json.dumps(payload).encode()
    return post(client, "shop", body, shopify_headers("shh", body, topic, webhook_id=webhook_id))


def process_all():
    return [inbound.process_event(pk) for pk in InboundEvent.objects.order_by("id").values_list("id", flat=True)]


def on_hand(sku):
    return StockLevel.objects.filter(sku=sku).aggregate(s=Sum("on_hand"))["s"]


def test_refund_of_one_line_restocked_at_two_locations_restocks_both(setup):
    """One Shopify refund returning 2 units of line 51 to the store and 1 to the warehouse (two refund_line_items
    naming the same line_item_id, each with its location): all 3 units must come back."""
    channel, wh, tee = setup
    store = make_location("store-1", priority=5)
    map_location(channel, store, "L-STORE")
    client = Client()
    deliver(client, "orders/create", json.loads(shopify_order(5, [(51, "TEE", 111, 3)])))
    refund = {"id": 900, "order_id": 5, "created_at": "2026-11-23T11:00:00Z", "restock": True,
              "refund_line_items": [
                  {"line_item_id": 51, "quantity": 2, "restock_type": "return", "location_id": "L-STORE"},
                  {"line_item_id": 51, "quantity": 1, "restock_type": "return", "location_id": "L-WH"}]}
    deliver(client, "refunds/create", refund)
    assert process_all() == ["processed", "processed"]
    assert StockLevel.objects.get(sku=tee, location=store).on_hand == 2
    assert on_hand(tee) == 20  # 20 - 3 sold + 3 restocked


def test_cancel_after_a_no_restock_refund_does_not_put_the_refunded_units_back(setup):
    """A unit refunded without restock (damaged, kept by the customer) is gone; cancelling the order afterwards
    (Shopify sends orders/cancelled after the refund) must restock only the units not already refunded."""
    channel, wh, tee = setup
    client = Client()
    deliver(client, "orders/create", json.loads(shopify_order(7, [(71, "TEE", 111, 3)])))
    deliver(client, "refunds/create", {"id": 950, "order_id": 7, "restock": False, "refund_line_items": [
        {"line_item_id": 71, "quantity": 1, "restock_type": "no_restock", "location_id": "L-WH"}]})
    deliver(client, "orders/cancelled", {"id": 7})
    assert process_all() == ["processed", "processed", "processed"]
    assert on_hand(tee) == 19  # 17 after the sale; 2 come back, the refunded-without-restock unit does not


def test_signed_unreadable_body_with_a_long_topic_is_recorded_not_a_500(setup):
    body = b'{"id": 1, "line_items": ['
    headers = shopify_headers("shh", body, "orders/create/" + "x" * 200)
    client = Client(raise_request_exception=False)
    response = post(client, "shop", body, headers)
    assert response.status_code == 400
    assert InboundEvent.objects.filter(status=InboundStatus.FAILED).exists()


def test_woocommerce_two_updates_in_the_same_second_are_both_kept(db):
    """processing -> cancelled within one second: same date_modified_gmt (WooCommerce stamps to the second), same
    delivery id; the cancel is a different delivery and must not be dropped as a duplicate."""
    make_channel("woocommerce", slug="woo", secret="wc")
    client = Client()
    for status in ("processing", "cancelled"):
        body = json.dumps({"id": 56, "status": status, "date_modified_gmt": "2026-11-23T10:00:00",
                           "line_items": []}).encode()
        assert post(client, "woo", body, woo_headers("wc", body, "order.updated", 56)).status_code == 200
    assert InboundEvent.objects.count() == 2
