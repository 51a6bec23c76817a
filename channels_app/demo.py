"""Demo channels for ``make run``: three sandbox platforms wired to the demo catalogue.

Secrets are random per installation and live only in the database (encrypted); the sandbox
command reads them from there, so they never appear on a command line or in a log.
"""

from __future__ import annotations

import base64
import secrets

from django.db import transaction

from channels_app.models import Channel, ChannelLocation, Listing
from inventory_app.models import Location, Sku

DEMO = [
    # slug, kind, port, name
    ("demo-shopify", "shopify", 9101, "Shopify storefront (sandbox)"),
    ("demo-woo", "woocommerce", 9102, "WooCommerce shop (sandbox)"),
    ("demo-pos", "standard", 9103, "SoHo store POS (sandbox)"),
]
PUBLISH_LOCATION = "65000001"


def _standard_secret() -> str:
    return "whsec_" + base64.b64encode(secrets.token_bytes(32)).decode()


def _credentials(kind: str) -> dict:
    if kind == "shopify":
        return {"access_token": "shpat_" + secrets.token_hex(16), "api": "graphql"}
    if kind == "woocommerce":
        return {"consumer_key": "ck_" + secrets.token_hex(16), "consumer_secret": "cs_" + secrets.token_hex(16)}
    return {"signing_secret": _standard_secret()}


@transaction.atomic
def create_demo_channels(*, host: str = "127.0.0.1") -> list[Channel]:
    channels = []
    skus = list(Sku.objects.filter(is_active=True).order_by("id"))
    for slug, kind, port, name in DEMO:
        channel, created = Channel.objects.get_or_create(slug=slug, defaults={
            "name": name, "kind": kind, "api_base_url": f"http://{host}:{port}", "credentials": _credentials(kind),
            "webhook_secret": _standard_secret() if kind == "standard" else secrets.token_hex(24),
            "publish_location_id": PUBLISH_LOCATION if kind == "shopify" else "",
            "reconcile_interval_seconds": 300})
        channels.append(channel)
        if not created:
            continue
        for i, sku in enumerate(skus, start=1):
            Listing.objects.create(channel=channel, sku=sku, external_product_id=str(7_100_000_000_000 + i),
                                   external_variant_id=str(4_100_000_000_000 + i) if kind == "shopify" else "",
                                   external_inventory_item_id=str(4_300_000_000_000 + i) if kind == "shopify" else "")
        if kind == "standard":
            store = Location.objects.filter(kind="store").order_by("priority").first()
            if store is not None:
                # The POS is the source of truth for its own store; the web channels are fed by the warehouses.
                ChannelLocation.objects.create(channel=channel, location=store, external_id="STORE-1",
                                               feeds_channel=True, channel_owns_stock=True)
        else:
            for location in Location.objects.filter(kind="warehouse"):
                ChannelLocation.objects.create(channel=channel, location=location, external_id=location.code)
    return channels


def sandbox_catalog(channel: Channel) -> list[dict]:
    """The sandbox's starting catalogue for a channel: the same ids as its listings, nothing in stock yet."""
    rows = []
    for listing in channel.listings.select_related("sku").order_by("id"):
        row = {"sku": listing.external_sku or listing.sku.code, "quantity": 0}
        for field, key in (("external_product_id", "product_id"), ("external_variant_id", "variant_id"),
                           ("external_inventory_item_id", "inventory_item_id")):
            if getattr(listing, field):
                row[key] = int(getattr(listing, field))
        if channel.publish_location_id:
            row["location_id"] = int(channel.publish_location_id)
        rows.append(row)
    return rows
