"""Amazon access through Login with Amazon: a refresh token exchanged for access tokens that live an hour, shared by
every worker, taken anew before they expire and when Amazon refuses one (review, 2026-12-08)."""

from __future__ import annotations

import time
import uuid

import pytest

from channels_app import outbound
from channels_app.models import Channel, Listing, ListingStatus
from channels_app.sandbox import start_sandbox
from inventory_app import stock
from inventory_app.stock import LineRequest
from tests.channels.sandboxed import SECRETS, remote
from tests.factories import make_location, make_sku

pytestmark = pytest.mark.django_db(transaction=True)

APP = {"lwa_client_id": "amzn1.application-oa2-client.test", "lwa_client_secret": "lwa-secret-not-for-logs",
       "refresh_token": "Atzr|refresh-not-for-logs", "seller_id": "A1SELLER", "marketplace_id": "ATVPDKIKX0DER"}


def an_amazon_app(*, token_ttl: int, refresh_token: str = APP["refresh_token"]):
    wh = make_location()
    tee = make_sku(stock_at={wh: 8})
    slug = f"amazon-{uuid.uuid4().hex[:6]}"
    sandbox = start_sandbox("amazon", channel_slug=slug, webhook_secret=SECRETS["amazon"], credentials=APP,
                            plan={"token_ttl": token_ttl})
    sandbox.state.set_catalog([{"sku": tee.code, "quantity": 0}])
    channel = Channel.objects.create(slug=slug, name=slug, kind="amazon", api_base_url=sandbox.url, credentials={
        **APP, "refresh_token": refresh_token, "lwa_token_url": f"{sandbox.url}/auth/o2/token"})
    Listing.objects.create(channel=channel, sku=tee)
    return channel, sandbox, tee


def test_pushes_take_an_access_token_and_a_new_one_before_it_expires():
    """A fixed access token made every push fail 403 an hour after it was set, and park. The refresh token is
    exchanged for one, kept for every worker until shortly before it expires, then exchanged again."""
    channel, sandbox, tee = an_amazon_app(token_ttl=61)  # kept 1 s (61 less the margin of 60)
    with sandbox:
        outbound.push_channel(channel.pk)
        assert remote(sandbox, tee) == 8 and sandbox.state.tokens_issued == 1
        stock.reserve(lines=[LineRequest(tee.code, 1)])
        outbound.push_channel(channel.pk)
        assert remote(sandbox, tee) == 7 and sandbox.state.tokens_issued == 1  # the same token, from Redis
        time.sleep(1.2)
        stock.reserve(lines=[LineRequest(tee.code, 1)])
        outbound.push_channel(channel.pk)
        assert remote(sandbox, tee) == 6 and sandbox.state.tokens_issued == 2
        assert Listing.objects.get(channel=channel).status == ListingStatus.OK


def test_a_token_refused_before_its_time_is_taken_anew_and_the_push_goes_through():
    channel, sandbox, tee = an_amazon_app(token_ttl=3600)
    with sandbox:
        outbound.push_channel(channel.pk)
        sandbox.state.revoke_tokens()  # the seller authorised the app again
        stock.reserve(lines=[LineRequest(tee.code, 3)])
        outbound.push_channel(channel.pk)
        assert remote(sandbox, tee) == 5 and sandbox.state.tokens_issued == 2
        assert Listing.objects.get(channel=channel).status == ListingStatus.OK


def test_a_refresh_token_amazon_refuses_parks_the_listing_with_amazons_reason_and_no_secret():
    channel, sandbox, _ = an_amazon_app(token_ttl=3600, refresh_token="Atzr|revoked-not-for-logs")
    with sandbox:
        outbound.push_channel(channel.pk)
        listing = Listing.objects.get(channel=channel)
        assert listing.status == ListingStatus.FAILED and "invalid_grant" in listing.last_error
        for secret in ("revoked-not-for-logs", APP["lwa_client_secret"]):
            assert secret not in listing.last_error
        assert sandbox.state.snapshot()["requests"].get("listings/patch", 0) == 0


def test_a_token_taken_with_the_old_credentials_never_goes_to_a_new_address():
    """Kept per channel alone, the access token taken for the old address and credentials was sent to the new host
    after the operator moved the channel (refused there 403, then taken anew): a secret issued for one host reached
    another (review finding). The token is kept per address and credentials."""
    channel, old, tee = an_amazon_app(token_ttl=3600)
    other = {**APP, "refresh_token": "Atzr|second-app-not-for-logs"}
    new = start_sandbox("amazon", channel_slug=channel.slug, webhook_secret=SECRETS["amazon"], credentials=other)
    new.state.set_catalog([{"sku": tee.code, "quantity": 0}])
    with old, new:
        outbound.push_channel(channel.pk)
        assert old.state.tokens_issued == 1
        channel.api_base_url = new.url
        channel.credentials = {**other, "lwa_token_url": f"{new.url}/auth/o2/token"}
        channel.save()
        stock.reserve(lines=[LineRequest(tee.code, 1)])
        outbound.push_channel(channel.pk)
        assert remote(new, tee) == 7 and new.state.tokens_issued == 1
        assert new.state.snapshot()["requests"]["listings/patch"] == 1  # no 403 first: the old token never sent
