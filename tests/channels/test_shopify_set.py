"""Shopify's inventorySetQuantities as Shopify has it from 2026-01: an idempotency key per push, a compare-and-set
number (or an explicit null) per quantity, and its own failures told apart from refusals (review, 2026-12-08)."""

from __future__ import annotations

import pytest
import requests

from channels_app import outbound
from channels_app.adapters import adapter_for
from channels_app.adapters.base import PushItem
from channels_app.models import Listing, ListingStatus, PushLog
from inventory_app import stock
from inventory_app.stock import LineRequest
from tests.channels.sandboxed import connect, remote
from tests.factories import make_location, make_sku

pytestmark = pytest.mark.django_db(transaction=True)


def mutations(sandbox) -> int:
    return sandbox.state.snapshot()["requests"].get("graphql", 0)


@pytest.mark.parametrize("api_version", ["2026-01", "2026-04"])
def test_an_answer_lost_after_shopify_applied_the_push_is_not_taken_for_a_sale(api_version):
    """The channel applied our number and the answer was lost on the way back: the request is sent again. Without an
    idempotency key the retry's changeFromQuantity no longer matched, the compare-and-set refused it, and the number
    the channel held, ours, was taken for a sale made there and subtracted again: 10 on hand, 3 sold in the hub, the
    channel showed 4 until the conflict's recheck (review finding). With the key Shopify answers the retry with the
    first attempt's result."""
    wh = make_location()
    tee = make_sku(stock_at={wh: 10})
    channel, sandbox = connect("shopify", {tee: 10}, credentials={"api_version": api_version})
    with sandbox:
        outbound.push_channel(channel.pk)
        assert remote(sandbox, tee) == 10
        stock.reserve(lines=[LineRequest(tee.code, 3)])
        sandbox.state.set_faults({"lost_answers": 1})
        before = mutations(sandbox)
        outbound.push_channel(channel.pk)
        assert sandbox.state.snapshot()["injected"]["lost_answer"] == 1
        assert mutations(sandbox) - before == 2  # the lost one and its retry, nothing more
        assert remote(sandbox, tee) == 7
        listing = Listing.objects.get(channel=channel)
        assert (listing.status, listing.pushed_quantity, listing.remote_quantity) == (ListingStatus.OK, 7, 7)
        assert not PushLog.objects.filter(listing=listing, ok=False).exists()


@pytest.mark.parametrize("api_version", ["2026-01", "2026-04"])
def test_a_push_mixing_known_and_unknown_numbers_is_taken_in_one_request(api_version):
    """A listing never pushed (its number on the channel unknown) beside one whose number is known: the whole request
    opted in or out of the check (ignoreCompareQuantity), so Shopify refused it COMPARE_QUANTITY_REQUIRED, which was
    read as a stale number, and both were re-read and sent again (review finding); 2026-04 refuses
    ignoreCompareQuantity altogether. Each quantity now names its own number, null where unknown."""
    wh = make_location()
    tee, cap = make_sku(stock_at={wh: 4}), make_sku(stock_at={wh: 6})
    channel, sandbox = connect("shopify", {tee: 4, cap: 6}, credentials={"api_version": api_version})
    with sandbox:
        by_sku = {x.sku_id: x for x in Listing.objects.filter(channel=channel)}
        before = mutations(sandbox)
        results = adapter_for(channel).push([PushItem(listing=by_sku[tee.id], quantity=3, expected_remote=None),
                                             PushItem(listing=by_sku[cap.id], quantity=5, expected_remote=6)])
        assert [(r.ok, r.conflict, r.error) for r in results] == [(True, False, ""), (True, False, "")]
        assert mutations(sandbox) - before == 1
        assert (remote(sandbox, tee), remote(sandbox, cap)) == (3, 5)
        # The number that is known is still checked: stale, it is refused (and only it is read again).
        results = adapter_for(channel).push([PushItem(listing=by_sku[tee.id], quantity=2, expected_remote=None),
                                             PushItem(listing=by_sku[cap.id], quantity=4, expected_remote=6)])
        assert [r.ok for r in results] == [False, False] and results[1].conflict and results[1].remote_quantity == 5


def test_a_shopify_internal_error_is_tried_again_not_parked():
    """Shopify's GraphQL answers its own failure 200 with INTERNAL_SERVER_ERROR in the body; every error but THROTTLED
    was taken for a refusal and the listing parked for the operator (review finding). It is retried: inside the
    send first, as a 5xx (raised after it, each one cost the listing a backoff: a chaos run converged in 32 s, not
    7), then after a backoff."""
    wh = make_location()
    tee = make_sku(stock_at={wh: 4})
    channel, sandbox = connect("shopify", {tee: 0})
    with sandbox:
        sandbox.state.set_faults({"error_rate": 1.0, "error_status": 500})
        before = mutations(sandbox)
        outbound.push_channel(channel.pk)
        assert mutations(sandbox) - before == 3  # the send's three attempts
        listing = Listing.objects.get(channel=channel)
        assert listing.status == ListingStatus.RETRYING, listing.last_error
        assert "INTERNAL_SERVER_ERROR" in listing.last_error
        sandbox.state.set_faults({})
        Listing.objects.filter(pk=listing.pk).update(next_attempt_at=None)
        outbound.push_channel(channel.pk)
        assert remote(sandbox, tee) == 4


def test_the_sandbox_holds_the_adapter_to_2026_04():
    """From 2026-04 Shopify refuses an inventorySetQuantities without @idempotent(key:), refuses ignoreCompareQuantity,
    and wants each quantity's changeFromQuantity (null opts out); a key seen before answers with its first result."""
    wh = make_location()
    tee = make_sku(stock_at={wh: 10})
    channel, sandbox = connect("shopify", {tee: 10}, credentials={"api_version": "2026-04"})
    with sandbox:
        listing = Listing.objects.get(channel=channel)
        url = f"{sandbox.url}/admin/api/2026-04/graphql.json"
        headers = {"X-Shopify-Access-Token": channel.credentials["access_token"]}
        item = {"inventoryItemId": f"gid://shopify/InventoryItem/{listing.external_inventory_item_id}",
                "locationId": f"gid://shopify/Location/{channel.publish_location_id}", "quantity": 8}

        def call(query: str, variables: dict) -> dict:
            return requests.post(url, json={"query": query, "variables": variables}, headers=headers, timeout=5).json()

        bare = ("mutation s($input: InventorySetQuantitiesInput!) { inventorySetQuantities(input: $input) "
                "{ userErrors { code } } }")
        keyed = ("mutation s($input: InventorySetQuantitiesInput!, $k: String!) { inventorySetQuantities(input: $input) "
                 "@idempotent(key: $k) { userErrors { code } } }")
        answer = call(bare, {"input": {"name": "available", "reason": "correction", "quantities": [
            {**item, "changeFromQuantity": 10}]}})
        assert "@idempotent" in answer["errors"][0]["message"]
        answer = call(keyed, {"k": "a", "input": {"name": "available", "reason": "correction",
                                                  "ignoreCompareQuantity": True, "quantities": [item]}})
        assert "ignoreCompareQuantity" in answer["errors"][0]["message"]
        answer = call(keyed, {"k": "b", "input": {"name": "available", "reason": "correction", "quantities": [item]}})
        assert answer["data"]["inventorySetQuantities"]["userErrors"][0]["code"] == "COMPARE_QUANTITY_REQUIRED"
        assert remote(sandbox, tee) == 10
        once = {"k": "c", "input": {"name": "available", "reason": "correction", "quantities": [
            {**item, "changeFromQuantity": 10}]}}
        assert call(keyed, once)["data"]["inventorySetQuantities"]["userErrors"] == []
        assert call(keyed, once)["data"]["inventorySetQuantities"]["userErrors"] == []  # replayed, not stale
        assert remote(sandbox, tee) == 8
        other = {**once, "input": {**once["input"], "quantities": [{**item, "quantity": 7, "changeFromQuantity": 8}]}}
        assert call(keyed, other)["data"]["inventorySetQuantities"]["userErrors"][0]["code"] == \
            "IDEMPOTENCY_KEY_PARAMETER_MISMATCH"
        null_opts_out = {"k": "d", "input": {"name": "available", "reason": "correction", "quantities": [
            {**item, "quantity": 6, "changeFromQuantity": None}]}}
        assert call(keyed, null_opts_out)["data"]["inventorySetQuantities"]["userErrors"] == []
        assert remote(sandbox, tee) == 6
