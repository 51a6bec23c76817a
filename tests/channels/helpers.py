"""Test-side senders built from each platform's documented signing algorithm (not from our verifier)."""

from __future__ import annotations

import base64
import hashlib
import hmac
import json
import uuid
from datetime import UTC, datetime

from standardwebhooks.webhooks import Webhook

from channels_app.models import Channel, ChannelLocation, Listing
from inventory_app.models import Location, Sku

STANDARD_SECRET = "whsec_" + base64.b64encode(b"tally-test-secret-0123456789abcdef").decode()


def shopify_headers(secret: str, body: bytes, topic: str, webhook_id: str | None = None) -> dict[str, str]:
    digest = base64.b64encode(hmac.new(secret.encode(), body, hashlib.sha256).digest()).decode()
    return {"X-Shopify-Hmac-Sha256": digest, "X-Shopify-Topic": topic, "X-Shopify-Shop-Domain": "demo.myshopify.com",
            "X-Shopify-API-Version": "2026-01", "X-Shopify-Webhook-Id": webhook_id or str(uuid.uuid4()),
            "X-Shopify-Triggered-At": datetime.now(UTC).isoformat(), "Content-Type": "application/json"}


def woo_headers(secret: str, body: bytes, topic: str, resource_id) -> dict[str, str]:
    digest = base64.b64encode(hmac.new(secret.encode(), body, hashlib.sha256).digest()).decode()
    resource, event = topic.split(".")
    return {"X-WC-Webhook-Source": "https://shop.example/", "X-WC-Webhook-Topic": topic,
            "X-WC-Webhook-Resource": resource, "X-WC-Webhook-Event": event, "X-WC-Webhook-Signature": digest,
            "X-WC-Webhook-ID": "7", "X-WC-Webhook-Delivery-ID": hashlib.md5(f"7{resource_id}".encode()).hexdigest(),
            "Content-Type": "application/json"}


def standard_headers(secret: str, body: bytes, msg_id: str | None = None, when: datetime | None = None) -> dict[str, str]:
    msg_id = msg_id or f"msg_{uuid.uuid4().hex}"
    when = when or datetime.now(UTC)
    signature = Webhook(secret).sign(msg_id, when, body.decode())
    return {"webhook-id": msg_id, "webhook-timestamp": str(int(when.timestamp())), "webhook-signature": signature,
            "Content-Type": "application/json"}


def post(client, slug: str, body: bytes, headers: dict[str, str]):
    extra = {f"HTTP_{k.upper().replace('-', '_')}": v for k, v in headers.items() if k.lower() != "content-type"}
    return client.post(f"/webhooks/{slug}/", data=body, content_type=headers.get("Content-Type", "application/json"),
                       **extra)


def make_channel(kind: str, slug: str | None = None, secret: str = "s3cret", **extra) -> Channel:
    return Channel.objects.create(slug=slug or f"{kind}-{uuid.uuid4().hex[:6]}", name=kind, kind=kind,
                                  webhook_secret=secret, **extra)


def list_sku(channel: Channel, sku: Sku, **external) -> Listing:
    return Listing.objects.create(channel=channel, sku=sku, **external)


def map_location(channel: Channel, location: Location, external_id: str, **flags) -> ChannelLocation:
    return ChannelLocation.objects.create(channel=channel, location=location, external_id=external_id, **flags)


def shopify_order(order_id: int, lines: list[tuple[int, str, int, int]]) -> bytes:
    """lines: (line id, sku, variant id, quantity)"""
    return json.dumps({
        "id": order_id, "name": f"#{order_id}", "currency": "USD", "financial_status": "paid",
        "created_at": "2026-11-23T10:00:00Z", "updated_at": "2026-11-23T10:00:00Z", "total_price": "10.00",
        "line_items": [{"id": lid, "variant_id": vid, "product_id": 1, "sku": sku, "quantity": qty, "price": "5.00"}
                       for lid, sku, vid, qty in lines]}).encode()
