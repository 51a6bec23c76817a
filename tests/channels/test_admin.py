"""The admin works end to end for the channel set-up and the replay actions (Django test client)."""

from __future__ import annotations

import pytest
from django.db.models import F

from channels_app.models import Channel, InboundEvent, InboundStatus, Listing, ListingStatus
from tests.channels.helpers import make_channel
from tests.factories import make_location, make_sku

pytestmark = pytest.mark.django_db


@pytest.fixture
def staff(client, django_user_model):
    user = django_user_model.objects.create_superuser("ops", "ops@example.com", "pw-ops-123")
    client.force_login(user)
    return client


def test_channel_setup_page_never_shows_secrets_and_rotates(staff):
    channel = make_channel("shopify", slug="shop", secret="first-secret", credentials={"access_token": "shpat_SECRET"})
    page = staff.get(f"/admin/channels_app/channel/{channel.pk}/change/")
    assert page.status_code == 200
    html = page.content.decode()
    assert "shpat_SECRET" not in html and "first-secret" not in html
    data = {"slug": "shop", "name": "Shop", "kind": "shopify", "enabled": "on", "api_base_url": "http://127.0.0.1:1",
            "external_id": "", "publish_location_id": "1", "credentials_json": "", "new_webhook_secret": "second-secret",
            "safety_buffer": 2, "share_percent": 100, "max_quantity": "", "zero_below": 0, "include_backorders": "on",
            "sellout_guard_seconds": 0,
            "rate_limit_capacity": "", "rate_limit_per_second": "", "push_batch_size": 100,
            "catalog_interval_seconds": 300, "reconcile_interval_seconds": 900,
            "locations-TOTAL_FORMS": 0, "locations-INITIAL_FORMS": 0, "locations-MIN_NUM_FORMS": 0,
            "locations-MAX_NUM_FORMS": 1000}
    response = staff.post(f"/admin/channels_app/channel/{channel.pk}/change/", data)
    assert response.status_code == 302, response.content.decode()[:2000]
    channel = Channel.objects.get(pk=channel.pk)
    assert channel.webhook_secret == "second-secret" and channel.previous_webhook_secret == "first-secret"
    assert channel.credentials == {"access_token": "shpat_SECRET"}  # blank field kept them
    assert channel.safety_buffer == 2


def test_bulk_replay_of_dead_lettered_events_and_failed_listings(staff):
    channel = make_channel("shopify", slug="shop")
    events = [InboundEvent.objects.create(channel=channel, dedup_key=f"k{i}", topic="orders/create", body="{}",
                                          status=InboundStatus.PARKED, last_error="no listing") for i in range(3)]
    response = staff.post("/admin/channels_app/inboundevent/", {
        "action": "replay", "_selected_action": [e.pk for e in events]})
    assert response.status_code == 302
    assert set(InboundEvent.objects.values_list("status", flat=True)) == {InboundStatus.PENDING}
    wh = make_location()
    listing = Listing.objects.create(channel=channel, sku=make_sku(stock_at={wh: 1}), status=ListingStatus.FAILED,
                                     last_error="401")
    staff.post("/admin/channels_app/listing/", {"action": "replay", "_selected_action": [listing.pk]})
    listing.refresh_from_db()
    assert listing.status == ListingStatus.PENDING and listing.last_error == ""


def test_admin_pages_render(staff):
    make_channel("woocommerce", slug="woo")
    for url in ["/admin/", "/admin/channels_app/channel/", "/admin/channels_app/listing/",
                "/admin/channels_app/inboundevent/?attention=yes", "/admin/channels_app/webhookrejection/",
                "/admin/channels_app/pushlog/", "/admin/hub/jobrun/", "/admin/inventory_app/stocklevel/",
                "/admin/inventory_app/stockledgerentry/", "/admin/inventory_app/reservation/",
                "/admin/inventory_app/sku/add/", "/admin/channels_app/channelallocation/"]:
        assert staff.get(url).status_code == 200, url
    for url in ["/admin/inventory_app/stockledgerentry/add/", "/admin/channels_app/channelallocation/add/"]:
        assert staff.get(url).status_code == 403, url  # records the system writes: never added by hand


def test_ring_fence_set_in_the_admin_sets_units_aside_and_a_listing_added_there_gets_its_own(staff):
    from channels_app.models import ChannelAllocation

    wh = make_location()
    tee, cap = make_sku(stock_at={wh: 20}), make_sku(stock_at={wh: 3})
    channel = make_channel("amazon", slug="amz")
    Listing.objects.create(channel=channel, sku=tee)
    data = {"slug": "amz", "name": "Amazon", "kind": "amazon", "enabled": "on", "api_base_url": "http://127.0.0.1:1",
            "external_id": "", "publish_location_id": "", "credentials_json": "", "new_webhook_secret": "",
            "safety_buffer": 0, "share_percent": 100, "max_quantity": "", "zero_below": 0, "include_backorders": "on",
            "sellout_guard_seconds": 0,
            "allocation_target": 5, "rate_limit_capacity": "", "rate_limit_per_second": "", "push_batch_size": 100,
            "catalog_interval_seconds": 300, "reconcile_interval_seconds": 900,
            "locations-TOTAL_FORMS": 0, "locations-INITIAL_FORMS": 0, "locations-MIN_NUM_FORMS": 0,
            "locations-MAX_NUM_FORMS": 1000}
    response = staff.post(f"/admin/channels_app/channel/{channel.pk}/change/", data)
    assert response.status_code == 302, response.content.decode()[:2000]
    assert ChannelAllocation.objects.get(channel=channel, sku=tee).units == 5
    response = staff.post("/admin/channels_app/listing/add/", {
        "channel": channel.pk, "sku": cap.pk, "external_product_id": "", "external_variant_id": "",
        "external_inventory_item_id": "", "external_sku": "", "external_location_id": ""})
    assert response.status_code == 302, response.content.decode()[:2000]
    assert ChannelAllocation.objects.get(channel=channel, sku=cap).units == 3
    page = staff.get("/admin/channels_app/listing/")
    assert page.status_code == 200 and ">error<" in page.content.decode().lower().replace(" ", "")
    page = staff.get(f"/admin/channels_app/channelallocation/?channel__id__exact={channel.pk}")
    assert page.status_code == 200 and cap.code in page.content.decode()


def test_a_location_closed_in_the_admin_marks_the_channels_out_of_date(staff):
    """Review finding, 2026-12-07: the admin saved the flag alone, and the channels showed the closed location's
    units until the SKU's next stock write."""
    wh, store = make_location(), make_location()
    tee = make_sku(stock_at={wh: 10, store: 40})
    listing = Listing.objects.create(channel=make_channel("woocommerce", slug="woo"), sku=tee)
    before = listing.desired_version
    response = staff.post(f"/admin/inventory_app/location/{store.pk}/change/", {
        "code": store.code, "name": store.name, "kind": store.kind, "priority": store.priority})  # is_active unticked
    assert response.status_code == 302, response.content.decode()[:2000]
    store.refresh_from_db()
    listing.refresh_from_db()
    assert store.is_active is False and listing.desired_version > before


def test_a_bundles_components_are_shown_not_changed_in_the_admin(staff):
    """As in the API, a bundle's components are set when it is made: an edit in the admin changed every channel's
    number of the bundle without marking it out of date (review finding, 2026-12-07). A new SKU still takes them."""
    from inventory_app.models import BundleComponent, Sku
    from tests.factories import make_bundle

    tee = make_sku(stock_at={make_location(): 30})
    kit = make_bundle({tee: 2})
    part = BundleComponent.objects.get(bundle=kit)
    page = staff.get(f"/admin/inventory_app/sku/{kit.pk}/change/")
    assert page.status_code == 200 and 'name="components-0-quantity"' not in page.content.decode()
    data = {"code": kit.code, "name": kit.name, "is_active": "on", "stock_policy": "deny", "oversell_limit": 0,
            "oversell_location": "", "components-TOTAL_FORMS": 1, "components-INITIAL_FORMS": 1,
            "components-MIN_NUM_FORMS": 0, "components-MAX_NUM_FORMS": 1000, "components-0-id": part.pk,
            "components-0-bundle": kit.pk, "components-0-component": tee.pk, "components-0-quantity": 3,
            "stock_levels-TOTAL_FORMS": 0, "stock_levels-INITIAL_FORMS": 0, "stock_levels-MIN_NUM_FORMS": 0,
            "stock_levels-MAX_NUM_FORMS": 1000}
    response = staff.post(f"/admin/inventory_app/sku/{kit.pk}/change/", data)
    assert response.status_code == 302, response.content.decode()[:2000]
    assert BundleComponent.objects.get(pk=part.pk).quantity == 2
    response = staff.post("/admin/inventory_app/sku/add/", {
        **data, "code": "KIT-NEW", "name": "New kit", "components-INITIAL_FORMS": 0, "components-0-id": "",
        "components-0-bundle": ""})
    assert response.status_code == 302, response.content.decode()[:2000]
    assert Sku.objects.get(code="KIT-NEW").components.get().quantity == 3


def test_a_location_fed_to_a_channel_in_the_admin_marks_the_channel_out_of_date(staff):
    """The channel's inline of locations (which feed it) moves every number it is sent: the admin saved it and
    marked nothing, where the API's PATCH re-pushes the channel (review finding, 2026-12-07)."""
    wh, store = make_location(), make_location()
    tee = make_sku(stock_at={wh: 10, store: 40})
    channel = make_channel("woocommerce", slug="woo2")
    listing = Listing.objects.create(channel=channel, sku=tee)
    before = listing.desired_version
    data = {"slug": "woo2", "name": "Woo", "kind": "woocommerce", "enabled": "on", "api_base_url": "http://127.0.0.1:1",
            "external_id": "", "publish_location_id": "", "credentials_json": "", "new_webhook_secret": "",
            "safety_buffer": 0, "share_percent": 100, "max_quantity": "", "zero_below": 0, "include_backorders": "on",
            "sellout_guard_seconds": 0, "allocation_target": "",
            "rate_limit_capacity": "", "rate_limit_per_second": "", "push_batch_size": 100,
            "catalog_interval_seconds": 300, "reconcile_interval_seconds": 900,
            "locations-TOTAL_FORMS": 1, "locations-INITIAL_FORMS": 0, "locations-MIN_NUM_FORMS": 0,
            "locations-MAX_NUM_FORMS": 1000, "locations-0-location": store.pk, "locations-0-external_id": "",
            "locations-0-feeds_channel": "on"}
    response = staff.post(f"/admin/channels_app/channel/{channel.pk}/change/", data)
    assert response.status_code == 302, response.content.decode()[:2000]
    assert channel.locations.get().feeds_channel
    listing.refresh_from_db()
    assert listing.desired_version > before


def test_a_sku_taken_off_sale_in_the_admin_marks_its_listings(staff):
    """Review finding, 2026-12-07: the admin saved the flag alone, and channels went on selling the SKU."""
    tee = make_sku(stock_at={make_location(): 30})
    listing = Listing.objects.create(channel=make_channel("woocommerce", slug="woo3"), sku=tee)
    before = listing.desired_version
    response = staff.post(f"/admin/inventory_app/sku/{tee.pk}/change/", {
        "code": tee.code, "name": tee.name, "stock_policy": "deny", "oversell_limit": 0, "oversell_location": "",
        "components-TOTAL_FORMS": 0, "components-INITIAL_FORMS": 0, "components-MIN_NUM_FORMS": 0,
        "components-MAX_NUM_FORMS": 1000, "stock_levels-TOTAL_FORMS": 0, "stock_levels-INITIAL_FORMS": 0,
        "stock_levels-MIN_NUM_FORMS": 0, "stock_levels-MAX_NUM_FORMS": 1000})  # is_active unticked
    assert response.status_code == 302, response.content.decode()[:2000]
    tee.refresh_from_db()
    listing.refresh_from_db()
    assert tee.is_active is False and listing.desired_version > before


def test_the_push_history_page_costs_the_same_queries_for_3_rows_as_for_30(staff):
    """Each row shows its listing as channel:sku: without the listing's channel joined, a query per row (36 for 30
    rows; review finding, 2026-12-07)."""
    from django.db import connection
    from django.test.utils import CaptureQueriesContext

    from channels_app.models import PushLog

    def queries_for(rows: int) -> int:
        channel = make_channel("standard")
        wh = make_location()
        for _ in range(rows):
            listing = Listing.objects.create(channel=channel, sku=make_sku(stock_at={wh: 1}))
            PushLog.objects.create(listing=listing, channel=channel, version=1, quantity=1, ok=True)
        with CaptureQueriesContext(connection) as captured:
            assert staff.get(f"/admin/channels_app/pushlog/?channel__id__exact={channel.pk}").status_code == 200
        return len(captured)

    assert queries_for(3) == queries_for(30)


def test_a_listing_edited_in_the_admin_keeps_a_sale_made_meanwhile_and_is_pushed_to_its_new_item(rf, staff):
    """The admin saved the whole listing it had loaded: a sale committed between the load and the save had its
    version written back over, and the channel kept the number from before the sale. Now only the mapping the form
    changed is written, and the listing is out of date: the item it names now was never sent our number (review
    finding, 2026-12-07)."""
    from django.contrib import admin as django_admin
    from django.contrib.auth import get_user_model

    from inventory_app import stock
    from inventory_app.stock import LineRequest

    wh = make_location()
    tee = make_sku(stock_at={wh: 10})
    listing = Listing.objects.create(channel=make_channel("standard"), sku=tee, external_variant_id="old",
                                     status=ListingStatus.FAILED, attempts=12, last_error="404 no such variant")
    Listing.objects.filter(pk=listing.pk).update(pushed_version=F("desired_version"))
    model_admin = django_admin.site._registry[Listing]
    request = rf.post("/")
    request.user = get_user_model().objects.get(username="ops")
    loaded = model_admin.get_object(request, str(listing.pk))
    stock.reserve(lines=[LineRequest(tee.code, 1)])  # committed while the form is being saved
    after_sale = Listing.objects.get(pk=listing.pk).desired_version
    form = model_admin.get_form(request, loaded, change=True)(
        {"external_variant_id": "new", "external_product_id": "", "external_inventory_item_id": "", "external_sku": "",
         "external_location_id": ""}, instance=loaded)
    assert form.is_valid(), form.errors
    model_admin.save_model(request, form.save(commit=False), form, change=True)
    listing.refresh_from_db()
    assert listing.external_variant_id == "new" and listing.desired_version == after_sale + 1
    assert (listing.status, listing.attempts, listing.last_error) == (ListingStatus.PENDING, 0, "")


def test_listing_a_listed_sku_again_changes_nothing_unless_its_mapping_changes():
    """``upsert_listing`` (POST .../listings/) marked the listing pending with no new version: one in sync then
    showed "waiting to push" for good, and a new item id got no number until the SKU's next sale."""
    from channels_app import services

    wh = make_location()
    tee = make_sku(stock_at={wh: 10})
    channel = make_channel("standard")
    listing = services.upsert_listing(channel=channel, sku=tee, external_variant_id="v1")
    Listing.objects.filter(pk=listing.pk).update(pushed_version=F("desired_version"), status=ListingStatus.OK)
    again = services.upsert_listing(channel=channel, sku=tee, external_variant_id="v1")
    assert again.in_sync and again.status == ListingStatus.OK
    moved = services.upsert_listing(channel=channel, sku=tee, external_variant_id="v2")
    assert not moved.in_sync and moved.external_variant_id == "v2" and moved.status == ListingStatus.PENDING


def test_the_channel_list_reads_every_badge_in_one_query_and_says_what_sync_status_says(staff):
    """Each badge called sync_status, which read an hour of push history twice: a dozen queries and up to 40,000 rows
    per channel listed (review finding, 2026-12-07)."""
    from datetime import timedelta

    from django.db import connection
    from django.test.utils import CaptureQueriesContext
    from django.utils import timezone

    from channels_app import selectors

    wh = make_location()

    def channels(n: int) -> list[Channel]:
        made = []
        for i in range(n):
            channel = make_channel("standard")
            listing = Listing.objects.create(channel=channel, sku=make_sku(stock_at={wh: 1}))
            if i % 3 == 0:  # red: a failed listing
                Listing.objects.filter(pk=listing.pk).update(status=ListingStatus.FAILED, desired_version=2)
            elif i % 3 == 1:  # amber: an inbound event that needs attention, and a backlog 10 s old
                InboundEvent.objects.create(channel=channel, dedup_key=f"d{i}", topic="order.created", body="{}",
                                            status=InboundStatus.DEAD)
                Listing.objects.filter(pk=listing.pk).update(desired_version=2,
                                                             dirty_since=timezone.now() - timedelta(seconds=10))
            made.append(channel)
        return made

    def queries_for_list() -> int:
        with CaptureQueriesContext(connection) as captured:
            page = staff.get("/admin/channels_app/channel/")
        assert page.status_code == 200
        return len(captured)

    channels(2)
    few = queries_for_list()
    made = channels(6)
    assert queries_for_list() == few
    annotated = {c.pk: c for c in selectors.with_health(Channel.objects.all())}
    seen = set()
    for channel in made:
        status = selectors.sync_status(channel)
        assert selectors.health_of(annotated[channel.pk])[0] == status["health"]
        seen.add(status["health"])
    assert seen == {"red", "amber", "green"}
    assert "red" in staff.get("/admin/channels_app/channel/").content.decode()
