"""Channels out against real sandbox servers: coalescing, faults, rate limits, compare-and-set, replay."""

from __future__ import annotations

import contextlib
import threading
import time
import uuid
from datetime import timedelta
from decimal import Decimal

import pytest
from django.db import connection, transaction
from django.db.models import F
from django.utils import timezone

from channels_app import outbound, services
from channels_app.models import Channel, InboundEvent, InboundStatus, Listing, ListingStatus, PushLog
from channels_app.rules import desired_quantities
from inventory_app import stock
from inventory_app.stock import LineRequest
from tests.channels.sandboxed import LOCATION, connect, remote
from tests.factories import make_bundle, make_location, make_sku
from tests.threads import running

pytestmark = pytest.mark.django_db(transaction=True)


def converge(channel: Channel, rounds: int = 30):
    """Run the pusher until nothing is out of date (making retry times due at once, as time passing would)."""
    for _ in range(rounds):
        Listing.objects.filter(channel=channel).exclude(status=ListingStatus.FAILED).update(next_attempt_at=None)
        summary = outbound.push_channel(channel.pk)
        if not outbound.dirty_listings(channel, timezone.now() + timedelta(days=1)).exists():
            return
        if summary.retry_in:  # out of rate-limit tokens: they come back with real time only
            time.sleep(min(summary.retry_in, 2))
    raise AssertionError("did not converge")


def assert_converged(channel: Channel, sandbox):
    listings = list(Listing.objects.filter(channel=channel).select_related("sku"))
    wanted = desired_quantities(channel, listings)
    for listing in listings:
        assert remote(sandbox, listing.sku) == wanted[listing.id], listing.sku.code
        assert listing.pushed_version >= listing.desired_version


@pytest.mark.parametrize("kind", ["shopify", "woocommerce", "bigcommerce", "amazon", "standard"])
def test_each_adapter_puts_hub_availability_on_its_platform(kind):
    wh = make_location()
    tee, cap = make_sku(stock_at={wh: 12}), make_sku(stock_at={wh: 3})
    channel, sandbox = connect(kind, {tee: 0, cap: 0})
    with sandbox:
        converge(channel)
        assert (remote(sandbox, tee), remote(sandbox, cap)) == (12, 3)
        stock.reserve(lines=[LineRequest(tee.code, 5)])
        converge(channel)
        assert remote(sandbox, tee) == 7
        assert_converged(channel, sandbox)


def test_a_burst_of_500_orders_becomes_one_push_with_the_latest_value():
    wh = make_location()
    tee = make_sku(stock_at={wh: 1000})
    channel, sandbox = connect("shopify", {tee: 1000})
    with sandbox:
        converge(channel)
        before = sum(sandbox.state.snapshot()["requests"].values())
        for _ in range(500):
            stock.reserve(lines=[LineRequest(tee.code, 1)])
        assert Listing.objects.get(channel=channel).desired_version > 500
        outbound.push_channel(channel.pk)
        after = sum(sandbox.state.snapshot()["requests"].values())
        assert after - before == 1
        assert remote(sandbox, tee) == 500


def test_5xx_is_retried_with_backoff_then_converges():
    wh = make_location()
    tee = make_sku(stock_at={wh: 9})
    channel, sandbox = connect("woocommerce", {tee: 0})
    with sandbox:
        sandbox.state.set_faults({"error_rate": 1.0})
        outbound.push_channel(channel.pk)
        listing = Listing.objects.get(channel=channel)
        assert listing.status == ListingStatus.RETRYING and listing.next_attempt_at > timezone.now() - timedelta(seconds=1)
        assert "50" in listing.last_error
        sandbox.state.set_faults({})
        converge(channel)
        assert remote(sandbox, tee) == 9


def test_429_blocks_the_channel_for_retry_after():
    wh = make_location()
    tee = make_sku(stock_at={wh: 4})
    channel, sandbox = connect("shopify", {tee: 0}, credentials={"api": "rest"})
    with sandbox:
        sandbox.state.set_faults({"burst_429": 1, "retry_after": 2})
        summary = outbound.push_channel(channel.pk)
        assert summary.retry_in == pytest.approx(2, abs=0.2)
        listing = Listing.objects.get(channel=channel)
        assert listing.next_attempt_at >= timezone.now() + timedelta(seconds=1)
        # The shared bucket is now blocked: no pusher anywhere sends before Retry-After.
        from channels_app.ratelimit import limiter_for

        assert limiter_for(channel).try_acquire() > 1
        assert sandbox.state.snapshot()["injected"]["429"] == 1


def test_other_4xx_is_not_retried_and_shows_on_the_listing_then_replays():
    wh = make_location()
    tee = make_sku(stock_at={wh: 4})
    channel, sandbox = connect("shopify", {tee: 0}, credentials={"access_token": "wrong-token"})
    with sandbox:
        outbound.push_channel(channel.pk)
        listing = Listing.objects.get(channel=channel)
        assert listing.status == ListingStatus.FAILED and "401" in listing.last_error
        calls = sum(sandbox.state.snapshot()["requests"].values())
        outbound.push_channel(channel.pk)
        assert sum(sandbox.state.snapshot()["requests"].values()) == calls  # failed listings wait for an operator
        channel.credentials = {"access_token": "shpat_test"}
        channel.save()
        assert outbound.replay_listings([listing.pk]) == 1
        converge(channel)
        assert remote(sandbox, tee) == 4


def on_its_last_attempt():
    """A WooCommerce listing of 6 units, its push failed all but once (MAX_ATTEMPTS - 1)."""
    wh = make_location()
    tee = make_sku(stock_at={wh: 6})
    channel, sandbox = connect("woocommerce", {tee: 0})
    Listing.objects.filter(channel=channel).update(attempts=outbound.MAX_ATTEMPTS - 1, status=ListingStatus.RETRYING)
    return channel, sandbox, tee


def while_pushing(channel: Channel, during) -> None:
    """Push the channel from another thread and, once the push holds its listings (its requests out), run ``during``;
    return when the push has ended."""
    def push() -> None:
        try:
            outbound.push_channel(channel.pk)
        finally:
            connection.close()

    pushing = threading.Thread(target=push)
    pushing.start()
    deadline = time.monotonic() + 5
    while not Listing.objects.filter(channel=channel, lease_owner__isnull=False).exists():
        assert time.monotonic() < deadline, "the push never leased the listing"
        time.sleep(0.01)
    during()
    pushing.join(timeout=30)
    assert not pushing.is_alive()


def test_a_replay_while_a_pusher_holds_the_listing_keeps_its_fresh_budget():
    """The operator replays a listing on its last attempts while a pusher is sending it: that push's failure was
    counted against the attempts it claimed, and parked the listing again a second after the replay (review
    finding, 2026-12-07). The replay's budget stands; the listing is tried again soon and converges."""
    channel, sandbox, tee = on_its_last_attempt()
    with sandbox:
        sandbox.state.set_faults({"error_rate": 1.0, "latency_ms": 1000})  # the replay lands while it waits
        listing = Listing.objects.get(channel=channel)
        while_pushing(channel, lambda: outbound.replay_listings([listing.pk]))
        assert sandbox.state.snapshot()["injected"]["5xx"] >= 1  # the held push did fail
        listing.refresh_from_db()
        assert listing.status == ListingStatus.RETRYING and listing.attempts == 0, (listing.status, listing.attempts)
        assert "50" in listing.last_error
        assert listing.next_attempt_at <= timezone.now() + timedelta(seconds=2)
        sandbox.state.set_faults({})
        converge(channel)
        assert remote(sandbox, tee) == 6


def test_a_listing_remapped_while_its_old_item_is_refused_for_good_is_pushed_to_the_new_one():
    """The operator corrects a listing's item id while a push to the wrong one is in flight: the channel refuses the
    wrong id for good, and that refusal parked the listing, remapped and with its fresh budget, until someone
    replayed it (named in the README as not mended, 2026-12-07). The refusal was of the old item: the listing is
    tried again soon, at the new one, and converges."""
    wh = make_location()
    tee = make_sku(stock_at={wh: 6})
    channel, sandbox = connect("woocommerce", {tee: 0})
    listing = Listing.objects.get(channel=channel)
    right = listing.external_product_id
    Listing.objects.filter(pk=listing.pk).update(external_product_id="999999")
    with sandbox:
        sandbox.state.set_faults({"latency_ms": 1000})  # the remap lands while the wrong id's request waits
        while_pushing(channel, lambda: services.remap_listing(listing, external_product_id=right))
        listing.refresh_from_db()
        assert "Invalid ID" in listing.last_error  # the old item was refused
        assert listing.status == ListingStatus.RETRYING and listing.attempts == 0, (listing.status, listing.attempts)
        assert listing.next_attempt_at <= timezone.now() + timedelta(seconds=2)
        sandbox.state.set_faults({})
        converge(channel)
        assert remote(sandbox, tee) == 6


def test_a_listing_remapped_while_a_push_to_its_old_item_succeeds_is_sent_the_hubs_number_on_the_new_one():
    """The same race when the old item's push succeeds: what it acknowledged was recorded as what the channel shows,
    over the remap's "unknown", and sent as the new item's expected number (Shopify's compare-and-set), which it
    refused; the difference was taken for sales made there and the new item published low (review finding,
    2026-12-08). Nor did a plain remap forget the old item's numbers. The new item is sent the hub's number."""
    wh = make_location()
    tee, other = make_sku(stock_at={wh: 6}), make_sku(stock_at={wh: 0})
    channel, sandbox = connect("shopify", {tee: 10, other: 2})  # the old item holds 10, the new one 2
    new_item = Listing.objects.get(channel=channel, sku=other).external_inventory_item_id
    Listing.objects.filter(channel=channel, sku=other).delete()
    listing = Listing.objects.get(channel=channel, sku=tee)
    with sandbox:
        sandbox.state.set_faults({"latency_ms": 1000})  # the remap lands while the old item's request waits
        while_pushing(channel, lambda: services.remap_listing(listing, external_inventory_item_id=new_item))
        assert remote(sandbox, tee) == 6  # the old item's push went through
        listing.refresh_from_db()
        assert (listing.remote_quantity, listing.pushed_quantity) == (None, None)
        sandbox.state.set_faults({})
        converge(channel)
        assert remote(sandbox, other) == 6
        assert not PushLog.objects.filter(listing=listing, ok=False).exists()  # no conflict on the way


def test_a_remapped_listing_sends_its_new_item_no_expected_number_from_the_old_one():
    wh = make_location()
    tee, other = make_sku(stock_at={wh: 6}), make_sku(stock_at={wh: 0})
    channel, sandbox = connect("shopify", {tee: 10, other: 2})
    new_item = Listing.objects.get(channel=channel, sku=other).external_inventory_item_id
    Listing.objects.filter(channel=channel, sku=other).delete()
    with sandbox:
        outbound.push_channel(channel.pk)
        listing = Listing.objects.get(channel=channel, sku=tee)
        assert remote(sandbox, tee) == 6 and listing.pushed_quantity == 6
        services.remap_listing(listing, external_inventory_item_id=new_item)
        outbound.push_channel(channel.pk)
        assert remote(sandbox, other) == 6
        assert not PushLog.objects.filter(listing=listing, ok=False).exists()  # not refused as stale first


def test_a_failure_counts_against_the_attempts_it_claimed_and_parks_at_the_last():
    channel, sandbox, tee = on_its_last_attempt()
    with sandbox:
        sandbox.state.set_faults({"error_rate": 1.0})
        outbound.push_channel(channel.pk)
        listing = Listing.objects.get(channel=channel)
        assert (listing.status, listing.attempts) == (ListingStatus.FAILED, outbound.MAX_ATTEMPTS)
        assert listing.lease_owner is None and listing.next_attempt_at is None


def test_compare_and_set_conflict_never_lands_a_stale_higher_number():
    """The channel sold 2 units we have not heard of; our next push must not undo that sale."""
    wh = make_location()
    tee = make_sku(stock_at={wh: 10})
    channel, sandbox = connect("shopify", {tee: 0})
    with sandbox:
        converge(channel)
        assert remote(sandbox, tee) == 10
        sandbox.state.patch_inventory([{"sku": tee.code, "quantity": 8}])  # a sale on Shopify, webhook not yet here
        stock.reserve(lines=[LineRequest(tee.code, 1)])  # meanwhile another channel sold 1
        converge(channel)
        assert remote(sandbox, tee) == 7  # 9 we wanted, less the 2 Shopify sold: not 9 over their sale
        log = PushLog.objects.filter(channel=channel, ok=True).order_by("-id").first()
        assert log.quantity == 7
        # The conflict was re-read through GraphQL, on its cost points: not on the REST bucket (2 calls a second),
        # whose 429s blocked the channel's pushes.
        assert sandbox.state.snapshot()["requests"].get("inventory_levels", 0) == 0


def conflict_over_an_unseen_sale(channel: Channel, sandbox, tee, wh) -> None:
    """The channel sells one unit we have not heard of (10 -> 9), then a delivery of 2 wakes a push: the
    compare-and-set conflicts and publishes 12 less the unseen sale."""
    sandbox.state.patch_inventory([{"sku": tee.code, "quantity": 9}])  # sold on Shopify, webhook on its way
    stock.receive(sku=tee, location=wh, quantity=2, reference="delivery")  # any change wakes a push
    converge(channel)
    assert remote(sandbox, tee) == 11


def test_a_conflict_estimate_that_counted_an_applied_sale_twice_is_undone_by_the_recheck():
    """A sale the hub already applied is still read as unseen (it landed on the channel while our last
    push was in flight): the conflict publishes one unit too few, safely, and the recheck restores it."""
    wh = make_location()
    tee = make_sku(stock_at={wh: 10})
    channel, sandbox = connect("shopify", {tee: 0})
    with sandbox:
        converge(channel)
        sandbox.state.patch_inventory([{"sku": tee.code, "quantity": 9}])  # the channel's sale...
        stock.commit(reservation_id=stock.reserve(lines=[LineRequest(tee.code, 1)])["id"])  # ...applied, remote not noted
        converge(channel)
        assert remote(sandbox, tee) == 8  # counted twice: low, never high
        listing = Listing.objects.get(channel=channel)
        assert listing.recheck_after is not None and listing.in_sync
        assert outbound.recheck_conflicted() == set()  # not before the sales in flight had their time
        assert outbound.recheck_conflicted(listing.recheck_after + timedelta(seconds=1)) == {channel.pk}
        converge(channel)
        assert remote(sandbox, tee) == 9
        assert_converged(channel, sandbox)


def test_a_recheck_waits_while_webhooks_from_before_the_conflict_are_unapplied():
    """The sale read as unseen may sit in the inbox (a backlog, a retry): republishing our number before it
    is applied would offer a unit that is gone."""
    wh = make_location()
    tee = make_sku(stock_at={wh: 10})
    channel, sandbox = connect("shopify", {tee: 0})
    with sandbox:
        converge(channel)
        conflict_over_an_unseen_sale(channel, sandbox, tee, wh)
        listing = Listing.objects.get(channel=channel)
        conflict_at = listing.recheck_after - timedelta(seconds=outbound.CONFLICT_RECHECK_SECONDS)
        sale = InboundEvent.objects.create(channel=channel, dedup_key="late-sale", topic="orders/create", headers={},
                                           body="{}", received_at=conflict_at - timedelta(seconds=1))
        due = listing.recheck_after + timedelta(seconds=1)
        assert outbound.recheck_conflicted(due) == set()  # the sale may be in there: keep the estimate
        assert Listing.objects.get(pk=listing.pk).recheck_after > listing.recheck_after
        InboundEvent.objects.filter(pk=sale.pk).update(status=InboundStatus.PROCESSED)
        assert outbound.recheck_conflicted(due + timedelta(minutes=1)) == {channel.pk}
        converge(channel)
        assert remote(sandbox, tee) == 12


def test_a_clean_push_drops_a_pending_recheck():
    wh = make_location()
    tee = make_sku(stock_at={wh: 10})
    channel, sandbox = connect("shopify", {tee: 0})
    with sandbox:
        converge(channel)
        conflict_over_an_unseen_sale(channel, sandbox, tee, wh)
        assert Listing.objects.get(channel=channel).recheck_after is not None
        stock.receive(sku=tee, location=wh, quantity=1, reference="delivery")  # pushed without a conflict
        converge(channel)
        assert Listing.objects.get(channel=channel).recheck_after is None


def test_a_recheck_keeps_a_sale_that_was_really_unseen():
    wh = make_location()
    tee = make_sku(stock_at={wh: 10})
    channel, sandbox = connect("shopify", {tee: 0})
    with sandbox:
        converge(channel)
        conflict_over_an_unseen_sale(channel, sandbox, tee, wh)
        stock.commit(reservation_id=stock.reserve(lines=[LineRequest(tee.code, 1)])["id"])  # the sale's webhook arrives
        converge(channel)
        outbound.recheck_conflicted(timezone.now() + timedelta(hours=1))
        converge(channel)
        assert remote(sandbox, tee) == 11
        assert_converged(channel, sandbox)


def test_the_claim_takes_exactly_what_dirty_listings_names():
    """The claim is plain SQL for speed; ``dirty_listings`` is the same rule in the ORM (sweeper, tests):
    they must agree on failed, leased, waiting, clean and out-of-date listings."""
    wh = make_location()
    skus = [make_sku(stock_at={wh: 5}) for _ in range(6)]
    channel, sandbox = connect("woocommerce", {s: 0 for s in skus})
    with sandbox:
        now = timezone.now()
        rows = list(Listing.objects.filter(channel=channel).order_by("id"))
        Listing.objects.filter(pk=rows[0].pk).update(pushed_version=F("desired_version"))  # clean
        Listing.objects.filter(pk=rows[1].pk).update(status=ListingStatus.FAILED)
        Listing.objects.filter(pk=rows[2].pk).update(lease_until=now + timedelta(seconds=30))  # another pusher's
        Listing.objects.filter(pk=rows[3].pk).update(next_attempt_at=now + timedelta(seconds=30))  # backing off
        Listing.objects.filter(pk=rows[4].pk).update(lease_until=now - timedelta(seconds=1))  # a dead pusher's
        expected = set(outbound.dirty_listings(channel, timezone.now()).values_list("pk", flat=True))
        assert expected == {rows[4].pk, rows[5].pk}
        first = outbound.claim(channel, limit=1, owner=uuid.uuid4())
        rest = outbound.claim(channel, limit=10, owner=uuid.uuid4())
        assert len(first) == 1  # never past the limit
        assert {listing.pk for listing, _ in first + rest} == expected
        assert outbound.claim(channel, limit=10, owner=uuid.uuid4()) == []  # all leased now


def test_a_channel_that_cannot_keep_up_is_sent_its_scarcest_skus_first_and_nothing_waits_long():
    """Amazon takes 5 updates a second: in a flash sale the number that matters is the one nearly sold out."""
    wh = make_location()
    plenty, gone, few = make_sku(stock_at={wh: 500}), make_sku(stock_at={wh: 0}), make_sku(stock_at={wh: 3})
    component = make_sku(stock_at={wh: 4})
    bundle = make_bundle({component: 2})  # 4 // 2 = 2 bundles
    channel, sandbox = connect("amazon", {s: 0 for s in (plenty, gone, few, bundle)})
    with sandbox:
        now = timezone.now()
        Listing.objects.filter(channel=channel).update(desired_version=F("pushed_version") + 1, dirty_since=now)
        order = []
        for _ in range(4):
            (listing, _), = outbound.claim(channel, limit=1, owner=uuid.uuid4())
            order.append(listing.sku_id)
        assert order == [gone.pk, bundle.pk, few.pk, plenty.pk]

        # Out of date for longer than the window, the plentiful SKU goes first all the same.
        Listing.objects.filter(channel=channel).update(lease_until=None, dirty_since=now)
        Listing.objects.filter(channel=channel, sku=plenty).update(
            dirty_since=now - timedelta(seconds=outbound.SCARCE_FIRST_MAX_AGE_SECONDS + 1))
        (listing, _), = outbound.claim(channel, limit=1, owner=uuid.uuid4())
        assert listing.sku_id == plenty.pk


def test_rate_limit_is_never_exceeded_with_several_pushers_at_once():
    wh = make_location()
    skus = [make_sku(stock_at={wh: i + 1}) for i in range(60)]
    channel, sandbox = connect("shopify", {s: 0 for s in skus}, credentials={"api": "rest"},
                               plan={"rest_bucket": 10, "rest_leak": 10})
    channel.rate_limit_capacity, channel.rate_limit_per_second = 10, 10
    channel.save()

    errors = []

    def pusher():
        try:
            for _ in range(20):
                outbound.push_channel(channel.pk, max_rounds=5)
                with transaction.atomic():  # rows locked in id order, as the pushers' own writes take them
                    ids = list(Listing.objects.select_for_update(of=("self",)).filter(channel=channel)
                               .order_by("id").values_list("id", flat=True))
                    Listing.objects.filter(pk__in=ids).update(next_attempt_at=None)
        except Exception as exc:  # noqa: BLE001 - a pusher thread that dies must fail the test, not vanish
            errors.append(exc)
        finally:
            connection.close()

    with sandbox:
        threads = [threading.Thread(target=pusher) for _ in range(4)]
        for t in threads:
            t.start()
        for t in threads:
            t.join()
        assert errors == []
        converge(channel, rounds=300)  # REST: one listing per request, 10 requests a second
        snapshot = sandbox.state.snapshot()
        assert snapshot["rate_limited"] == 0, snapshot
        assert_converged(channel, sandbox)


def test_channel_rules_shape_the_published_number():
    wh, store = make_location(priority=1), make_location(priority=2)
    tee = make_sku(stock_at={wh: 100, store: 50})
    channel, sandbox = connect("standard", {tee: 0}, channel_fields={
        "safety_buffer": 10, "share_percent": 50, "max_quantity": 30})
    with sandbox:
        converge(channel)
        assert remote(sandbox, tee) == 30  # (150 - 10) * 50% = 70, capped at 30
        Channel.objects.filter(pk=channel.pk).update(max_quantity=None, zero_below=100)
        channel.refresh_from_db()
        from channels_app.sync import mark_channel_dirty

        mark_channel_dirty(channel)
        converge(channel)
        assert remote(sandbox, tee) == 0  # 70 is below the threshold of 100


@pytest.mark.parametrize(("field", "value"), [("safety_buffer", 3), ("share_percent", 50), ("max_quantity", 5),
                                               ("zero_below", 2), ("include_backorders", False), ("conservative", True),
                                               ("sellout_guard_seconds", Decimal("1.5"))])
def test_a_change_to_any_rule_pushes_every_listing_of_the_channel_again(field, value):
    from channels_app import services
    from channels_app.rules import RULE_FIELDS

    assert field in RULE_FIELDS
    wh = make_location()
    tee = make_sku(stock_at={wh: 10})
    channel, sandbox = connect("standard", {tee: 0})
    with sandbox:
        converge(channel)
        before = Listing.objects.get(channel=channel).desired_version
        services.update_channel(channel=channel, data={field: value}, locations=None)
        assert Listing.objects.get(channel=channel).desired_version > before


def test_the_sellout_guard_holds_back_what_the_sku_sells_meanwhile_and_gives_it_back_once_it_stops(monkeypatch):
    """A channel with a sell-out guard of 2 seconds is shown the SKU less what it sells, at its pace of the last
    window (here 10 units in 10 s: 1 a second), in 2 seconds; another SKU, not selling, and a channel without the
    guard are shown everything. Once the window has passed with no sale, the sweeper's recheck gives the units
    back. Without it, at 200 orders a second the last units of a hot SKU, still shown on a channel whose number was
    on its way, sold twice."""
    from channels_app import rules

    monkeypatch.setattr(rules, "SALES_PACE_WINDOW_SECONDS", 10.0)  # the sales below stay in it however slow the run
    wh = make_location()
    tee, cap = make_sku(stock_at={wh: 100}), make_sku(stock_at={wh: 100})
    guarded, sandbox = connect("standard", {tee: 0, cap: 0}, channel_fields={"sellout_guard_seconds": Decimal("2")})
    plain, other = connect("woocommerce", {tee: 0, cap: 0})
    with sandbox, other:
        for _ in range(5):
            stock.sell(lines=[LineRequest(tee.code, 2)], channel="elsewhere")
        converge(guarded)
        converge(plain)
        assert (remote(sandbox, tee), remote(sandbox, cap)) == (88, 100)  # 90 - ceil(10 / 10 s x 2 s)
        assert (remote(other, tee), remote(other, cap)) == (90, 100)
        listing = Listing.objects.get(channel=guarded, sku=tee)
        assert listing.recheck_after is not None and Listing.objects.get(channel=guarded, sku=cap).recheck_after is None
        # Once the 10 s window has passed, not the 30 s of a conflict's recheck.
        assert listing.recheck_after - listing.pushed_at == timedelta(seconds=10)  # both the ack's time, however slow
        monkeypatch.setattr(rules, "SALES_PACE_WINDOW_SECONDS", 0.2)
        time.sleep(0.3)  # a window passes with no sale
        assert outbound.recheck_conflicted(listing.recheck_after) == {guarded.pk}  # as the sweeper will then
        converge(guarded)
        assert remote(sandbox, tee) == 90
        assert Listing.objects.get(channel=guarded, sku=tee).recheck_after is None


def test_the_sellout_guard_holds_back_only_what_sells_from_the_locations_feeding_the_channel(monkeypatch):
    """A channel fed by the store alone is not held back for a rush at the warehouse: its stock did not move (review
    finding, 2026-12-07: the pace counted every location's sales, and a store channel showed less, even 0, while the
    store still had every unit). A channel fed by both is held back for the warehouse's sales."""
    from channels_app import rules
    from channels_app.models import ChannelLocation

    monkeypatch.setattr(rules, "SALES_PACE_WINDOW_SECONDS", 10.0)
    wh, store = make_location(), make_location()
    tee = make_sku(stock_at={wh: 100})
    guard = {"sellout_guard_seconds": Decimal("2")}
    fed_by_store, store_sandbox = connect("standard", {tee: 0}, channel_fields=guard)
    ChannelLocation.objects.create(channel=fed_by_store, location=store, feeds_channel=True)
    pooled, pooled_sandbox = connect("woocommerce", {tee: 0}, channel_fields=guard)
    with store_sandbox, pooled_sandbox:
        stock.sell(lines=[LineRequest(tee.code, 10)], channel="elsewhere")  # from the warehouse: the store had none
        stock.receive(sku=tee, location=store, quantity=20, reference="delivery")
        converge(fed_by_store)
        converge(pooled)
        assert remote(store_sandbox, tee) == 20
        assert remote(pooled_sandbox, tee) == 108  # 90 + 20 less 10 units in 10 s for 2 s


def test_a_guarded_listings_recheck_waits_for_no_webhook_received_after_its_push(monkeypatch):
    """A conflict's recheck waits for the channel's webhooks received before the conflict (one may be the sale).
    A guarded listing's recheck (set for the pace window) must not wait for webhooks received after its push: with
    a recheck of conflicts shorter than the window it did, and a channel always receiving some held the units back
    for ever (review finding, 2026-12-07)."""
    from channels_app import rules

    wh = make_location()
    tee = make_sku(stock_at={wh: 100})
    channel, sandbox = connect("standard", {tee: 0}, channel_fields={"sellout_guard_seconds": Decimal("2")})
    monkeypatch.setattr(rules, "SALES_PACE_WINDOW_SECONDS", 10.0)
    monkeypatch.setattr(outbound, "CONFLICT_RECHECK_SECONDS", 2.0)
    with sandbox:
        stock.sell(lines=[LineRequest(tee.code, 5)], channel="elsewhere")
        converge(channel)
        listing = Listing.objects.get(channel=channel)
        assert listing.recheck_after is not None
        InboundEvent.objects.create(channel=channel, dedup_key="later", delivery_id="later", topic="orders/create",
                                    headers={}, body="{}", status=InboundStatus.PENDING,
                                    received_at=listing.pushed_at + timedelta(seconds=1))
        monkeypatch.setattr(rules, "SALES_PACE_WINDOW_SECONDS", 0.0)
        assert outbound.recheck_conflicted(listing.recheck_after) == {channel.pk}
        converge(channel)
        assert remote(sandbox, tee) == 95


def test_closing_a_location_takes_its_stock_off_every_channel_and_opening_it_puts_it_back(api):
    """Availability counts active locations only. Closing one changed no stock row, so nothing marked the channels
    out of date: they showed its units until the SKU's next stock write (review finding, 2026-12-07)."""
    wh, store = make_location(), make_location()
    tee = make_sku(stock_at={wh: 10, store: 40})
    channel, sandbox = connect("standard", {tee: 0})
    with sandbox:
        converge(channel)
        assert remote(sandbox, tee) == 50
        response = api.patch(f"/api/v1/locations/{store.code}/", {"is_active": False, "name": "Closed"}, format="json")
        assert response.status_code == 200, response.content
        assert response.json()["is_active"] is False and response.json()["name"] == "Closed"
        converge(channel)
        assert remote(sandbox, tee) == 10
        stock.set_location_active(location=store, active=True)
        converge(channel)
        assert remote(sandbox, tee) == 50


def test_a_channel_wide_re_push_takes_the_listings_in_id_order():
    """Every multi-row write of listings locks them in id order, so that two never deadlock. A channel's re-push (a
    rule changed, a resync) updated its listings in the order its plan read them: through an index on the channel,
    by SKU or by the channel's ids. Here the listing with the lower id has the higher SKU and ids; a pusher holding
    it and then taking the other deadlocked with the re-push holding the other and waiting for it (review finding,
    2026-12-07)."""
    from channels_app.sync import mark_channel_dirty
    from tests.channels.helpers import make_channel
    from tests.threads import run_together

    wh = make_location()
    low_sku, high_sku = make_sku(stock_at={wh: 5}), make_sku(stock_at={wh: 5})
    channel = make_channel("woocommerce")
    ids = {"external_inventory_item_id", "external_variant_id", "external_product_id", "external_sku"}
    first = Listing.objects.create(channel=channel, sku=high_sku, **dict.fromkeys(ids, "b"))
    second = Listing.objects.create(channel=channel, sku=low_sku, **dict.fromkeys(ids, "a"))
    holding, started = threading.Event(), threading.Event()

    def pusher():
        with transaction.atomic():
            Listing.objects.select_for_update().get(pk=first.pk)
            holding.set()
            started.wait(5)
            time.sleep(0.3)  # the re-push is waiting by now, holding what it took before
            Listing.objects.select_for_update().get(pk=second.pk)

    def re_push():
        holding.wait(5)
        with connection.cursor() as cursor:  # the channel's listings read through an index, as on a large table
            cursor.execute("SET enable_seqscan = off")
            cursor.execute("SET enable_bitmapscan = off")
        started.set()
        mark_channel_dirty(channel)

    assert run_together(pusher, re_push) == []
    assert all(x.desired_version == 2 for x in Listing.objects.filter(channel=channel))


def test_a_sku_taken_off_sale_is_shown_as_none_on_every_channel_and_again_once_back(api):
    """An inactive SKU's sales are refused (each channel order for it is parked), yet availability counted it and
    nothing marked its listings when the flag changed: channels went on selling it (review finding, 2026-12-07)."""
    wh = make_location()
    tee = make_sku(stock_at={wh: 12})
    kit = make_bundle({tee: 2})
    channel, sandbox = connect("standard", {tee: 0, kit: 0})
    with sandbox:
        converge(channel)
        assert (remote(sandbox, tee), remote(sandbox, kit)) == (12, 6)
        response = api.patch(f"/api/v1/skus/{tee.code}/", {"is_active": False, "name": "Old tee"}, format="json")
        assert response.status_code == 200, response.content
        assert response.json()["is_active"] is False and response.json()["name"] == "Old tee"
        converge(channel)
        assert (remote(sandbox, tee), remote(sandbox, kit)) == (0, 6)  # the kit is a SKU of its own, still on sale
        stock.set_sku_active(sku=tee, active=True)
        converge(channel)
        assert remote(sandbox, tee) == 12


def test_a_channel_answering_with_a_redirect_is_a_failure_and_its_token_stays_home():
    """Redirects were followed: a 302 to a POST became a GET elsewhere, its 200 was taken for the push, and the
    platform's token header (requests drops only Authorization) went to the other host (review finding,
    2026-12-07). A 3xx is a failure, shown on the listing, as the Standard Webhooks rules say of a delivery."""
    from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer

    from tests.channels.helpers import make_channel

    seen: list[dict] = []

    class Elsewhere(BaseHTTPRequestHandler):
        def _answer(self):
            seen.append(dict(self.headers))
            self.send_response(200)
            self.send_header("Content-Length", "2")
            self.end_headers()
            self.wfile.write(b"{}")

        do_GET = do_POST = _answer  # noqa: N815

        def log_message(self, *args):
            pass

    elsewhere = ThreadingHTTPServer(("127.0.0.1", 0), Elsewhere)

    class Redirect(BaseHTTPRequestHandler):
        def do_POST(self):  # noqa: N802
            self.rfile.read(int(self.headers.get("Content-Length") or 0))
            self.send_response(302)
            self.send_header("Location", f"http://127.0.0.1:{elsewhere.server_address[1]}/steal")
            self.send_header("Content-Length", "0")
            self.end_headers()

        def log_message(self, *args):
            pass

    redirect = ThreadingHTTPServer(("127.0.0.1", 0), Redirect)
    for server in (elsewhere, redirect):
        threading.Thread(target=server.serve_forever, daemon=True).start()
    try:
        tee = make_sku(stock_at={make_location(): 5})
        channel = make_channel("shopify", api_base_url=f"http://127.0.0.1:{redirect.server_address[1]}",
                               credentials={"access_token": "shpat_SECRET"}, publish_location_id="1")
        Listing.objects.create(channel=channel, sku=tee, external_inventory_item_id="9")
        outbound.push_channel(channel.pk)
    finally:
        for server in (elsewhere, redirect):
            server.shutdown()
    listing = Listing.objects.get(channel=channel)
    assert seen == [] and listing.pushed_version == 0 and "302" in listing.last_error


def test_an_amazon_sku_with_a_slash_or_a_space_is_pushed_to_its_own_path():
    """The SKU was put in the URL path as it is: "TEE/RED 1" went to another path, answered 404, and was parked
    (review finding, 2026-12-07)."""
    tee = make_sku("TEE/RED 1#A", stock_at={make_location(): 7})
    channel, sandbox = connect("amazon", {tee: 0})
    with sandbox:
        converge(channel)
        assert remote(sandbox, tee) == 7


def test_a_push_never_sends_past_its_lease(monkeypatch):
    """A request's attempts (3 s to connect, 10 to read, three times, with backoff) could run past the pusher's lease,
    and another pusher then took the listing and sent a newer number, which this one's late success overwrote
    (review finding, 2026-12-07). Here a 4 s lease leaves 3 s for sending against a channel answering in 5 s: the
    request gives up at the lease's deadline, is not tried again within it, and the listing is retried later."""
    monkeypatch.setattr(outbound, "LEASE_SECONDS", 4)
    tee = make_sku(stock_at={make_location(): 5})
    channel, sandbox = connect("standard", {tee: 0})
    with sandbox:
        sandbox.state.set_faults({"latency_ms": 5000})
        outbound.push_channel(channel.pk, max_rounds=1)
        listing = Listing.objects.get(channel=channel)
        assert listing.pushed_version == 0 and listing.status == ListingStatus.RETRYING
        assert "out of time" in listing.last_error or "Timeout" in listing.last_error
        assert listing.lease_until is None  # recorded within the lease, and let go


def test_a_bigcommerce_429_waits_for_its_window_to_reset():
    """BigCommerce sends no Retry-After: the wait is in X-Rate-Limit-Time-Reset-Ms. Taken as a second, the channel
    asked again every second, a 429 each time, until its window reset (review finding, 2026-12-07)."""
    from channels_app.adapters import adapter_for
    from channels_app.adapters.base import PushItem
    from channels_app.adapters.http import RateLimited

    tee = make_sku(stock_at={make_location(): 5})
    channel, sandbox = connect("bigcommerce", {tee: 0}, plan={"window_quota": 1, "window_ms": 10_000})
    with sandbox:
        adapter = adapter_for(channel)
        item = PushItem(listing=Listing.objects.get(channel=channel), quantity=5, expected_remote=None)
        adapter.push([item])
        with pytest.raises(RateLimited) as limited:
            adapter.push([item])
    assert 8 < limited.value.retry_after <= 10


def test_bundle_listing_follows_its_components():
    wh = make_location()
    tee, cap = make_sku(stock_at={wh: 10}), make_sku(stock_at={wh: 3})
    kit = make_bundle({tee: 2, cap: 1})
    channel, sandbox = connect("woocommerce", {kit: 0})
    with sandbox:
        converge(channel)
        assert remote(sandbox, kit) == 3
        stock.reserve(lines=[LineRequest(cap.code, 2)])  # a component sold alone elsewhere
        converge(channel)
        assert remote(sandbox, kit) == 1


def test_woocommerce_batches_at_most_100_per_request():
    wh = make_location()
    skus = [make_sku(stock_at={wh: 5}) for _ in range(230)]
    channel, sandbox = connect("woocommerce", {s: 0 for s in skus}, channel_fields={"push_batch_size": 500})
    with sandbox:
        converge(channel)
        calls = sandbox.state.snapshot()["requests"]
        assert sum(v for k, v in calls.items() if "batch" in k) == 3
        assert all(remote(sandbox, s) == 5 for s in skus[:5])


def test_our_own_orphaned_write_is_not_mistaken_for_a_channel_sale():
    """Regression (found by the SIGKILL e2e test): a pusher died after Shopify applied its request; the
    next pusher's compare-and-set fails on that number and must not subtract it as an unseen sale."""
    wh = make_location()
    tee = make_sku(stock_at={wh: 50})
    channel, sandbox = connect("shopify", {tee: 0})
    with sandbox:
        converge(channel)
        stock.reserve(lines=[LineRequest(tee.code, 7)])
        # The dead pusher's request for 43 reached Shopify, but nothing was recorded on our side.
        sandbox.state.patch_inventory([{"sku": tee.code, "quantity": 43}])
        Listing.objects.filter(channel=channel).update(attempted_quantity=43)
        stock.reserve(lines=[LineRequest(tee.code, 2)])
        converge(channel)
        assert remote(sandbox, tee) == 41


@pytest.mark.parametrize("undo", ["cancel", "refund"])
def test_a_channel_that_restocked_its_own_cancel_is_pushed_even_when_our_number_returns_to_the_last_pushed(undo):
    """Found by the quick chaos run: WooCommerce restocks a cancelled order on its own count. When a sale
    elsewhere then brings our number back to the one last pushed, that push must still be sent: skipped as
    "the channel already shows it", the channel kept showing the unit its cancel had put back."""
    from channels_app import inbound
    from channels_app.commands import ListingRef, OrderCancelled, OrderLineIn, OrderPlaced, RefundCreated, RefundLineIn

    wh = make_location()
    tee = make_sku(stock_at={wh: 10})
    channel, sandbox = connect("woocommerce", {tee: 0})
    with sandbox:
        converge(channel)
        sandbox.state.patch_inventory([{"sku": tee.code, "quantity": 9}])  # sold on the channel...
        # ...and heard of, stamped well after our push (one within inbound.SALE_TIME_MARGIN of it is pushed anyway)
        inbound.apply_command(channel, OrderPlaced(external_id="77", placed_at=timezone.now() + timedelta(seconds=3), lines=[
            OrderLineIn(external_id="1", listing=ListingRef(sku=tee.code), quantity=1)]))
        converge(channel)
        assert remote(sandbox, tee) == 9 and not PushLog.objects.filter(channel=channel, quantity=9).exists()  # no echo
        sandbox.state.patch_inventory([{"sku": tee.code, "quantity": 10}])  # the channel puts the unit back itself
        inbound.apply_command(channel, OrderCancelled(external_id="77") if undo == "cancel" else RefundCreated(
            external_order_id="77", refund_id="r1", lines=[RefundLineIn(external_line_id="1", quantity=1, restock=True)]))
        stock.sell(lines=[LineRequest(tee.code, 1)], channel="pos", key="pos-1")  # a sale elsewhere: 10 -> 9
        converge(channel)
        assert remote(sandbox, tee) == 9
        assert_converged(channel, sandbox)


@pytest.mark.parametrize("sold", ["after our number landed", "before it landed"])
def test_a_channel_sale_too_close_to_our_push_to_order_is_pushed_with_the_likely_number_expected(sold):
    """Shopify stamps the order to the second, so a sale of its own right after our push cannot be placed before
    or after our number. Skipped as older (the code before), or what the channel shows forgotten, the next push
    expected our old number; the channel held one less, the compare-and-set failed, and the hub hedged a unit
    below the truth. Taken off as a guess, the push expects the likely number and lands; had the sale come
    first, the conflict finds the channel holding our number and nothing sold: our number goes out as it is."""
    from channels_app import inbound
    from channels_app.commands import ListingRef, OrderLineIn, OrderPlaced

    wh = make_location()
    tee = make_sku(stock_at={wh: 10})
    channel, sandbox = connect("shopify", {tee: 0})
    with sandbox:
        converge(channel)
        sandbox.state.patch_inventory([{"sku": tee.code, "quantity": 9 if sold.startswith("after") else 10}])
        inbound.apply_command(channel, OrderPlaced(external_id="78", placed_at=timezone.now().replace(microsecond=0),
                                                   lines=[OrderLineIn(external_id="1", listing=ListingRef(sku=tee.code),
                                                                      quantity=1)]))
        listing = Listing.objects.get(channel=channel)
        assert (listing.remote_quantity, listing.remote_unsure) == (9, True)
        converge(channel)
        assert remote(sandbox, tee) == 9
        listing.refresh_from_db()
        assert listing.recheck_after is None and not listing.remote_unsure  # nothing hedged below the truth
        assert_converged(channel, sandbox)


def test_a_push_records_what_the_channel_acknowledged_and_when():
    """The push history the admin shows and the sync-lag rollups read: one row per listing pushed, with the
    version and number it carried, the platform's status, the lag since the oldest unpushed change and the
    correlation id; the channel's last push time moves."""
    wh = make_location()
    tee, cap = make_sku(stock_at={wh: 12}), make_sku(stock_at={wh: 3})
    channel, sandbox = connect("shopify", {tee: 0, cap: 0})
    with sandbox:
        converge(channel)
        outbound._last_push_noted.clear()
        stock.reserve(lines=[LineRequest(tee.code, 2), LineRequest(cap.code, 1)])
        dirty_since = Listing.objects.get(channel=channel, sku=tee).dirty_since
        before = timezone.now()
        summary = outbound.push_channel(channel.pk, correlation_id="cid-123")
        assert summary.pushed == 2
        listings = {x.sku_id: x for x in Listing.objects.filter(channel=channel)}
        logs = {x.listing_id: x for x in PushLog.objects.filter(channel=channel, created_at__gte=before)}
        assert set(logs) == {listings[tee.pk].pk, listings[cap.pk].pk}
        for sku, quantity in ((tee, 10), (cap, 2)):
            log = logs[listings[sku.pk].pk]
            assert (log.ok, log.http_status, log.quantity, log.version, log.error, log.correlation_id) == (
                True, 200, quantity, listings[sku.pk].pushed_version, "", "cid-123")
            assert before <= log.created_at <= timezone.now()
        assert 0 <= logs[listings[tee.pk].pk].lag_ms <= (timezone.now() - dirty_since).total_seconds() * 1000
        channel.refresh_from_db()
        assert channel.last_push_at is not None and channel.last_push_at >= before


def test_the_channels_last_push_time_is_written_at_most_once_a_second_per_process(monkeypatch):
    wh = make_location()
    tee = make_sku(stock_at={wh: 40})
    channel, sandbox = connect("shopify", {tee: 0})
    from django.test.utils import CaptureQueriesContext

    def pushes_writing_last_push_at(n: int) -> int:
        with CaptureQueriesContext(connection) as queries:
            for _ in range(n):
                stock.reserve(lines=[LineRequest(tee.code, 1)])
                assert outbound.push_channel(channel.pk).pushed == 1
        return sum("SET last_push_at" in q["sql"] for q in queries.captured_queries)

    with sandbox:
        converge(channel)
        outbound._last_push_noted.clear()
        monkeypatch.setattr(outbound, "LAST_PUSH_RESOLUTION", 60.0)  # however slow this machine runs the pushes
        assert pushes_writing_last_push_at(3) == 1  # the first push writes it, the others within the resolution skip
        # A failed push in between: the next success is written at once, so it reads as after the error.
        sandbox.state.set_faults({"error_rate": 1.0})
        stock.reserve(lines=[LineRequest(tee.code, 1)])
        assert outbound.push_channel(channel.pk).failed == 1
        sandbox.state.set_faults({})
        Listing.objects.filter(channel=channel).update(next_attempt_at=None)
        assert pushes_writing_last_push_at(1) == 1
        channel.refresh_from_db()
        assert channel.last_push_at > channel.last_push_error_at
        monkeypatch.setattr(outbound, "LAST_PUSH_RESOLUTION", 0.0)
        assert pushes_writing_last_push_at(3) == 3  # with no resolution every push writes it


def _commit_setting() -> str:
    with connection.cursor() as cursor:
        cursor.execute("SHOW synchronous_commit")
        return cursor.fetchone()[0]


def _claims_commit_setting(seen: list):
    def at_claim(execute, sql, params, many, context):
        if "SET lease_owner = %s, lease_until = %s" in sql:
            seen.append(context["connection"].connection.execute("SHOW synchronous_commit").fetchone()[0])
        return execute(sql, params, many, context)
    return at_claim


def test_a_push_does_not_wait_for_its_bookkeeping_to_reach_the_disk_and_leaves_the_connection_as_it_was():
    """A push round's lease, attempt and record commits were a third of its time, waiting for the flush; the
    drain and receipts on the same connection afterwards must wait for it again."""
    wh = make_location()
    tee = make_sku(stock_at={wh: 5})
    channel, sandbox = connect("shopify", {tee: 0})
    seen: list = []
    with sandbox:
        configured = _commit_setting()
        assert configured != "off"
        stock.reserve(lines=[LineRequest(tee.code, 1)])
        with connection.execute_wrapper(_claims_commit_setting(seen)):
            outbound.push_channel(channel.pk)
        assert seen == ["off"]
        assert _commit_setting() == configured
        assert remote(sandbox, tee) == 4


def test_behind_a_transaction_pooler_a_push_changes_nothing_in_the_session(settings):
    """A session SET would stay on the pooled server connection that the next client (a drain) gets."""
    settings.DB_TRANSACTION_POOLER = True
    wh = make_location()
    tee = make_sku(stock_at={wh: 5})
    channel, sandbox = connect("shopify", {tee: 0})
    seen: list = []
    statements: list[str] = []

    def log(execute, sql, params, many, context):
        statements.append(sql)
        return execute(sql, params, many, context)

    with sandbox:
        configured = _commit_setting()
        stock.reserve(lines=[LineRequest(tee.code, 1)])
        with connection.execute_wrapper(_claims_commit_setting(seen)), connection.execute_wrapper(log):
            outbound.push_channel(channel.pk)
        assert seen == [configured]
        assert not [sql for sql in statements if "synchronous_commit" in sql]
        assert remote(sandbox, tee) == 4


def test_commits_wait_for_the_disk_again_after_bookkeeping_that_failed():
    from inventory_app.statements import commits_without_flush_wait

    configured = _commit_setting()
    with pytest.raises(ZeroDivisionError), commits_without_flush_wait():
        assert _commit_setting() == "off"
        1 / 0  # noqa: B018
    assert _commit_setting() == configured


def test_a_rounds_bookkeeping_has_one_shape_whatever_its_size():
    """The statements that note what a round sends and record what the channels acknowledged have the same text
    for one listing as for three, so PostgreSQL prepares each once per connection; built row by row (a CASE
    per listing) every size was a new statement, parsed and planned on every round."""
    from django.test.utils import CaptureQueriesContext

    wh = make_location()
    skus = [make_sku(stock_at={wh: 10}) for _ in range(3)]
    channel, sandbox = connect("shopify", {sku: 0 for sku in skus})

    def bookkeeping(sold):
        stock.reserve(lines=[LineRequest(sku.code, 1) for sku in sold])
        with CaptureQueriesContext(connection) as queries:
            assert outbound.push_channel(channel.pk).pushed == len(sold)
        return {q["sql"] for q in queries.captured_queries
                if "attempted_quantity =" in q["sql"] or "pushed_version =" in q["sql"] or "pushlog" in q["sql"]}

    with sandbox:
        converge(channel)
        one, three = bookkeeping(skus[:1]), bookkeeping(skus)
        assert len(one) == 3 and one == three
        assert_converged(channel, sandbox)
        with connection.cursor() as cursor:
            cursor.execute("SELECT statement FROM pg_prepared_statements")
            prepared = {row[0] for row in cursor.fetchall()}
        numbered = set()
        for sql in one:
            parts = sql.split("%s")
            numbered.add("".join(part + (f"${i + 1}" if i < len(parts) - 1 else "") for i, part in enumerate(parts)))
        assert numbered <= prepared


def test_a_rounds_failures_are_recorded_in_two_statements_whatever_their_number():
    """A round's failures are recorded as its successes are: one update of the listings, one insert of the log, the
    same two statements for one failure as for three. Each was two ORM statements of its own, and a Shopify channel
    selling fast fails a few dozen listings a second (refused with a conflict, THROTTLED) on the cores the inbox
    drain needs. What they record is what one failure recorded."""
    from django.test.utils import CaptureQueriesContext

    wh = make_location()
    skus = [make_sku(stock_at={wh: 10}) for _ in range(3)]
    channel, sandbox = connect("woocommerce", {sku: 0 for sku in skus})

    def failing(sold):
        stock.reserve(lines=[LineRequest(sku.code, 1) for sku in sold])
        Listing.objects.filter(channel=channel).update(next_attempt_at=None)
        with CaptureQueriesContext(connection) as queries:
            assert outbound.push_channel(channel.pk).failed == len(sold)
        return [q["sql"] for q in queries.captured_queries  # the claim reads last_error too: not a record
                if ("last_error" in q["sql"] or "pushlog" in q["sql"].lower()) and "picked" not in q["sql"]]

    with sandbox:
        converge(channel)
        sandbox.state.set_faults({"error_rate": 1.0})
        one, three = failing(skus[:1]), failing(skus)
        assert len(one) == 2 and one == three
        for listing in Listing.objects.filter(channel=channel):
            assert listing.status == ListingStatus.RETRYING and listing.lease_owner is None
            assert "50" in listing.last_error and listing.next_attempt_at > timezone.now()
        logged = PushLog.objects.filter(channel=channel, ok=False)
        assert logged.count() == 4 and all("50" in log.error and log.http_status >= 500 for log in logged)
        assert Listing.objects.get(channel=channel, sku=skus[0]).attempts == 2


@pytest.mark.parametrize("variable", [None, "HTTPS_PROXY", "REQUESTS_CA_BUNDLE", "CURL_CA_BUNDLE"])
def test_channel_sessions_read_proxy_and_ca_settings_only_where_the_environment_has_them(monkeypatch, variable):
    import requests.utils

    from channels_app.adapters import http

    for name in ("HTTP_PROXY", "HTTPS_PROXY", "ALL_PROXY", "NO_PROXY", "REQUESTS_CA_BUNDLE", "CURL_CA_BUNDLE"):
        for spelling in (name, name.lower()):
            monkeypatch.delenv(spelling, raising=False)
    if variable:
        monkeypatch.setenv(variable, "http://proxy.internal:3128" if variable.endswith("PROXY") else "/etc/ssl/ours.pem")
    session = http.session_for(f"env-{variable}-{uuid.uuid4().hex}")
    assert session.trust_env is (variable == "HTTPS_PROXY")
    # What a request would take from the environment (requests' own reading of it) is what the session holds.
    url = "https://shop.example/admin/api/graphql.json"
    from_environment = requests.Session().merge_environment_settings(url, {}, None, None, None)
    assert session.merge_environment_settings(url, {}, None, None, None) == from_environment
    assert from_environment["verify"] == ("/etc/ssl/ours.pem" if variable and variable.endswith("BUNDLE") else True)
    if variable == "HTTPS_PROXY":
        assert requests.utils.get_environ_proxies("https://shop.example")["https"] == "http://proxy.internal:3128"


def test_shopify_graphql_cost_in_each_answer_corrects_the_bucket():
    """Shopify's GraphQL limit is in cost points and each answer says how many the shop has left
    (``extensions.cost.throttleStatus``), points other apps of the shop spend too. The bucket (in calls) must
    take that in, as it takes in the REST call-limit header: here the shop has 100 points and a mutation asks
    for 10, so after one push 9 calls are left, not the 99 of the bucket's own count."""
    from channels_app.ratelimit import limiter_for
    from hub.redis import get_redis

    wh = make_location()
    tee = make_sku(stock_at={wh: 12})
    channel, sandbox = connect("shopify", {tee: 0}, plan={"graphql_bucket": 100, "graphql_restore": 0.001})
    with sandbox:
        converge(channel)
        assert remote(sandbox, tee) == 12
        tokens = float(get_redis().hget(limiter_for(channel).key, "tokens"))
    assert tokens <= 9


def test_a_throttled_shopify_channel_waits_for_the_points_it_lacks_not_a_second():
    """THROTTLED says, in its answer's cost, what the call asked for, what the shop has left and how fast points come
    back: the wait is the points missing over that rate. Here 10 points a second on a bucket of 20: after two
    mutations (10 points each) the third lacks about 10 points, a second's worth; with 100 a second, a tenth of one
    (until 2026-12-07: a second whatever the shop said)."""
    from channels_app.adapters import adapter_for
    from channels_app.adapters.base import PushItem
    from channels_app.adapters.http import RateLimited

    wh = make_location()
    tee = make_sku(stock_at={wh: 12})
    for restore, most in ((10.0, 1.0), (100.0, 0.1)):
        channel, sandbox = connect("shopify", {tee: 0}, plan={"graphql_bucket": 20, "graphql_restore": restore})
        with sandbox:
            adapter = adapter_for(channel)
            item = PushItem(listing=Listing.objects.get(channel=channel), quantity=5, expected_remote=None)
            with pytest.raises(RateLimited) as throttled:
                for _ in range(10):
                    adapter.push([item])
        assert most / 2 < throttled.value.retry_after <= most


def test_a_conflict_whose_re_read_is_throttled_waits_for_the_mutation_and_the_read_both():
    """Every listing of a Shopify channel stale (its sales in flight) and the shop out of points: each attempt
    spends 10 points on the mutation, which the compare-and-set refuses, then needs 1 + 2 per listing for the re-read
    (61 here). A THROTTLED re-read waited for the re-read's points alone; the next attempt's mutation spent 10 of
    them, the re-read was refused again, for ever (at 200 orders/s a channel stayed 47 listings behind until the
    run ended, 2026-12-07). The wait covers both."""
    from channels_app.adapters import adapter_for
    from channels_app.adapters.http import RateLimited
    from channels_app.ratelimit import limiter_for

    wh = make_location()
    skus = [make_sku(stock_at={wh: 10}) for _ in range(30)]
    channel, sandbox = connect("shopify", {sku: 0 for sku in skus}, plan={"graphql_bucket": 200, "graphql_restore": 100})
    with sandbox:
        converge(channel)
        sandbox.state.patch_inventory([{"sku": sku.code, "quantity": 9} for sku in skus])  # all sold there, unheard of
        for sku in skus:
            stock.receive(sku=sku, location=wh, quantity=2, reference="delivery")
        with sandbox.state.lock:
            sandbox.state.graphql_bucket.available = 0.0
        converge(channel, rounds=15)
        assert all(remote(sandbox, sku) == 11 for sku in skus)  # our 12 less the sale we had not heard of
        # The wait itself, which the convergence above shows only while a round takes less than the points' restore:
        # the read's 61 points and the mutation's 10, out of an empty bucket at 100 a second (without the
        # mutation's: 0.61 s).
        ids = [listing.external_inventory_item_id for listing in Listing.objects.filter(channel=channel)]
        adapter = adapter_for(channel)
        limiter_for(channel).reset()  # the points spent by another app of the shop: our bucket believes it has them
        with sandbox.state.lock:
            sandbox.state.graphql_bucket.available = 0.0
        with pytest.raises(RateLimited) as throttled:
            adapter.read_levels(ids, {str(LOCATION)})
        assert 0.65 < throttled.value.retry_after <= 0.71  # less the points restored in the milliseconds meanwhile


def test_a_throttled_re_read_at_a_second_location_waits_for_the_reads_before_it_too():
    """A conflict's re-read reads each location (and each 250 items) in a call of its own. THROTTLED on the second,
    the next attempt spends the mutation's points and the first read's again before it comes back to it: the wait
    covers all three, or a shop that restores only what the wait asked for refuses the second read for ever (until
    2026-12-07 the wait covered the mutation and the refused read only). Here 5 items: 11 points a read, 10 a
    mutation; 15 points in the bucket, 10 restored a second: the first read leaves 4, the second lacks 7, and
    the wait is (10 + 11 + 11 - 4) / 10 = 2.8 s (without the first read's points, 1.7 s)."""
    from channels_app.adapters import adapter_for
    from channels_app.adapters.http import RateLimited

    wh = make_location()
    skus = [make_sku(stock_at={wh: 10}) for _ in range(5)]
    channel, sandbox = connect("shopify", {sku: 3 for sku in skus}, plan={"graphql_bucket": 15, "graphql_restore": 10})
    with sandbox:
        second = LOCATION + 1
        for item in list(sandbox.state.items):
            sandbox.state.connect(item, second)
        with sandbox.state.lock:
            sandbox.state.graphql_bucket.available = 15.0
        adapter = adapter_for(channel)
        ids = [listing.external_inventory_item_id for listing in Listing.objects.filter(channel=channel)]
        with pytest.raises(RateLimited) as throttled:
            adapter.read_levels(ids, {str(LOCATION), str(second)})
    assert 2.6 < throttled.value.retry_after <= 2.8


@contextlib.contextmanager
def cap_in_conflict(around_read, channel_fields: dict | None = None):
    """TEE and CAP on a Shopify sandbox, in sync; CAP sold on Shopify (its webhook on its way); both receive 2
    units and one push is made, its conflict's re-read of levels wrapped by ``around_read(cap's item, read, the
    sandbox's state)`` (under the sandbox's lock: it changes the item itself). Yields (channel, sandbox, tee, cap), the re-read as
    the sandbox's own again."""
    wh = make_location()
    tee, cap = make_sku(stock_at={wh: 10}), make_sku(stock_at={wh: 10})
    channel, sandbox = connect("shopify", {tee: 0, cap: 0}, channel_fields=channel_fields)
    with sandbox:
        converge(channel)
        original = sandbox.state._gql_items
        item = next(item for item in sandbox.state.items if item.sku == cap.code)
        sandbox.state._gql_items = lambda *args: around_read(item, lambda: original(*args), sandbox.state)
        sandbox.state.patch_inventory([{"sku": cap.code, "quantity": 9}])
        for sku in (tee, cap):
            stock.receive(sku=sku, location=wh, quantity=2, reference="delivery")
        outbound.push_channel(channel.pk)
        sandbox.state._gql_items = original
        yield channel, sandbox, tee, cap


def read_then_sell(item, read, state=None):
    """A conflict's re-read after which the item sells again on the channel: the retry is refused too."""
    answer = read()
    item.touch(item.quantity - 1)
    return answer


def test_a_listing_refused_only_for_another_listings_conflict_goes_out_in_the_same_round():
    """A compare-and-set refuses the whole request. Here CAP's number changes on Shopify again while our conflict
    is being reconciled (its sales keep coming), so the retry is refused too: CAP backs off, as a listing in
    conflict should, and TEE, refused only with it, is sent once more on its own at once. Until 2026-12-07 it waited
    for a backoff (half a second to a second, more each time), then for the next round; at 200 orders/s another
    conflict there refused many such listings again, seconds behind."""
    with cap_in_conflict(read_then_sell) as (channel, sandbox, tee, cap):
        assert remote(sandbox, tee) == 12
        refused = Listing.objects.get(channel=channel, sku=tee)
        assert refused.in_sync and refused.attempts == 0
        conflicted = Listing.objects.get(channel=channel, sku=cap)
        assert "twice" in conflicted.last_error and conflicted.attempts == 1


def spend_every_token():
    from channels_app.ratelimit import limiter_for

    limiter = limiter_for(Channel.objects.get(kind="shopify"))
    while limiter.try_acquire() == 0:
        pass


def test_a_listing_refused_only_for_another_listings_conflict_waits_for_no_backoff_without_a_token():
    """The bystanders' request of their own takes a rate-limit token; with none left they go in the next round,
    their attempts unspent, with no backoff."""
    from channels_app.ratelimit import limiter_for

    reads = []

    def sell_and_spend_at_the_second_read(item, read, state):
        reads.append(item)
        answer = read_then_sell(item, read)
        if len(reads) == 2:  # the retry's: the retry itself had its token
            spend_every_token()
        return answer

    # Tokens come back at one a hundred seconds: none between the spending and the bystanders' request.
    with cap_in_conflict(sell_and_spend_at_the_second_read, {"rate_limit_per_second": Decimal("0.01")}) as (
            channel, sandbox, tee, cap):
        assert len(reads) == 2
        refused = Listing.objects.get(channel=channel, sku=tee)
        assert "batch refused" in refused.last_error and refused.attempts == 0
        assert refused.next_attempt_at <= timezone.now()
        limiter_for(channel).refund(100)
        outbound.push_channel(channel.pk)  # the next round: no time has passed
        assert remote(sandbox, tee) == 12
        assert Listing.objects.get(channel=channel, sku=tee).in_sync


def test_when_the_bystanders_own_request_fails_the_retrys_outcome_stands():
    """The bystanders' request of their own fails (the channel answers 5xx): what the retry found stands. The
    listing in conflict is recorded as refused twice; the bystanders, refused only with it, go in the next round
    with their attempts unspent (review finding, 2026-12-07: the error replaced the whole batch's results, every
    listing failed on its own account, or was parked on a permanent error)."""
    from channels_app.sandbox.base import Faults

    reads = []

    def sell_then_fail_the_channel(item, read, state):
        reads.append(item)
        answer = read_then_sell(item, read)
        if len(reads) == 2:  # the retry's re-read: the next request is the bystanders' own
            state.faults = Faults(error_rate=1.0)  # set_faults would wait for the lock this read holds
        return answer

    with cap_in_conflict(sell_then_fail_the_channel) as (channel, sandbox, tee, cap):
        assert len(reads) == 2
        assert sandbox.state.injected["5xx"] >= 1  # the bystanders' request was sent (and retried), and failed
        refused = Listing.objects.get(channel=channel, sku=tee)
        assert "batch refused" in refused.last_error and refused.attempts == 0 and refused.status == ListingStatus.RETRYING
        conflicted = Listing.objects.get(channel=channel, sku=cap)
        assert "twice" in conflicted.last_error and conflicted.attempts == 1


def test_when_the_bystanders_own_request_is_rate_limited_the_channel_waits_for_it():
    """A 429 (or THROTTLED) on the bystanders' request of their own blocks the channel's bucket for its Retry-After,
    as on any push: swallowed with the other errors, the next round claimed them at once and met the limit again
    (review finding, 2026-12-07)."""
    from channels_app.ratelimit import limiter_for
    from channels_app.sandbox.base import Faults

    reads = []

    def sell_then_limit_the_channel(item, read, state):
        reads.append(item)
        answer = read_then_sell(item, read)
        if len(reads) == 2:
            state.faults = Faults(burst_429=1, retry_after=7)
        return answer

    with cap_in_conflict(sell_then_limit_the_channel) as (channel, sandbox, tee, cap):
        assert sandbox.state.injected["429"] == 1
        refused = Listing.objects.get(channel=channel, sku=tee)
        assert "batch refused" in refused.last_error and refused.attempts == 0
        wait = limiter_for(channel).try_acquire()
    assert 6 < wait <= 7


def test_a_listing_refused_twice_by_compare_and_set_is_pushed_again_soon_and_later_each_time_in_a_row():
    """Refused twice by a compare-and-set: a race with the channel's own sales, whose webhooks are on their way.
    Pushed again after CONFLICT_RETRY_SECONDS, twice that after a second such refusal in a row, where the
    exponential backoff of a failing channel starts at half a second to a second (it held the hot SKUs of a Shopify
    channel selling 25 orders a second seconds behind, 2026-12-07)."""
    with cap_in_conflict(read_then_sell) as (channel, sandbox, tee, cap):
        conflicted = Listing.objects.get(channel=channel, sku=cap)
        first = (conflicted.next_attempt_at - timezone.now()).total_seconds()
        assert conflicted.attempts == 1 and 0 < first <= outbound.CONFLICT_RETRY_SECONDS
        original = sandbox.state._gql_items
        item = next(item for item in sandbox.state.items if item.sku == cap.code)

        def refused_twice_again() -> float:
            """Push CAP again at once, refused twice again; seconds from the push to its next attempt."""
            Listing.objects.filter(pk=conflicted.pk).update(next_attempt_at=None)
            sandbox.state._gql_items = lambda *args: read_then_sell(item, lambda: original(*args))
            sandbox.state.patch_inventory([{"sku": cap.code, "quantity": item.quantity - 1}])
            before = timezone.now()
            outbound.push_channel(channel.pk)
            sandbox.state._gql_items = original
            conflicted.refresh_from_db()
            assert "twice" in conflicted.last_error
            return (conflicted.next_attempt_at - before).total_seconds()  # the push's own time on top, a few ms

        # The exponential backoff would be 1-2 s at the second, 2-4 s at the third; one more step each, 0.5 and 0.75.
        second = refused_twice_again()
        assert conflicted.attempts == 2
        assert 2 * outbound.CONFLICT_RETRY_SECONDS <= second < 2 * outbound.CONFLICT_RETRY_SECONDS + 0.4
        third = refused_twice_again()
        assert conflicted.attempts == 3
        assert 4 * outbound.CONFLICT_RETRY_SECONDS <= third < 4 * outbound.CONFLICT_RETRY_SECONDS + 0.4


def test_a_shopify_conflict_reads_only_the_items_its_errors_name():
    """A compare-and-set refusal names each stale item by its index (``field``: input, quantities, i, ...): only
    those are read again, at 1 + 2 cost points each, not the whole request (1 + 2 per item, up to 250, which ran a
    selling channel out of points). The others are sent again with what we expected of them."""
    wh = make_location()
    tee, cap, hat = make_sku(stock_at={wh: 10}), make_sku(stock_at={wh: 10}), make_sku(stock_at={wh: 10})
    channel, sandbox = connect("shopify", {tee: 0, cap: 0, hat: 0})
    with sandbox:
        converge(channel)
        original, read = sandbox.state._gql_items, []

        def recording(query, variables, version):
            read.append(list(variables["ids"]))
            return original(query, variables, version)

        sandbox.state._gql_items = recording
        sandbox.state.patch_inventory([{"sku": cap.code, "quantity": 9}])  # sold on Shopify, webhook on its way
        for sku in (tee, cap, hat):
            stock.receive(sku=sku, location=wh, quantity=2, reference="delivery")
        outbound.push_channel(channel.pk)
        cap_item = Listing.objects.get(channel=channel, sku=cap).external_inventory_item_id
        assert read == [[f"gid://shopify/InventoryItem/{cap_item}"]]
        assert (remote(sandbox, tee), remote(sandbox, cap), remote(sandbox, hat)) == (12, 11, 12)


def test_a_shopify_conflict_finds_a_listing_stored_by_its_gid():
    """Listings may hold Shopify's ids as gids (``gid://shopify/InventoryItem/…``): the conflict's re-read must find
    them, or the retry goes out without compare-and-set over the channel's sale (review finding, 2026-12-07)."""
    wh = make_location()
    tee = make_sku(stock_at={wh: 10})
    channel, sandbox = connect("shopify", {tee: 0})
    listing = Listing.objects.get(channel=channel)
    Listing.objects.filter(pk=listing.pk).update(
        external_inventory_item_id=f"gid://shopify/InventoryItem/{listing.external_inventory_item_id}")
    with sandbox:
        converge(channel)
        sandbox.state.patch_inventory([{"sku": tee.code, "quantity": 8}])  # a sale on Shopify, webhook not yet here
        stock.reserve(lines=[LineRequest(tee.code, 1)])
        converge(channel)
        assert remote(sandbox, tee) == 7


def test_a_listing_an_error_names_but_found_not_stale_fails_on_its_own_account():
    """A listing a refusal names, whose count is back to what we expected by the time it is read, is not an
    innocent bystander of another listing's conflict: its failure counts and backs off (review finding,
    2026-12-07: it was retried at once, for ever, whatever the error)."""
    def count_back_then_read(item, read, state):
        item.touch(10)
        return read()

    with cap_in_conflict(count_back_then_read) as (channel, sandbox, tee, cap):
        named = Listing.objects.get(channel=channel, sku=cap)
        assert named.last_error.startswith("refused") and named.attempts == 1
        assert named.next_attempt_at > timezone.now()
        assert remote(sandbox, tee) == 12  # the bystander went out with the retry


def test_conflicts_re_reads_and_retries_never_exceed_shopifys_points_with_several_pushers():
    """Shopify's limit is in GraphQL cost points. A compare-and-set conflict costs a re-read (1 + 2 per item) and a
    second mutation (10) beyond the push the bucket paid for: unmetered, several pushers in conflict at once ran the
    shop out of points, and it answered THROTTLED (counted by the sandbox as a refusal, as Shopify counts it)."""
    import random

    from channels_app import metrics
    from channels_app.sync import update_listings_in_order

    wh = make_location()
    skus = [make_sku(stock_at={wh: 500}) for _ in range(12)]
    channel, sandbox = connect("shopify", {sku: 500 for sku in skus}, plan={"graphql_bucket": 150, "graphql_restore": 60})
    channel.rate_limit_capacity, channel.rate_limit_per_second = 15, 6  # calls at a mutation's 10 points
    channel.save()
    rng = random.Random(7)

    def push():
        outbound.push_channel(channel.pk, max_rounds=3)
        with transaction.atomic():  # in id order, as the pushers' own writes lock listings
            update_listings_in_order(Listing.objects.filter(channel=channel), next_attempt_at=None)
        time.sleep(0.01)

    def sell_on_shopify_and_receive():
        sku = rng.choice(skus)
        with sandbox.state.lock:  # a sale on Shopify whose webhook has not come: the next CAS is stale
            item = next(i for i in sandbox.state.items if i.sku == sku.code)
            item.touch(item.quantity - 1)
        stock.receive(sku=rng.choice(skus), location=wh, quantity=1, reference="delivery")
        time.sleep(0.02)

    with sandbox:
        converge(channel)
        with running(push, push, push, sell_on_shopify_and_receive):
            time.sleep(4)
        snapshot = sandbox.state.snapshot()
        assert snapshot["rate_limited"] == 0, snapshot
    conflicts = metrics.RETRIES.labels(kind="push_conflict", channel=channel.slug)._value.get()
    assert conflicts >= 10 and PushLog.objects.filter(channel=channel).count() >= 20  # pushed, and in conflict


def test_a_conflict_waits_for_its_re_read_and_retry_tokens_instead_of_spending_the_mutation_again():
    """The bucket holds three calls: after the mutation, the conflict's re-read (25 points, 2.5 calls) and its
    retry (1 call) wait for tokens within the push, and the round ends with the channel right. Giving up on them
    instead sent the refused mutation again in the next round, which spent the tokens the re-read was waiting
    for (a shop short of points never got its re-read: the livelock met when metering was first tried)."""
    wh = make_location()
    skus = [make_sku(stock_at={wh: 10}) for _ in range(12)]
    channel, sandbox = connect("shopify", {sku: 0 for sku in skus}, plan={"graphql_bucket": 1000, "graphql_restore": 100})
    with sandbox:
        converge(channel, rounds=60)
        channel.rate_limit_capacity, channel.rate_limit_per_second = 3, 5
        channel.save()
        sandbox.state.patch_inventory([{"sku": sku.code, "quantity": 9} for sku in skus])  # all sold there, unheard of
        for sku in skus:
            stock.receive(sku=sku, location=wh, quantity=2, reference="delivery")
        from channels_app.ratelimit import limiter_for

        limiter_for(channel).reset()
        summary = outbound.push_channel(channel.pk)
        assert summary.pushed == 12 and summary.failed == 0, summary
        assert all(remote(sandbox, sku) == 11 for sku in skus)  # our 12 less the sale we had not heard of
        assert sandbox.state.snapshot()["rate_limited"] == 0


def test_a_change_dated_weeks_back_is_pushed_and_recorded():
    """A count as of a month ago dates the listing's change a month back: its lag, 2.6e9 ms, overflowed the log's
    integer column, the insert failed and rolled back the round's record; the channel had the number, the hub never
    knew, and pushed it again every lease, for ever (review finding, 2026-12-07). The lag is kept within range."""
    wh = make_location()
    tee, cap = make_sku(stock_at={wh: 10}), make_sku(stock_at={wh: 10})
    channel, sandbox = connect("standard", {tee: 10, cap: 10})
    with sandbox:
        converge(channel)
        stock.count(sku=tee, location=wh, on_hand=7, as_of=timezone.now() - timedelta(days=30), source="stocktake")
        stock.receive(sku=cap, location=wh, quantity=1, reference="delivery")
        outbound.push_channel(channel.pk)
        assert all(listing.in_sync for listing in Listing.objects.filter(channel=channel))
        assert PushLog.objects.filter(channel=channel, listing__sku=tee).latest("id").lag_ms == outbound.MAX_LAG_MS


def test_a_conflict_whose_tokens_do_not_come_within_the_lease_spends_no_attempt_and_waits():
    """The re-read's tokens will not be there before the push's lease ends (a bucket refilling once a hundred
    seconds): nothing more is sent, and the listings are released to wait for the tokens, no attempt spent and not
    failed (OutOfTokens, our own bucket's: the platform refused nothing, so its bucket is not blocked either)."""
    from channels_app.ratelimit import limiter_for

    wh = make_location()
    skus = [make_sku(stock_at={wh: 10}) for _ in range(12)]
    channel, sandbox = connect("shopify", {sku: 0 for sku in skus})
    with sandbox:
        converge(channel, rounds=60)
        channel.rate_limit_capacity, channel.rate_limit_per_second = 3, Decimal("0.01")
        channel.save()
        sandbox.state.patch_inventory([{"sku": sku.code, "quantity": 9} for sku in skus])  # all sold there, unheard of
        for sku in skus:
            stock.receive(sku=sku, location=wh, quantity=2, reference="delivery")
        limiter_for(channel).reset()
        summary = outbound.push_channel(channel.pk)  # the mutation (1 call) is refused; the re-read needs 2.5 of 2
        assert summary.pushed == 0 and summary.failed == 0 and summary.retry_in > 10, summary
        for listing in Listing.objects.filter(channel=channel):
            assert listing.attempts == 0 and listing.status != ListingStatus.FAILED and listing.lease_owner is None
            assert "no rate-limit tokens" in listing.last_error
        assert sandbox.state.snapshot()["rate_limited"] == 0
        assert limiter_for(channel).try_acquire() == 0  # two tokens left in our bucket: not blocked
