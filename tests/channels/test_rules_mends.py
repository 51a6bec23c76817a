"""Mends from the review of the channel availability rules (2026-12, /tmp/review_rules): each test fails without its fix.

1. A location linked with ``feeds_channel=False`` fed the channel anyway when no link fed it (both rules paths).
2. A threshold (``zero_below``) above the maximum was accepted: the channel then showed 0 of everything, for ever.
3. A ring-fenced channel capped below its target was filled to the target and shown the cap: the rest was on sale
   nowhere.
4. ``available_sql`` counted an inactive SKU's stock, which ``availability_for_skus`` shows as none.
"""

from __future__ import annotations

import uuid

import pytest
from django.core.exceptions import ValidationError
from django.db import connection, transaction
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from channels_app import outbound, selectors, services
from channels_app.admin import ChannelForm
from channels_app.models import Channel, ChannelLocation, Listing
from channels_app.rules import desired_quantities_many
from inventory_app import stock
from inventory_app.availability import availability_for_skus, available_sql
from inventory_app.models import BundleComponent, Location, Sku, StockLevel
from inventory_app.stock import LineRequest
from tests.channels.helpers import list_sku, make_channel
from tests.channels.test_allocation import held, shown
from tests.factories import make_location, make_sku

pytestmark = pytest.mark.django_db


def not_fed_by(channel: Channel, *locations: Location) -> None:
    for location in locations:
        ChannelLocation.objects.create(channel=channel, location=location, external_id="", feeds_channel=False)


# --- 1. a location marked not feeding the channel ----------------------------------------------------------------


def test_a_location_marked_not_feeding_is_left_out_when_no_link_feeds():
    warehouse, store = make_location(), make_location()
    tee = make_sku(stock_at={warehouse: 10, store: 5})
    channel = make_channel("shopify")
    not_fed_by(channel, warehouse)  # the merchant: the warehouse's stock is not offered here
    list_sku(channel, tee)
    assert shown(channel, tee) == 5  # every other active location: the store
    assert [row["would_send"] for row in selectors.preview(channel)] == [5]  # the admin's preview says the same


def test_a_push_round_leaves_out_a_location_marked_not_feeding():
    """The batch path (``desired_quantities_many``, several channels from one snapshot) reads the links itself."""
    warehouse, store, outlet = make_location(), make_location(), make_location()
    tee = make_sku(stock_at={warehouse: 10, store: 5, outlet: 2})
    excluding = make_channel("shopify")
    not_fed_by(excluding, warehouse)
    naming = make_channel("woocommerce")  # a link that feeds names exactly the locations that feed
    ChannelLocation.objects.create(channel=naming, location=store, external_id="S")
    not_fed_by(naming, warehouse)
    plain = make_channel("standard")
    listings = {channel: list_sku(channel, tee) for channel in (excluding, naming, plain)}
    work = [(channel, list(Listing.objects.filter(pk=listing.pk).select_related("sku")))
            for channel, listing in listings.items()]
    assert desired_quantities_many(work) == {listings[excluding].id: 7, listings[naming].id: 5, listings[plain].id: 17}


def test_a_channel_whose_every_active_location_is_marked_not_feeding_is_shown_none():
    warehouse, store, closed = make_location(), make_location(), make_location(is_active=False)
    tee = make_sku(stock_at={warehouse: 10, store: 5, closed: 3})
    channel = make_channel("shopify")
    not_fed_by(channel, warehouse, store)
    list_sku(channel, tee)
    assert shown(channel, tee) == 0


def test_the_sellout_guard_does_not_count_sales_at_a_location_marked_not_feeding():
    warehouse, store = make_location(priority=1), make_location(priority=2)
    tee = make_sku(stock_at={warehouse: 10, store: 5})
    guarded = make_channel("shopify", sellout_guard_seconds=2)
    not_fed_by(guarded, warehouse)
    list_sku(guarded, tee)
    stock.sell(lines=[LineRequest(tee.code, 4)], channel="elsewhere")
    assert StockLevel.objects.get(sku=tee, location=warehouse).on_hand == 6  # the rush was at the warehouse
    assert shown(guarded, tee) == 5  # the store's 5, none held back for a pace the store does not see


# --- 2. a threshold above the maximum ----------------------------------------------------------------------------


def form_data(**rules) -> dict:
    data = {"slug": "shop", "name": "Shop", "kind": "shopify", "enabled": "on", "api_base_url": "",
            "external_id": "", "publish_location_id": "", "credentials_json": "", "new_webhook_secret": "",
            "safety_buffer": 0, "share_percent": 100, "max_quantity": "", "zero_below": 0, "include_backorders": "on",
            "sellout_guard_seconds": 0, "allocation_target": "",
            "rate_limit_capacity": "", "rate_limit_per_second": "", "push_batch_size": 100,
            "catalog_interval_seconds": 300, "reconcile_interval_seconds": 900}
    data.update(rules)
    return data


def test_a_sale_on_a_channel_fed_by_one_location_draws_on_that_location_first():
    """The store's till is fed by the store, the web shop by the warehouse (first by priority). The till sold 5: the
    hub took them from the warehouse, so the web shop showed 0 of the 5 the warehouse still held and the till went on
    showing 5 it no longer had (review finding, 2026-12-08). A channel's sale is drawn from the locations feeding it
    first, through the inbox like any channel order; only a shortfall there reaches the others."""
    from channels_app import inbound
    from channels_app.models import InboundEvent
    from tests.channels.helpers import shopify_order

    warehouse, store = make_location(priority=1), make_location(priority=2)
    tee = make_sku(stock_at={warehouse: 5, store: 5})
    web, till = make_channel("standard"), make_channel("shopify")
    ChannelLocation.objects.create(channel=web, location=warehouse, external_id="wh")
    ChannelLocation.objects.create(channel=till, location=store, external_id="store")
    list_sku(web, tee)
    list_sku(till, tee, external_variant_id="77")
    assert (shown(web, tee), shown(till, tee)) == (5, 5)

    def till_sells(order_id: int, units: int) -> None:
        event = InboundEvent.objects.create(
            channel=till, dedup_key=f"till-{order_id}", delivery_id=f"till-{order_id}", topic="orders/create",
            headers={}, body=shopify_order(order_id, [(order_id, tee.code, 77, units)]).decode())
        assert inbound.process_event(event.pk) == "processed"

    till_sells(1, 5)
    assert (shown(web, tee), shown(till, tee)) == (5, 0)
    till_sells(2, 2)  # more than the store held: the rest comes from where it is
    assert (shown(web, tee), shown(till, tee)) == (3, 0)
    levels = dict(StockLevel.objects.filter(sku=tee).values_list("location_id", "on_hand"))
    assert levels == {warehouse.id: 3, store.id: 0}


def test_the_channel_form_refuses_a_threshold_above_the_maximum():
    form = ChannelForm(data=form_data(max_quantity=5, zero_below=10))
    assert not form.is_valid(), "a channel capped at 5 with a threshold of 10 can never show a unit"
    assert "maximum" in str(form.errors["zero_below"])
    # At the maximum, or with no maximum, the threshold can be met.
    assert ChannelForm(data=form_data(max_quantity=5, zero_below=5)).is_valid()
    assert ChannelForm(data=form_data(zero_below=10)).is_valid()


def test_a_channel_whose_threshold_is_above_its_maximum_does_not_validate():
    channel = Channel(slug="capped", name="Capped", kind="amazon", max_quantity=3, zero_below=4)
    with pytest.raises(ValidationError) as raised:
        channel.full_clean()
    assert set(raised.value.message_dict) == {"zero_below"}


def test_the_api_refuses_a_threshold_above_the_maximum(api):
    """The API does not run the model's clean: it checks the same rule, against the channel's stored fields too."""
    channel = make_channel("standard", max_quantity=5)
    response = api.patch(f"/api/v1/channels/{channel.slug}/", {"zero_below": 10}, format="json")
    assert response.status_code == 400 and "zero_below" in response.json(), response.content
    assert api.patch(f"/api/v1/channels/{channel.slug}/", {"zero_below": 5}, format="json").status_code == 200
    response = api.patch(f"/api/v1/channels/{channel.slug}/", {"max_quantity": 4}, format="json")
    assert response.status_code == 400 and "zero_below" in response.json()
    channel.refresh_from_db()
    assert (channel.max_quantity, channel.zero_below) == (5, 5)


# --- 3. a ring-fenced channel capped below its target ------------------------------------------------------------


def test_raising_a_fenced_channels_maximum_sets_its_units_aside_at_once(api, admin_client):
    """Capped at 3 below a target of 8, then raised: the fence stayed at 3 until the channel had sold them all (a
    refill waits until it is used up), the channel showing 3 where it could show 8 (helper's note, 2026-12-08).
    A new maximum is topped up at once, from the API and from the admin."""
    tee = make_sku(stock_at={make_location(): 20})
    amazon = make_channel("amazon", max_quantity=3)
    list_sku(amazon, tee)
    services.update_channel(channel=amazon, data={"allocation_target": 8}, locations=None)
    assert held(amazon, tee) == 3
    assert api.patch(f"/api/v1/channels/{amazon.slug}/", {"max_quantity": 6}, format="json").status_code == 200
    assert (held(amazon, tee), shown(amazon, tee)) == (6, 6)
    assert api.patch(f"/api/v1/channels/{amazon.slug}/", {"max_quantity": None}, format="json").status_code == 200
    assert (held(amazon, tee), shown(amazon, tee)) == (8, 8)

    walmart = make_channel("amazon", max_quantity=2)
    list_sku(walmart, tee)
    services.update_channel(channel=walmart, data={"allocation_target": 5}, locations=None)
    assert held(walmart, tee) == 2
    data = {"slug": walmart.slug, "name": walmart.name, "kind": "amazon", "enabled": "on", "api_base_url": "",
            "external_id": "", "publish_location_id": "", "credentials_json": "", "new_webhook_secret": "",
            "safety_buffer": 0, "share_percent": 100, "max_quantity": 5, "zero_below": 0, "sellout_guard_seconds": 0,
            "allocation_target": 5, "rate_limit_capacity": "", "rate_limit_per_second": "", "push_batch_size": 100,
            "catalog_interval_seconds": 300, "reconcile_interval_seconds": 900,
            "locations-TOTAL_FORMS": 0, "locations-INITIAL_FORMS": 0, "locations-MIN_NUM_FORMS": 0,
            "locations-MAX_NUM_FORMS": 1000}
    answer = admin_client.post(f"/admin/channels_app/channel/{walmart.pk}/change/", data)
    assert answer.status_code == 302, answer.content.decode()[:3000]
    assert held(walmart, tee) == 5


def test_a_fenced_channel_capped_below_its_target_strands_no_units():
    tee = make_sku(stock_at={make_location(): 10})
    shop = make_channel("shopify")
    list_sku(shop, tee)
    amazon = make_channel("amazon", max_quantity=3)
    list_sku(amazon, tee)
    services.update_channel(channel=amazon, data={"allocation_target": 8}, locations=None)
    assert held(amazon, tee) == 3  # no more than the channel may ever show
    assert (shown(amazon, tee), shown(shop, tee)) == (3, 7)


def test_a_fenced_channel_capped_below_its_target_is_refilled_to_its_cap():
    tee = make_sku(stock_at={make_location(): 10})
    shop = make_channel("shopify")
    list_sku(shop, tee)
    amazon = make_channel("amazon", max_quantity=3)
    list_sku(amazon, tee)
    services.update_channel(channel=amazon, data={"allocation_target": 8}, locations=None)
    stock.sell(lines=[LineRequest(tee.code, 3)], channel=amazon.slug)  # used up: refilled from the pool (``settle``)
    assert held(amazon, tee) == 3
    assert (shown(amazon, tee), shown(shop, tee)) == (3, 4)


def test_an_allocation_above_a_cap_set_later_holds_back_no_more_than_the_cap():
    """Filled to its target, then capped: the units above the cap are the pool's (and another fence's to take)."""
    tee = make_sku(stock_at={make_location(): 20})
    shop = make_channel("shopify")
    list_sku(shop, tee)
    amazon = make_channel("amazon")
    list_sku(amazon, tee)
    services.update_channel(channel=amazon, data={"allocation_target": 8}, locations=None)
    services.update_channel(channel=amazon, data={"max_quantity": 3}, locations=None)
    assert held(amazon, tee) == 8  # the row keeps what it had; only its sales consume it
    assert (shown(amazon, tee), shown(shop, tee)) == (3, 17)
    woo = make_channel("woocommerce")
    list_sku(woo, tee)
    services.update_channel(channel=woo, data={"allocation_target": 15}, locations=None)
    assert held(woo, tee) == 15  # 20 less amazon's 3, not less its 8
    assert (shown(amazon, tee), shown(woo, tee), shown(shop, tee)) == (3, 15, 2)


# --- 4. available_sql and an inactive SKU ------------------------------------------------------------------------


row = st.tuples(st.integers(-5, 20), st.integers(0, 10), st.integers(0, 8))  # on_hand, reserved, allowance


class _Rollback(Exception):
    pass


@settings(max_examples=150, deadline=None, suppress_health_check=[HealthCheck.function_scoped_fixture])
@given(locations_active=st.lists(st.booleans(), min_size=1, max_size=3),
       skus_active=st.lists(st.booleans(), min_size=3, max_size=3),
       rows=st.lists(st.lists(row, min_size=3, max_size=3), min_size=2, max_size=2),
       per_bundle=st.tuples(st.integers(1, 3), st.integers(1, 3)))
def test_available_sql_agrees_with_availability_for_skus(locations_active, skus_active, rows, per_bundle):
    """``available_sql`` ranks the push claim and sizes the ring-fence top-up's free pool; ``availability_for_skus``
    is what the channels are sent. For the same rows they agree."""
    with pytest.raises(_Rollback), transaction.atomic():
        locations = [Location.objects.create(code=f"l{i}", name="l", is_active=a) for i, a in enumerate(locations_active)]
        a, b, kit = (Sku.objects.create(code=f"s{i}", name="s", is_active=act) for i, act in enumerate(skus_active))
        for sku, sku_rows in zip((a, b), rows, strict=True):
            for location, (on_hand, reserved, allowance) in zip(locations, sku_rows, strict=False):
                on_hand = max(on_hand, reserved - allowance)  # the stock_reserved_covered constraint
                StockLevel.objects.create(sku=sku, location=location, on_hand=on_hand, reserved=reserved,
                                          allowance=allowance)
        BundleComponent.objects.create(bundle=kit, component=a, quantity=per_bundle[0])
        BundleComponent.objects.create(bundle=kit, component=b, quantity=per_bundle[1])
        python = availability_for_skus([a, b, kit])
        with connection.cursor() as cursor:
            for sku in (a, b, kit):
                cursor.execute(f"SELECT {available_sql('s.id')} FROM {Sku._meta.db_table} s WHERE s.id = %s", [sku.pk])
                sql = cursor.fetchone()[0]
                assert sql == python[sku.pk].available, (sku.code, sku.is_active, sql, python[sku.pk].available)
        raise _Rollback


def test_a_sku_taken_off_sale_is_pushed_first_as_the_scarcest():
    """The claim ranks by ``available_sql``: a SKU off sale goes to 0 on every channel, the most urgent number."""
    wh = make_location()
    few, off = make_sku(stock_at={wh: 3}), make_sku(stock_at={wh: 500})
    channel = make_channel("amazon")
    list_sku(channel, few)
    list_sku(channel, off)
    stock.set_sku_active(sku=off, active=False)
    (listing, _), = outbound.claim(channel, limit=1, owner=uuid.uuid4())
    assert listing.sku_id == off.pk


def test_a_fence_set_while_the_sku_is_off_sale_sets_nothing_aside_until_it_is_back():
    tee = make_sku(stock_at={make_location(): 10})
    shop = make_channel("shopify")
    list_sku(shop, tee)
    amazon = make_channel("amazon")
    list_sku(amazon, tee)
    stock.set_sku_active(sku=tee, active=False)
    services.update_channel(channel=amazon, data={"allocation_target": 4}, locations=None)
    assert held(amazon, tee) == 0  # nothing is for sale: nothing to set aside
    stock.set_sku_active(sku=tee, active=True)  # a stock write of the SKU: the empty fence is filled (``settle``)
    assert held(amazon, tee) == 4
    assert (shown(amazon, tee), shown(shop, tee)) == (4, 6)
