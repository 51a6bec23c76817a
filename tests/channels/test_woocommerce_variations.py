"""WooCommerce variations: priced and hidden on the variation itself, and read back by reconciliation (review,
2026-12-08)."""

from __future__ import annotations

import uuid
from decimal import Decimal

import pytest

from channels_app.adapters import adapter_for
from channels_app.models import Channel, Listing
from channels_app.publishing import CatalogItem
from channels_app.reconcile import reconcile_channel
from channels_app.sandbox import start_sandbox
from tests.channels.sandboxed import CREDENTIALS, SECRETS
from tests.factories import make_location, make_sku

pytestmark = pytest.mark.django_db(transaction=True)


def a_woocommerce_shop(catalog: list[dict]):
    """A sandbox WooCommerce holding ``catalog`` (rows with product_id and, for a variation, variant_id) and its
    channel in the hub, listing nothing yet."""
    slug = f"woo-{uuid.uuid4().hex[:6]}"
    sandbox = start_sandbox("woocommerce", channel_slug=slug, webhook_secret=SECRETS["woocommerce"],
                            credentials=CREDENTIALS["woocommerce"])
    sandbox.state.set_catalog(catalog)
    channel = Channel.objects.create(slug=slug, name=slug, kind="woocommerce", api_base_url=sandbox.url,
                                     credentials=CREDENTIALS["woocommerce"], webhook_secret=SECRETS["woocommerce"])
    return channel, sandbox


def a_shop_with_a_variation_and_a_simple_product():
    """A variable product 500 (variation 501) and a simple product 600, listed by two SKUs of 3 units."""
    wh = make_location()
    shirt, mug = make_sku(stock_at={wh: 3}), make_sku(stock_at={wh: 3})
    channel, sandbox = a_woocommerce_shop([
        {"sku": shirt.code, "quantity": 3, "product_id": 500, "variant_id": 501, "price": "10.00"},
        {"sku": mug.code, "quantity": 3, "product_id": 600, "price": "5.00"}])
    shirt_listing = Listing.objects.create(channel=channel, sku=shirt, external_product_id="500",
                                           external_variant_id="501", pushed_version=1, pushed_quantity=3)
    mug_listing = Listing.objects.create(channel=channel, sku=mug, external_product_id="600", pushed_version=1,
                                         pushed_quantity=3)
    return channel, sandbox, shirt_listing, mug_listing


def test_a_variations_price_and_status_go_to_the_variation_not_its_parent():
    """Sent to the parent's id in products/batch, a variation's price was refused (or, on WooCommerce, ignored: a
    variable product is priced by its variations) and the variation kept its old price (review finding)."""
    channel, sandbox, shirt, mug = a_shop_with_a_variation_and_a_simple_product()
    with sandbox:
        adapter = adapter_for(channel)
        items = [CatalogItem(listing=shirt, price=Decimal("12.50"), active=False),
                 CatalogItem(listing=mug, price=Decimal("6.00"), name="Mug")]
        assert adapter.catalog_requests_needed(items) == 2
        adapter.publish_catalog(items)
        rows = {row["sku"]: row for row in sandbox.state.snapshot()["inventory"]}
        assert rows[shirt.sku.code]["price"] == "12.50" and rows[shirt.sku.code]["active"] is False
        assert rows[mug.sku.code]["price"] == "6.00" and rows[mug.sku.code]["name"] == "Mug"


def test_reconciliation_reads_a_variations_stock_and_finds_its_drift():
    """Reconciliation listed products only: a variable product keeps no stock of its own, so a variation edited on
    the channel was never seen to drift (review finding)."""
    channel, sandbox, shirt, _ = a_shop_with_a_variation_and_a_simple_product()
    with sandbox:
        levels = {tuple(sorted(level.ref.items())): level.quantity for level in adapter_for(channel).read_stock()}
        assert levels[(("product_id", "500"), ("variant_id", "501"))] == 3
        sandbox.state.patch_inventory([{"sku": shirt.sku.code, "quantity": 1}])  # edited on the channel
        run = reconcile_channel(channel)
        assert run.details["drifted"] >= 1, run.details
        shirt.refresh_from_db()
        assert shirt.remote_quantity == 1


def test_a_variation_not_listed_is_not_taken_for_its_listed_sibling():
    """Reconciliation matched a variation it read by its parent's id when its own was not listed: an unlisted
    sibling's 7 was taken for the listed variation's number, reported as drift and written over what the hub knew
    (review finding on the first version). A variation is matched by its own id only."""
    wh = make_location()
    shirt, other = make_sku(stock_at={wh: 3}), make_sku(stock_at={wh: 0})
    channel, sandbox = a_woocommerce_shop([
        {"sku": shirt.code, "quantity": 3, "product_id": 500, "variant_id": 501, "price": "10.00"},
        {"sku": other.code, "quantity": 7, "product_id": 500, "variant_id": 502, "price": "10.00"}])
    listing = Listing.objects.create(channel=channel, sku=shirt, external_product_id="500",
                                     external_variant_id="501", pushed_version=1, pushed_quantity=3)
    with sandbox:
        run = reconcile_channel(channel)
    listing.refresh_from_db()
    assert run.details["drifted"] == 0, run.details
    assert listing.remote_quantity != 7  # nothing of the sibling written over it
