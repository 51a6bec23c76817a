"""Adapters against the platforms' sandboxes: Amazon's announced rate, a Standard channel's per-row answer, and a 5xx
that says when to come back (Retry-After). Each test failed before its fix (review of the adapters, 2026-12)."""

from __future__ import annotations

import time
from datetime import timedelta

import pytest
import requests
from django.utils import timezone

from channels_app import outbound
from channels_app.adapters import adapter_for, http
from channels_app.adapters.standard import signed_headers
from channels_app.models import Listing, ListingStatus
from channels_app.sandbox import start_sandbox
from tests.channels.helpers import STANDARD_SECRET
from tests.channels.sandboxed import connect, remote
from tests.factories import make_location, make_sku

pytestmark = pytest.mark.django_db(transaction=True)


# -- Amazon: x-amzn-RateLimit-Limit --------------------------------------------------------------------------------

def test_amazon_paces_by_the_rate_its_answers_announce():
    """The selling partner's usage plan here is 1 request/s (Amazon announces it in x-amzn-RateLimit-Limit; plans
    differ per account and operation and can be lowered dynamically). After the first answers the pusher paces at
    about 1/s; it went on at the published 5/s and collected 429s."""
    wh = make_location()
    skus = [make_sku(stock_at={wh: n + 1}) for n in range(8)]
    channel, sandbox = connect("amazon", {sku: 0 for sku in skus}, plan={"rate": 1.0, "burst": 1})
    with sandbox:
        deadline = time.monotonic() + 20
        while time.monotonic() < deadline:
            Listing.objects.filter(channel=channel).exclude(status=ListingStatus.FAILED).update(next_attempt_at=None)
            summary = outbound.push_channel(channel.pk)
            if all(remote(sandbox, s) == i + 1 for i, s in enumerate(skus)):
                break
            time.sleep(min(summary.retry_in or 0.05, 1.0))
        state = sandbox.state.snapshot()
        assert all(remote(sandbox, s) == i + 1 for i, s in enumerate(skus))
        # A burst at the start is forgivable (the rate is only learnt from the first answer); a 429 after that is not.
        assert state["rate_limited"] <= 4, f"{state['rate_limited']} refused vs {state['accepted']} accepted"


def test_the_announced_rate_paces_every_adapter_of_the_channel_from_its_first_request():
    """Learnt by one worker, the rate is the channel's: another worker's adapter (a push round makes its own) does
    not start again at the published 5 a second."""
    wh = make_location()
    sku = make_sku(stock_at={wh: 3})
    channel, sandbox = connect("amazon", {sku: 0}, plan={"rate": 1.0, "burst": 1})
    with sandbox:
        outbound.push_channel(channel.pk)
        assert remote(sandbox, sku) == 3
        limiter = adapter_for(channel).limiter
        assert limiter.per_second <= 1.0 and limiter.capacity == 1, (limiter.per_second, limiter.capacity)


def test_a_higher_announced_rate_does_not_raise_the_channels_own_limit():
    wh = make_location()
    sku = make_sku(stock_at={wh: 3})
    channel, sandbox = connect("amazon", {sku: 0}, plan={"rate": 20.0, "burst": 20})
    with sandbox:
        published = adapter_for(channel).limiter
        outbound.push_channel(channel.pk)
        assert remote(sandbox, sku) == 3
        limiter = adapter_for(channel).limiter
        assert (limiter.capacity, limiter.per_second) == (published.capacity, published.per_second)


def test_the_amazon_sandbox_announces_its_rate_where_amazon_does():
    """Amazon sends x-amzn-RateLimit-Limit best effort, on 2xx, 400 and 404 answers, as requests per second
    unrounded ("0.0055"); not on a 403 nor on the 429 that refuses a call. The sandbox sent it on every answer, with
    one decimal."""
    token, seller = "Atza|t", "A3SELLER"
    with start_sandbox("amazon", credentials={"access_token": token, "seller_id": seller},
                       plan={"rate": 0.0055, "burst": 2}) as box:
        box.state.set_catalog([{"sku": "LAMP", "quantity": 1}])

        def get(sku, access_token=token):
            return requests.get(f"{box.url}/listings/2021-08-01/items/{seller}/{sku}",
                                params={"marketplaceIds": "ATVPDKIKX0DER"}, headers={"x-amz-access-token": access_token},
                                timeout=5)

        forbidden, missing, found, refused = get("LAMP", "wrong"), get("NOPE"), get("LAMP"), get("LAMP")
        assert [r.status_code for r in (forbidden, missing, found, refused)] == [403, 404, 200, 429]
        assert missing.headers.get("x-amzn-RateLimit-Limit") == found.headers.get("x-amzn-RateLimit-Limit") == "0.0055"
        assert "x-amzn-RateLimit-Limit" not in forbidden.headers and "x-amzn-RateLimit-Limit" not in refused.headers


# -- Standard: {accepted, results: [{sku, status}]} -----------------------------------------------------------------

def test_a_sku_the_channel_refuses_in_its_batch_answer_is_not_recorded_as_pushed():
    """The channel answers 200 {accepted, results: [{sku, status}]}, a row per item; a row it did not take
    (unknown_sku) was recorded as pushed and in sync: nobody saw the failure. Now that listing fails, parked (the
    same row is refused again), and the other of the batch is in sync."""
    wh = make_location()
    tee, cap = make_sku(stock_at={wh: 5}), make_sku(stock_at={wh: 6})
    channel, sandbox = connect("standard", {tee: 0, cap: 0})
    with sandbox:
        # The channel knows this SKU under another code (a mapping error on our side).
        Listing.objects.filter(channel=channel, sku=cap).update(external_sku="NOT-ON-THE-CHANNEL")
        outbound.push_channel(channel.pk)
        assert remote(sandbox, tee) == 5
        assert remote(sandbox, cap) == 0
        refused, taken = Listing.objects.get(channel=channel, sku=cap), Listing.objects.get(channel=channel, sku=tee)
        assert refused.status == ListingStatus.FAILED and refused.pushed_version < refused.desired_version, (
            refused.status, refused.pushed_version, refused.desired_version, refused.last_error)
        assert "unknown_sku" in refused.last_error
        assert taken.status == ListingStatus.OK and taken.pushed_version == taken.desired_version


# -- Retry-After on a 5xx ---------------------------------------------------------------------------------------------

@pytest.mark.parametrize("status", [502, 503, 504])
def test_a_5xx_with_a_retry_after_longer_than_the_call_can_wait_ends_it_and_waits_that_long(status):
    """Standard Webhooks' senders honour Retry-After on 429/502/504 (and a 503's is HTTP's own). Any 5xx was a
    TransientError: three attempts within about a second, Retry-After ignored, and the listing tried again on the
    generic backoff instead of after 30 s."""
    wh = make_location()
    tee = make_sku(stock_at={wh: 5})
    channel, sandbox = connect("standard", {tee: 0})
    with sandbox:
        sandbox.state.close_for(30, status=status)
        before = timezone.now()
        outbound.push_channel(channel.pk)
        listing = Listing.objects.get(channel=channel)
        assert sandbox.state.request_counts["stock/push"] == 1
        assert remote(sandbox, tee) == 0 and listing.pushed_version < listing.desired_version
        assert listing.next_attempt_at >= before + timedelta(seconds=25), listing.next_attempt_at - before


def test_a_5xx_with_a_short_retry_after_is_waited_for_inside_the_call():
    """Closed for under a second, the channel says "Retry-After: 1": the call's next attempt comes after it and is
    taken. Before, the jittered backoff spent all three attempts within the closed second."""
    wh = make_location()
    tee = make_sku(stock_at={wh: 5})
    channel, sandbox = connect("standard", {tee: 0})
    with sandbox:
        sandbox.state.close_for(0.8)
        outbound.push_channel(channel.pk)
        listing = Listing.objects.get(channel=channel)
        assert sandbox.state.request_counts["stock/push"] == 2
        assert remote(sandbox, tee) == 5 and listing.status == ListingStatus.OK


def test_a_retry_after_the_deadline_cannot_wait_for_ends_the_call():
    """Within a push's lease (``http.deadline``) a Retry-After is waited for only if the attempt after it still fits
    (MIN_ATTEMPT_SECONDS): else the call ends at once, retryable after that delay, not sent past the deadline."""
    channel, sandbox = connect("standard", {})
    with sandbox:
        sandbox.state.close_for(0.8)
        session = http.session_for(f"test:{channel.pk}")
        with http.deadline(time.monotonic() + 1.2), pytest.raises(http.RateLimited) as refused:
            http.send(session, "GET", f"{sandbox.url}/stock", headers=signed_headers(STANDARD_SECRET, b""))
        assert refused.value.status == 503 and refused.value.retry_after == 1.0
        assert sandbox.state.request_counts["stock/read"] == 1


def test_a_conflict_with_the_resources_state_is_tried_again_not_parked():
    """409 (another writer holds the resource) was a refusal like any 4xx: the listing parked for the operator at the
    first one. The architecture retries it as a 5xx (review finding, 2026-12-08)."""
    wh = make_location()
    tee = make_sku(stock_at={wh: 4})
    channel, sandbox = connect("woocommerce", {tee: 0})
    with sandbox:
        sandbox.state.set_faults({"error_rate": 1.0, "error_status": 409})
        outbound.push_channel(channel.pk)
        listing = Listing.objects.get(channel=channel)
        assert sandbox.state.snapshot()["injected"]["409"] >= 2  # retried inside the call too
        assert (listing.status, listing.attempts) == (ListingStatus.RETRYING, 1), listing.last_error
        assert "409" in listing.last_error
        sandbox.state.set_faults({})
        Listing.objects.filter(pk=listing.pk).update(next_attempt_at=None)
        outbound.push_channel(channel.pk)
        assert remote(sandbox, tee) == 4


def test_a_channel_saying_come_back_later_for_good_parks_its_listing_in_the_end():
    """A 5xx with a long Retry-After was taken as a 429, whose attempts are not counted: a channel that answered it
    for good (a broken proxy) was retried for ever and never shown as failed (review finding). Counted as any 5xx,
    it parks after MAX_ATTEMPTS, each after the time the channel gave."""
    from channels_app.ratelimit import limiter_for
    from hub.redis import get_redis

    wh = make_location()
    sku = make_sku(stock_at={wh: 5})
    channel, sandbox = connect("standard", {sku: 0})
    with sandbox:
        sandbox.state.close_for(3600)
        outbound.push_channel(channel.pk)
        listing = Listing.objects.get(channel=channel)
        assert (listing.status, listing.attempts) == (ListingStatus.RETRYING, 1)
        assert listing.next_attempt_at > timezone.now() + timedelta(minutes=50)  # when the channel said
        for _ in range(outbound.MAX_ATTEMPTS):
            get_redis().delete(limiter_for(channel).key)  # the bucket's hold: not what is measured here
            Listing.objects.filter(channel=channel).update(next_attempt_at=None)
            outbound.push_channel(channel.pk)
        listing.refresh_from_db()
        assert listing.status == ListingStatus.FAILED, (listing.status, listing.attempts, listing.last_error)
