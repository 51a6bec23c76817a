"""Hub channels wired to real sandbox platform servers (HTTP on loopback), for push and e2e tests."""

from __future__ import annotations

import uuid

from channels_app.models import Channel, Listing
from channels_app.ratelimit import limiter_for
from channels_app.sandbox import start_sandbox
from hub.redis import get_redis
from tests.channels.helpers import STANDARD_SECRET

LOCATION = 65_000_001
CREDENTIALS = {
    "shopify": {"access_token": "shpat_test"},
    "woocommerce": {"consumer_key": "ck_test", "consumer_secret": "cs_test"},
    "bigcommerce": {"access_token": "bc_test", "store_hash": "abc123"},
    "amazon": {"access_token": "Atza|test", "seller_id": "A1SELLER", "marketplace_id": "ATVPDKIKX0DER"},
    "standard": {"signing_secret": STANDARD_SECRET},
}
SECRETS = {"shopify": "shh", "woocommerce": "wc", "bigcommerce": STANDARD_SECRET, "amazon": "relay",
           "standard": STANDARD_SECRET}


def connect(kind: str, skus: dict, *, hub_url: str | None = None, slug: str | None = None, plan=None,
            channel_fields: dict | None = None, credentials: dict | None = None):
    """Start a sandbox for ``kind`` holding ``skus`` ({Sku: remote quantity}) and a hub channel listing them."""
    slug = slug or f"{kind}-{uuid.uuid4().hex[:6]}"
    creds = {**CREDENTIALS[kind], **(credentials or {})}
    sandbox = start_sandbox(kind, hub_url=hub_url, channel_slug=slug, webhook_secret=SECRETS[kind],
                            credentials=CREDENTIALS[kind], plan=plan)
    rows = [{"sku": sku.code, "quantity": qty, **({"location_id": LOCATION} if kind in ("shopify", "bigcommerce") else {})}
            for sku, qty in skus.items()]
    catalog = {row["sku"]: row for row in sandbox.state.set_catalog(rows)}
    channel = Channel.objects.create(
        slug=slug, name=slug, kind=kind, api_base_url=sandbox.url, credentials=creds, webhook_secret=SECRETS[kind],
        publish_location_id=str(LOCATION) if kind in ("shopify", "bigcommerce") else "", **(channel_fields or {}))
    get_redis().delete(limiter_for(channel).key)
    for sku, _ in skus.items():
        row = catalog[sku.code]
        Listing.objects.create(
            channel=channel, sku=sku, external_product_id=str(row.get("product_id") or ""),
            external_variant_id=str(row.get("variant_id") or "") if kind != "woocommerce" else "",
            external_inventory_item_id=str(row.get("inventory_item_id") or ""))
    return channel, sandbox


def remote(sandbox, sku) -> int:
    return sandbox.state.quantity(sku.code, LOCATION if sandbox.kind in ("shopify", "bigcommerce") else None)
