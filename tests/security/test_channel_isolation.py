"""A channel's webhooks act on that channel's listings, orders and locations only.

Channel A is a legitimate, correctly signed sender that names channel B's things (variant ids, inventory item ids,
a SKU mapped only on B, B's order ids, B's store): nothing of B's changes, and A's events park or wait.
"""

from __future__ import annotations

import json
from datetime import UTC, datetime

import pytest
from django.db.models import Sum
from django.test import Client

from channels_app import inbound
from channels_app.models import InboundEvent, InboundStatus, Listing
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
)
from tests.factories import make_location, make_sku

pytestmark = pytest.mark.django_db

B_SECRET = "whsec_" + "QkJCQkJCQkJCQkJCQkJCQkJCQkJCQkJCQkJCQkJCQkI="  # another standard-webhooks secret


@pytest.fixture
def world():
    wh = make_location("iso-wh", priority=1)
    store_b = make_location("iso-store-b", priority=5)
    tee = make_sku("ISO-TEE", stock_at={wh: 20})
    mug = make_sku("ISO-MUG", stock_at={wh: 10, store_b: 4})  # listed on B only
    shop_a = make_channel("shopify", slug="shop-a", secret="secret-a")
    shop_b = make_channel("shopify", slug="shop-b", secret="secret-b")
    list_sku(shop_a, tee, external_variant_id="111", external_inventory_item_id="9001")
    list_sku(shop_b, tee, external_variant_id="211", external_inventory_item_id="9201")
    list_sku(shop_b, mug, external_variant_id="222", external_inventory_item_id="9202", external_sku="B-MUG")
    map_location(shop_a, wh, "A-WH")
    map_location(shop_b, wh, "B-WH")
    pos_a = make_channel("standard", slug="pos-a", secret=STANDARD_SECRET)
    pos_b = make_channel("standard", slug="pos-b", secret=B_SECRET)
    list_sku(pos_a, tee)
    list_sku(pos_b, mug)
    map_location(pos_b, store_b, "STORE-B", channel_owns_stock=True)
    return {"wh": wh, "store_b": store_b, "tee": tee, "mug": mug, "shop_a": shop_a, "shop_b": shop_b,
            "pos_a": pos_a, "pos_b": pos_b}


def shopify(slug: str, secret: str, topic: str, payload) -> int:
    body = payload if isinstance(payload, bytes) else json.dumps(payload).encode()
    return post(Client(), slug, body, shopify_headers(secret, body, topic)).status_code


def process(channel) -> list[str]:
    return [inbound.process_event(pk) for pk in InboundEvent.objects.filter(channel=channel).order_by("id")
            .values_list("id", flat=True)]


def snapshot() -> tuple:
    levels = tuple(StockLevel.objects.order_by("id").values_list("sku__code", "location__code", "on_hand", "reserved"))
    return levels, StockLedgerEntry.objects.count()


def on_hand(sku) -> int:
    return StockLevel.objects.filter(sku=sku).aggregate(s=Sum("on_hand"))["s"]


def test_an_order_naming_another_channels_variants_and_skus_is_parked(world):
    before = snapshot()
    # B's variant id; B's inventory-item-less variant of a SKU mapped only on B; B's external SKU; the Tally code.
    for order_id, lines in ((501, [(5011, "", 211, 1)]), (502, [(5021, "", 222, 1)]), (503, [(5031, "B-MUG", 999, 1)]),
                            (504, [(5041, "ISO-MUG", 998, 1)])):
        assert shopify("shop-a", "secret-a", "orders/create", shopify_order(order_id, lines)) == 200
    assert process(world["shop_a"]) == ["parked"] * 4
    assert snapshot() == before
    assert not Order.objects.exists()
    assert all("No listing on shop-a" in e.last_error for e in InboundEvent.objects.filter(channel=world["shop_a"]))


def test_an_inventory_level_naming_another_channels_item_is_parked(world):
    before = snapshot()
    payload = {"inventory_item_id": 9202, "location_id": "B-WH", "available": 0, "updated_at": "2026-11-23T10:00:00Z"}
    assert shopify("shop-a", "secret-a", "inventory_levels/update", payload) == 200
    assert process(world["shop_a"]) == ["parked"]
    assert snapshot() == before
    assert Listing.objects.get(channel=world["shop_b"], sku=world["mug"]).remote_quantity is None


def test_a_cancel_for_another_channels_order_leaves_it_alone(world):
    assert shopify("shop-b", "secret-b", "orders/create", shopify_order(700, [(7001, "", 211, 3)])) == 200
    assert process(world["shop_b"]) == ["processed"]
    after_sale = snapshot()
    assert on_hand(world["tee"]) == 17

    assert shopify("shop-a", "secret-a", "orders/cancelled", {"id": 700, "restock": True}) == 200
    event = InboundEvent.objects.get(channel=world["shop_a"])
    for _ in range(inbound.WAIT_FOR_ORDER_ATTEMPTS):
        inbound.process_event(event.pk)
    event.refresh_from_db()
    assert event.status == InboundStatus.PARKED and "gave up waiting" in event.last_error
    assert Order.objects.get(channel="shop-b", external_id="700").status != "cancelled"
    assert snapshot() == after_sale


def test_a_refund_for_another_channels_order_restocks_nothing(world):
    assert shopify("shop-b", "secret-b", "orders/create", shopify_order(710, [(7101, "", 211, 2)])) == 200
    process(world["shop_b"])
    after_sale = snapshot()
    refund = {"id": 9710, "order_id": 710, "created_at": "2026-11-23T11:00:00Z", "restock": True,
              "refund_line_items": [{"line_item_id": 7101, "quantity": 2, "restock_type": "return", "location_id": "B-WH"}]}
    assert shopify("shop-a", "secret-a", "refunds/create", refund) == 200
    statuses = process(world["shop_a"])
    assert statuses[0] in (InboundStatus.RETRYING, InboundStatus.PARKED)
    assert snapshot() == after_sale
    assert OrderLine.objects.get(external_id="7101").restocked_quantity == 0


def test_a_level_for_another_channels_owned_location_is_not_applied(world):
    before = snapshot()
    now = datetime.now(UTC)
    for sku in ("ISO-TEE", "ISO-MUG"):  # A's own SKU and B's, both at B's store
        body = json.dumps({"type": "inventory.level", "timestamp": int(now.timestamp()), "data": {
            "sku": sku, "location": "STORE-B", "available": 0, "as_of": now.isoformat()}}).encode()
        assert post(Client(), "pos-a", body, standard_headers(STANDARD_SECRET, body)).status_code == 200
    statuses = process(world["pos_a"])
    assert statuses[1] == InboundStatus.PARKED  # B's SKU: no listing on A
    assert snapshot() == before  # A's SKU: remembered as what A shows, never a count at B's store
    assert StockLevel.objects.get(sku=world["mug"], location=world["store_b"]).on_hand == 4


def test_a_channel_cannot_sign_for_another(world):
    body = shopify_order(720, [(7201, "", 211, 1)])
    assert shopify("shop-b", "secret-a", "orders/create", body) == 401  # A's secret on B's URL
    level = json.dumps({"type": "inventory.level", "timestamp": int(datetime.now(UTC).timestamp()), "data": {
        "sku": "ISO-MUG", "location": "STORE-B", "available": 0, "as_of": datetime.now(UTC).isoformat()}}).encode()
    assert post(Client(), "pos-b", level, standard_headers(STANDARD_SECRET, level)).status_code == 401
    assert not InboundEvent.objects.filter(channel__in=[world["shop_b"], world["pos_b"]]).exists()
