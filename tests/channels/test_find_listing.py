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


def _listing_rows_read(plan: dict) -> int:
    """Rows the plan's scans of the listing table produced or threw away (per loop, summed over loops)."""
    read = 0
    if plan.get("Relation Name") == "channels_app_listing":
        per_loop = (plan.get("Actual Rows", 0) + plan.get("Rows Removed by Filter", 0)
                    + plan.get("Rows Removed by Index Recheck", 0))
        read += per_loop * plan.get("Actual Loops", 1)
    return read + sum(_listing_rows_read(child) for child in plan.get("Plans", []))


@pytest.mark.parametrize("ref", [
    ListingRef(inventory_item_id="inv-250"),
    ListingRef(variant_id="var-250"),
    ListingRef(product_id="p-249"),
    ListingRef(sku="CH-250"),
    ListingRef(sku="OURS-251"),
])
def test_a_lookup_reads_the_listing_it_finds_not_the_whole_channel(ref):
    """One lookup per order line: on a channel of 400 listings, filtering them all cost a millisecond a line
    (more with the dead row versions a busy channel leaves until vacuum)."""
    from django.db import connection

    from channels_app.inbound import _listing_sql, listing_conditions
    from channels_app.models import Listing
    from inventory_app.models import Sku

    channel = make_channel("shopify")
    skus = Sku.objects.bulk_create([Sku(code=f"OURS-{n}", name=f"item {n}") for n in range(400)])
    Listing.objects.bulk_create([
        Listing(channel=channel, sku=sku, external_inventory_item_id=f"inv-{n}", external_variant_id=f"var-{n}",
                external_product_id=f"p-{n}", external_sku=f"CH-{n}" if n % 2 == 0 else "")
        if n % 3 else Listing(channel=channel, sku=sku, external_product_id=f"p-{n}",
                              external_sku=f"CH-{n}" if n % 2 == 0 else "")
        for n, sku in enumerate(skus)])
    with connection.cursor() as cursor:
        cursor.execute("ANALYZE channels_app_listing")
        cursor.execute("ANALYZE inventory_app_sku")
    assert find_listing(channel, ref) is not None
    read = 0
    for condition, params in listing_conditions(ref):
        with connection.cursor() as cursor:
            cursor.execute("EXPLAIN (ANALYZE, FORMAT JSON) " + _listing_sql(condition), [channel.pk, *params])
            read += _listing_rows_read(cursor.fetchone()[0][0]["Plan"])
    assert read <= len(listing_conditions(ref)), read
