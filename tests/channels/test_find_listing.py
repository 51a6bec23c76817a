"""How an inbound payload's product reference finds its listing (channels_app.inbound.find_listing)."""

from __future__ import annotations

import pytest

from channels_app.commands import ListingRef
from channels_app.inbound import ParkEvent, find_listing
from tests.channels.helpers import list_sku, make_channel
from tests.factories import make_sku

pytestmark = pytest.mark.django_db


@pytest.fixture
def shop():
    channel = make_channel("shopify")
    other = make_channel("shopify")
    skus = [make_sku(code=code) for code in ("TEE", "MUG", "CAP", "HAT", "SOX")]
    listings = {
        "item": list_sku(channel, skus[0], external_inventory_item_id="inv-1", external_variant_id="var-1"),
        "variant": list_sku(channel, skus[1], external_variant_id="var-2", external_product_id="p-2"),
        "product": list_sku(channel, skus[2], external_product_id="p-3"),
        "own_code": list_sku(channel, skus[3], external_sku="CHANNEL-HAT"),
        "our_code": list_sku(channel, skus[4]),
    }
    # The same ids and codes on another channel must never match.
    list_sku(other, skus[0], external_inventory_item_id="inv-9", external_variant_id="var-9")
    list_sku(other, make_sku(code="ELSEWHERE"), external_inventory_item_id="inv-x", external_sku="X")
    return channel, other, listings


@pytest.mark.parametrize(("ref", "expected"), [
    (ListingRef(inventory_item_id="inv-1"), "item"),
    (ListingRef(variant_id="var-1"), "item"),
    (ListingRef(variant_id="var-2", product_id="p-2"), "variant"),
    (ListingRef(product_id="p-3"), "product"),
    (ListingRef(sku="CHANNEL-HAT"), "own_code"),
    (ListingRef(sku="SOX"), "our_code"),
    # The most specific id wins over a SKU code that names another listing.
    (ListingRef(inventory_item_id="inv-1", sku="SOX"), "item"),
    # An unknown id falls through to the next field the payload carries.
    (ListingRef(inventory_item_id="nope", variant_id="var-2"), "variant"),
])
def test_a_reference_finds_its_listing_with_its_sku(shop, ref, expected):
    channel, _, listings = shop
    found = find_listing(channel, ref)
    assert found.pk == listings[expected].pk
    assert found.sku.code == listings[expected].sku.code  # loaded with it, as the order path needs
    assert found.channel_id == channel.pk


@pytest.mark.parametrize("ref", [
    ListingRef(inventory_item_id="inv-9"),           # another channel's id
    ListingRef(sku="ELSEWHERE"),                     # a code listed only on another channel
    ListingRef(sku="HAT"),                           # our code, but the channel names it by its own
    ListingRef(product_id="p-2"),                    # a product with variants is named by its variant
    ListingRef(variant_id="var-2x"),
    ListingRef(),
])
def test_a_reference_to_nothing_of_this_channel_parks(shop, ref):
    channel, _, _ = shop
    with pytest.raises(ParkEvent, match="add the mapping and replay"):
        find_listing(channel, ref)
