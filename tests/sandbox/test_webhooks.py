"""Webhook deliveries checked the way a receiver must: signature first, with each platform's algorithm."""

from __future__ import annotations

import base64
import hashlib
import hmac

import pytest
import requests
from standardwebhooks import Webhook, WebhookVerificationError

SECRET = "shpss_app_secret"
WHSEC = "whsec_" + base64.b64encode(b"0123456789abcdef0123456789abcdef").decode()


def hmac_b64(secret: str, body: bytes) -> str:
    return base64.b64encode(hmac.new(secret.encode(), body, hashlib.sha256).digest()).decode()


def lower(headers: dict) -> dict:
    return {k.lower(): v for k, v in headers.items()}


def order(box, lines, **extra):
    return requests.post(f"{box.url}/_sandbox/orders", json={"lines": lines, **extra})


def test_shopify_order_refund_and_level_webhooks(sandbox, receiver):
    box = sandbox("shopify", hub_url=receiver.url, channel_slug="demo-shopify", webhook_secret=SECRET)
    box.state.set_catalog([{"sku": "MUG", "quantity": 3, "inventory_item_id": 5, "location_id": 9, "price": "12.50"}])
    reply = order(box, [{"sku": "MUG", "quantity": 2}])
    assert reply.status_code == 201 and reply.json()["delivered"] == 200
    order_id = reply.json()["order_id"]

    call = receiver.wait_for(1)[0]
    headers = lower(call.headers)
    assert call.path == "/webhooks/demo-shopify/"
    assert hmac.compare_digest(headers["x-shopify-hmac-sha256"], hmac_b64(SECRET, call.body))
    assert headers["x-shopify-topic"] == "orders/create"
    assert headers["x-shopify-shop-domain"] == "demo-shopify.myshopify.com"
    for name in ("x-shopify-api-version", "x-shopify-webhook-id", "x-shopify-triggered-at", "x-shopify-event-id"):
        assert headers[name]
    body = call.json()
    assert body["id"] == order_id and body["name"].startswith("#") and body["financial_status"] == "paid"
    assert body["total_price"] == "25.00" and body["currency"] == "USD"
    line = body["line_items"][0]
    assert {k: line[k] for k in ("sku", "quantity", "price")} == {"sku": "MUG", "quantity": 2, "price": "12.50"}
    assert line["variant_id"] and line["product_id"] and line["id"]
    assert box.state.quantity("MUG") == 1

    refused = order(box, [{"sku": "MUG", "quantity": 2}])
    assert refused.status_code == 409 and refused.json()["error"] == "insufficient_stock"
    assert box.state.quantity("MUG") == 1

    refund = requests.post(
        f"{box.url}/_sandbox/refund",
        json={"order_id": order_id, "lines": [{"line_id": line["id"], "quantity": 1}], "restock": True},
    )
    assert refund.status_code == 201
    body = receiver.wait_for(2)[1].json()
    assert lower(receiver.calls[1].headers)["x-shopify-topic"] == "refunds/create"
    assert body["order_id"] == order_id and body["restock"] is True
    assert body["refund_line_items"][0] == {
        **body["refund_line_items"][0],
        "line_item_id": line["id"],
        "quantity": 1,
        "restock_type": "return",
        "location_id": 9,
    }
    assert box.state.quantity("MUG") == 2

    requests.post(f"{box.url}/_sandbox/inventory_level", json={"sku": "MUG", "quantity": 30})
    level = receiver.wait_for(3)[2]
    assert lower(level.headers)["x-shopify-topic"] == "inventory_levels/update"
    assert {k: level.json()[k] for k in ("inventory_item_id", "location_id", "available")} == {
        "inventory_item_id": 5,
        "location_id": 9,
        "available": 30,
    }

    requests.post(f"{box.url}/_sandbox/cancel", json={"order_id": order_id})
    cancelled = receiver.wait_for(4)[3]
    assert lower(cancelled.headers)["x-shopify-topic"] == "orders/cancelled" and cancelled.json()["cancelled_at"]


def test_woocommerce_order_webhook(sandbox, receiver):
    box = sandbox("woocommerce", hub_url=receiver.url, channel_slug="woo", webhook_secret=SECRET)
    box.state.set_catalog([{"sku": "TEE-S", "quantity": 4, "product_id": 20, "variant_id": 21, "price": "9.90"}])
    order_id = order(box, [{"sku": "TEE-S", "quantity": 3}]).json()["order_id"]
    call = receiver.wait_for(1)[0]
    headers = lower(call.headers)
    assert hmac.compare_digest(headers["x-wc-webhook-signature"], hmac_b64(SECRET, call.body))
    assert headers["x-wc-webhook-topic"] == "order.created"
    assert headers["x-wc-webhook-resource"] == "order" and headers["x-wc-webhook-event"] == "created"
    assert headers["x-wc-webhook-source"] == box.url + "/"
    assert headers["x-wc-webhook-id"] and headers["x-wc-webhook-delivery-id"]
    body = call.json()
    assert body["id"] == order_id and body["date_modified_gmt"] and body["status"] == "processing"
    assert body["line_items"][0] == {
        **body["line_items"][0],
        "product_id": 20,
        "variation_id": 21,
        "quantity": 3,
        "sku": "TEE-S",
        "price": "9.90",
        "subtotal": "29.70",
        "total": "29.70",
    }

    requests.post(f"{box.url}/_sandbox/cancel", json={"order_id": order_id})
    cancelled = receiver.wait_for(2)[1]
    assert lower(cancelled.headers)["x-wc-webhook-topic"] == "order.updated" and cancelled.json()["status"] == "cancelled"
    assert box.state.quantity("TEE-S") == 4


def test_bigcommerce_webhook_is_standard_signed(sandbox, receiver):
    box = sandbox(
        "bigcommerce", hub_url=receiver.url, channel_slug="bc", webhook_secret=WHSEC, credentials={"store_hash": "abc123"}
    )
    box.state.set_catalog([{"sku": "BOOT", "quantity": 5, "product_id": 77, "variant_id": 701}])
    order_id = order(box, [{"sku": "BOOT", "quantity": 1}]).json()["order_id"]
    requests.post(f"{box.url}/_sandbox/inventory_level", json={"sku": "BOOT", "quantity": 8})
    created, level = receiver.wait_for(2)
    for call in (created, level):
        Webhook(WHSEC).verify(call.body, call.headers)
        assert lower(call.headers)["x-tally-hook-token"] == WHSEC
    body = created.json()
    assert set(body) == {"scope", "store_id", "data", "hash", "created_at", "producer"}
    assert body["scope"] == "store/order/created" and body["producer"] == "stores/abc123"
    assert body["data"]["type"] == "order" and body["data"]["id"] == order_id
    assert body["data"]["items"][0]["sku"] == "BOOT" and body["data"]["items"][0]["quantity"] == 1
    inventory = level.json()
    assert inventory["scope"] == "store/product/inventory/updated"
    assert inventory["data"]["inventory"] == {
        **inventory["data"]["inventory"],
        "product_id": 77,
        "method": "absolute",
        "value": 8,
    }


def test_standard_order_webhook_verifies_with_library(sandbox, receiver):
    box = sandbox("standard", hub_url=receiver.url, channel_slug="pos", webhook_secret=WHSEC)
    box.state.set_catalog([{"sku": "POS-1", "quantity": 2, "price": "3.00"}])
    order(box, [{"sku": "POS-1", "quantity": 2}])
    call = receiver.wait_for(1)[0]
    payload = Webhook(WHSEC).verify(call.body, call.headers)
    assert payload["type"] == "order.created" and payload["timestamp"]
    assert payload["data"]["lines"][0] == {**payload["data"]["lines"][0], "sku": "POS-1", "quantity": 2, "price": "3.00"}
    assert lower(call.headers)["webhook-id"].startswith("msg_")
    with pytest.raises(WebhookVerificationError):
        Webhook("whsec_" + base64.b64encode(b"x" * 32).decode()).verify(call.body, call.headers)


def test_amazon_notification_envelope(sandbox, receiver):
    box = sandbox(
        "amazon", hub_url=receiver.url, channel_slug="amz", webhook_secret="relay-token", credentials={"seller_id": "A2S"}
    )
    box.state.set_catalog([{"sku": "LAMP", "quantity": 2}])
    order_id = order(box, [{"sku": "LAMP", "quantity": 1}]).json()["order_id"]
    call = receiver.wait_for(1)[0]
    assert lower(call.headers)["authorization"] == "Bearer relay-token"
    body = call.json()
    assert body["NotificationType"] == "ORDER_CHANGE" and body["EventTime"]
    assert body["NotificationMetadata"]["NotificationId"]
    change = body["Payload"]["OrderChangeNotification"]
    assert change["AmazonOrderId"] == order_id and change["SellerId"] == "A2S"
    assert change["Summary"]["OrderItems"][0]["SellerSKU"] == "LAMP" and change["Summary"]["OrderItems"][0]["Quantity"] == 1


def test_duplicates_share_the_delivery_id(sandbox, receiver):
    box = sandbox("shopify", hub_url=receiver.url, channel_slug="s", webhook_secret=SECRET)
    box.state.set_catalog([{"sku": "A", "quantity": 10}])
    reply = order(box, [{"sku": "A", "quantity": 1}], duplicates=2)
    assert reply.status_code == 201
    assert box.state.flush(5)
    calls = receiver.wait_for(3)
    assert len(calls) == 3
    assert len({lower(c.headers)["x-shopify-webhook-id"] for c in calls}) == 1
    assert len({c.body for c in calls}) == 1
    assert box.state.quantity("A") == 9, "duplicates are deliveries, not sales"
    assert requests.get(f"{box.url}/_sandbox/state").json()["webhooks_sent"] == 3


def test_reorder_window_shuffles_and_flush_waits(sandbox, receiver):
    box = sandbox("standard", hub_url=receiver.url, channel_slug="pos", webhook_secret=WHSEC, plan={"seed": 7})
    box.state.set_catalog([{"sku": "A", "quantity": 100}])
    requests.post(f"{box.url}/_sandbox/faults", json={"reorder_window_ms": 200})
    order_ids = [order(box, [{"sku": "A", "quantity": 1}]).json()["order_id"] for _ in range(12)]
    assert len(receiver.calls) == 0, "deliveries are held for the window"
    flushed = requests.post(f"{box.url}/_sandbox/flush", json={"timeout": 5})
    assert flushed.json() == {"flushed": True, "pending": 0}
    received = [Webhook(WHSEC).verify(c.body, c.headers)["data"]["order_id"] for c in receiver.wait_for(12)]
    assert sorted(received) == sorted(order_ids)
    assert received != order_ids


def test_duplicate_rate_and_delay(sandbox, receiver):
    box = sandbox("woocommerce", hub_url=receiver.url, channel_slug="w", webhook_secret=SECRET)
    box.state.set_catalog([{"sku": "A", "quantity": 100}])
    box.state.set_faults(duplicate_rate=1.0)
    for _ in range(3):
        order(box, [{"sku": "A", "quantity": 1}])
    assert box.state.flush(5)
    assert len(receiver.wait_for(6)) == 6
    box.state.set_faults()
    started = receiver.calls[-1]
    reply = order(box, [{"sku": "A", "quantity": 1}], delay_ms=300)
    assert reply.json()["delivered"] is None
    assert receiver.calls[-1] is started
    assert box.state.flush(5) and len(receiver.calls) == 7


def test_arbitrary_signed_webhook(sandbox, receiver):
    box = sandbox("shopify", hub_url=receiver.url, channel_slug="s", webhook_secret=SECRET)
    reply = requests.post(f"{box.url}/_sandbox/webhook", json={"topic": "products/update", "payload": {"id": 1, "title": "x"}})
    assert reply.status_code == 201 and reply.json()["delivered"] == 200
    call = receiver.wait_for(1)[0]
    assert call.json() == {"id": 1, "title": "x"}
    assert lower(call.headers)["x-shopify-topic"] == "products/update"
    assert hmac.compare_digest(lower(call.headers)["x-shopify-hmac-sha256"], hmac_b64(SECRET, call.body))


@pytest.mark.parametrize(
    ("kind", "secret", "expected"),
    [
        ("woocommerce", SECRET, ["order.created", "order.updated", "order.updated", "product.updated"]),
        ("bigcommerce", WHSEC, ["store/order/created", "store/order/refund/created", "store/order/statusUpdated",
                                "store/product/inventory/updated"]),
        ("amazon", "relay", ["ORDER_CHANGE", "ORDER_CHANGE", "LISTINGS_ITEM_MFN_QUANTITY_CHANGE"]),
        ("standard", WHSEC, ["order.created", "order.refunded", "order.cancelled", "inventory.level"]),
    ],
)  # fmt: skip
def test_each_kind_names_its_lifecycle_events(sandbox, receiver, kind, secret, expected):
    box = sandbox(kind, hub_url=receiver.url, channel_slug=kind, webhook_secret=secret)
    box.state.set_catalog([{"sku": "A", "quantity": 5}])
    placed = order(box, [{"sku": "A", "quantity": 2}]).json()
    line_id = placed["lines"][0]["line_id"]
    refund = requests.post(
        f"{box.url}/_sandbox/refund", json={"order_id": placed["order_id"], "lines": [{"line_id": line_id, "quantity": 1}]}
    )
    assert refund.status_code == 201
    assert requests.post(f"{box.url}/_sandbox/cancel", json={"order_id": placed["order_id"]}).status_code == 200
    # Sold 2, refunded 1 with restock, cancelled with restock of the rest: all 5 are back.
    assert box.state.quantity("A") == 5
    requests.post(f"{box.url}/_sandbox/inventory_level", json={"sku": "A", "quantity": 4})
    assert box.state.flush(5)
    calls = receiver.wait_for(len(expected))

    def topic(call):
        headers = lower(call.headers)
        body = call.json()
        return headers.get("x-wc-webhook-topic") or body.get("scope") or body.get("NotificationType") or body.get("type")

    assert [topic(call) for call in calls] == expected
    assert box.state.quantity("A") == 4


def test_failed_deliveries_are_retried_when_the_plan_says_so(sandbox, receiver):
    box = sandbox("shopify", hub_url=receiver.url, channel_slug="s", webhook_secret=SECRET,
                  plan={"webhook_retries": 2, "webhook_retry_backoff_s": 0.1})  # fmt: skip
    box.state.set_catalog([{"sku": "A", "quantity": 5}])
    receiver.status = 503
    reply = order(box, [{"sku": "A", "quantity": 1}])
    assert reply.json()["delivered"] == 503
    receiver.status = 200
    assert box.state.flush(5)
    first, retry = receiver.wait_for(2)
    assert len(receiver.calls) == 2
    assert lower(first.headers)["x-shopify-webhook-id"] == lower(retry.headers)["x-shopify-webhook-id"]
    assert first.body == retry.body
    record = requests.get(f"{box.url}/_sandbox/deliveries").json()["deliveries"][0]
    assert record["attempts"] == 2 and record["statuses"] == [503, 200]
