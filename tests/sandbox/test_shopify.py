from __future__ import annotations

import requests

TOKEN = "shpat_test"
AUTH = {"X-Shopify-Access-Token": TOKEN}
API = "/admin/api/2025-07"
SET_MUTATION = """
mutation SetAvailable($input: InventorySetQuantitiesInput!) {
  inventorySetQuantities(input: $input) {
    inventoryAdjustmentGroup { changes { name delta quantityAfterChange } }
    userErrors { field message code }
  }
}
"""


def shop(sandbox, **kwargs):
    box = sandbox("shopify", credentials={"access_token": TOKEN}, **kwargs)
    box.state.set_catalog(
        [
            {"sku": "MUG", "quantity": 10, "inventory_item_id": 111, "location_id": 1, "variant_id": 11, "product_id": 1},
            {"sku": "MUG", "quantity": 4, "inventory_item_id": 111, "location_id": 2},
            {"sku": "CAP", "quantity": 3, "inventory_item_id": 222, "location_id": 1},
        ]
    )
    return box


def set_input(rows, **extra):
    quantities = [
        {
            "inventoryItemId": f"gid://shopify/InventoryItem/{item}",
            "locationId": f"gid://shopify/Location/{loc}",
            "quantity": qty,
            **cas,
        }
        for item, loc, qty, cas in rows
    ]
    return {
        "query": SET_MUTATION,
        "variables": {"input": {"name": "available", "reason": "correction", "quantities": quantities, **extra}},
    }


def test_refuses_missing_or_wrong_token(sandbox):
    box = shop(sandbox)
    body = {"inventory_item_id": 111, "location_id": 1, "available": 1}
    for headers in ({}, {"X-Shopify-Access-Token": "nope"}):
        reply = requests.post(f"{box.url}{API}/inventory_levels/set.json", json=body, headers=headers)
        assert reply.status_code == 401
        assert "Invalid API key or access token" in reply.json()["errors"]
    assert box.state.quantity("MUG", 1) == 10


def test_rest_set_and_adjust_round_trip(sandbox):
    box = shop(sandbox)
    reply = requests.post(
        f"{box.url}{API}/inventory_levels/set.json",
        json={"inventory_item_id": 111, "location_id": 1, "available": 7},
        headers=AUTH,
    )
    assert reply.status_code == 200
    level = reply.json()["inventory_level"]
    assert level["inventory_item_id"] == 111 and level["location_id"] == 1 and level["available"] == 7
    assert level["updated_at"]
    assert reply.headers["X-Shopify-Shop-Api-Call-Limit"] == "1/40"

    reply = requests.post(
        f"{box.url}{API}/inventory_levels/adjust.json",
        json={"inventory_item_id": 111, "location_id": 2, "available_adjustment": -3},
        headers=AUTH,
    )
    assert reply.json()["inventory_level"]["available"] == 1
    assert box.state.quantity("MUG", 1) == 7 and box.state.quantity("MUG", 2) == 1

    missing = requests.post(
        f"{box.url}{API}/inventory_levels/set.json", json={"inventory_item_id": 111, "location_id": 1}, headers=AUTH
    )
    assert missing.status_code == 400 and "available" in missing.json()["errors"]
    unknown = requests.post(
        f"{box.url}{API}/inventory_levels/set.json",
        json={"inventory_item_id": 999, "location_id": 1, "available": 1},
        headers=AUTH,
    )
    assert unknown.status_code == 404


def test_rest_levels_paginate_through_link_header(sandbox):
    box = shop(sandbox)
    url = f"{box.url}{API}/inventory_levels.json?location_ids=1,2&limit=2"
    seen = []
    pages = 0
    while url:
        reply = requests.get(url, headers=AUTH)
        assert reply.status_code == 200
        seen += [(lvl["inventory_item_id"], lvl["location_id"], lvl["available"]) for lvl in reply.json()["inventory_levels"]]
        pages += 1
        url = reply.links.get("next", {}).get("url")
        if pages == 2:
            assert "previous" in reply.links
    assert pages == 2
    assert seen == [(111, 1, 10), (111, 2, 4), (222, 1, 3)]

    # The cursor carries the filters; adding them again is refused, as on Shopify.
    first = requests.get(f"{box.url}{API}/inventory_levels.json?location_ids=1&limit=1", headers=AUTH)
    bad = requests.get(first.links["next"]["url"] + "&location_ids=1", headers=AUTH)
    assert bad.status_code == 400
    assert requests.get(f"{box.url}{API}/inventory_levels.json", headers=AUTH).status_code == 422


def test_graphql_set_quantities_compare_and_set(sandbox):
    box = shop(sandbox)
    url = f"{box.url}{API}/graphql.json"
    ok = requests.post(
        url, json=set_input([(111, 1, 8, {"changeFromQuantity": 10}), (222, 1, 0, {"changeFromQuantity": 3})]), headers=AUTH
    )
    assert ok.status_code == 200
    result = ok.json()["data"]["inventorySetQuantities"]
    assert result["userErrors"] == []
    assert [c["quantityAfterChange"] for c in result["inventoryAdjustmentGroup"]["changes"]] == [8, 0]
    throttle = ok.json()["extensions"]["cost"]["throttleStatus"]
    assert throttle["maximumAvailable"] == 1000 and throttle["restoreRate"] == 100
    assert box.state.quantity("MUG", 1) == 8 and box.state.quantity("CAP") == 0

    # One stale compare value and nothing at all is written.
    stale = requests.post(
        url, json=set_input([(222, 1, 5, {"changeFromQuantity": 0}), (111, 1, 1, {"changeFromQuantity": 10})]), headers=AUTH
    )
    result = stale.json()["data"]["inventorySetQuantities"]
    assert result["inventoryAdjustmentGroup"] is None
    assert [e["code"] for e in result["userErrors"]] == ["CHANGE_FROM_QUANTITY_STALE"]
    assert result["userErrors"][0]["field"] == ["input", "quantities", "1", "changeFromQuantity"]
    assert box.state.quantity("CAP") == 0 and box.state.quantity("MUG", 1) == 8

    forced = requests.post(url, json=set_input([(111, 1, 2, {})], ignoreCompareQuantity=True), headers=AUTH)
    assert forced.json()["data"]["inventorySetQuantities"]["userErrors"] == []
    assert box.state.quantity("MUG", 1) == 2

    required = requests.post(url, json=set_input([(111, 1, 2, {})]), headers=AUTH)
    assert required.json()["data"]["inventorySetQuantities"]["userErrors"][0]["code"] == "COMPARE_QUANTITY_REQUIRED"
    unknown = requests.post(url, json=set_input([(999, 1, 2, {"changeFromQuantity": 0})]), headers=AUTH)
    assert unknown.json()["data"]["inventorySetQuantities"]["userErrors"][0]["code"] == "INVALID_INVENTORY_ITEM"


def test_graphql_adjust_is_idempotent_on_its_key(sandbox):
    box = shop(sandbox)
    query = (
        'mutation Adj($input: InventoryAdjustQuantitiesInput!) @idempotent(key: "k-1") '
        "{ inventoryAdjustQuantities(input: $input) { userErrors { code } } }"
    )
    change = {"inventoryItemId": "gid://shopify/InventoryItem/222", "locationId": "gid://shopify/Location/1", "delta": -2}
    body = {"query": query, "variables": {"input": {"name": "available", "reason": "correction", "changes": [change]}}}
    for _ in range(2):
        reply = requests.post(f"{box.url}{API}/graphql.json", json=body, headers=AUTH)
        assert reply.json()["data"]["inventoryAdjustQuantities"]["userErrors"] == []
    assert box.state.quantity("CAP") == 1


def test_graphql_reads_levels_with_cursor(sandbox):
    box = shop(sandbox)
    query = (
        "query($locationId: ID!, $first: Int!, $after: String) { location(id: $locationId) { "
        "inventoryLevels(first: $first, after: $after) { edges { node { id } } pageInfo { hasNextPage endCursor } } } }"
    )
    variables = {"locationId": "gid://shopify/Location/1", "first": 1}
    skus = []
    while True:
        data = requests.post(f"{box.url}{API}/graphql.json", json={"query": query, "variables": variables}, headers=AUTH).json()
        levels = data["data"]["location"]["inventoryLevels"]
        skus += [edge["node"]["item"]["sku"] for edge in levels["edges"]]
        if not levels["pageInfo"]["hasNextPage"]:
            break
        variables["after"] = levels["pageInfo"]["endCursor"]
    assert skus == ["MUG", "CAP"]


def test_rest_leaky_bucket_refuses_with_retry_after(sandbox):
    box = shop(sandbox)
    session = requests.Session()
    used, refused = [], []
    for _ in range(200):
        reply = session.get(f"{box.url}{API}/inventory_levels.json?location_ids=1", headers=AUTH)
        if reply.status_code == 429:
            refused.append(reply)
            if len(refused) == 3:
                break
        else:
            used.append(int(reply.headers["X-Shopify-Shop-Api-Call-Limit"].split("/")[0]))
    assert used[:5] == sorted(used[:5]) and used[0] == 1
    assert max(used) == 40
    assert len(refused) == 3, "hammering faster than 2/s must overflow a bucket of 40"
    assert float(refused[0].headers["Retry-After"]) > 0
    assert refused[0].headers["X-Shopify-Shop-Api-Call-Limit"] == "40/40"
    assert "Exceeded 2 calls per second" in refused[0].json()["errors"]
    state = requests.get(f"{box.url}/_sandbox/state").json()
    assert state["rate_limited"] == len(refused)
    assert state["injected"]["429"] == 0
    # Over any 1 s the bucket admits at most its size plus what leaked.
    assert box.state.max_accepted_in_window(1.0) <= 40 + 2


def test_graphql_cost_bucket_throttles(sandbox):
    box = shop(sandbox, plan={"graphql_bucket": 25, "graphql_restore": 1})
    url = f"{box.url}{API}/graphql.json"
    body = set_input([(111, 1, 1, {})], ignoreCompareQuantity=True)
    replies = [requests.post(url, json=body, headers=AUTH).json() for _ in range(3)]
    assert "data" in replies[0] and "data" in replies[1]
    assert replies[2]["errors"][0]["extensions"]["code"] == "THROTTLED"
    assert replies[2]["extensions"]["cost"]["throttleStatus"]["currentlyAvailable"] < 10
    assert box.state.snapshot()["rate_limited"] == 1


def test_graphql_reads_given_items_levels_at_a_location(sandbox):
    """``nodes(ids:)`` on inventory items with ``inventoryLevel(locationId:)``: what a compare-and-set conflict
    re-reads; null for an unknown id, a null level where the item is not stocked; 1 point plus 2 per id."""
    from channels_app.adapters.shopify import READ_LEVELS

    box = shop(sandbox)
    ids = [f"gid://shopify/InventoryItem/{i}" for i in (111, 222, 999)]
    for location, expected in ((1, [10, 3]), (2, [4, None])):
        reply = requests.post(f"{box.url}{API}/graphql.json", headers=AUTH, json={
            "query": READ_LEVELS, "variables": {"ids": ids, "locationId": f"gid://shopify/Location/{location}"}})
        body = reply.json()
        nodes = body["data"]["nodes"]
        assert nodes[2] is None
        levels = [node["inventoryLevel"] and node["inventoryLevel"]["quantities"][0]["quantity"] for node in nodes[:2]]
        assert levels == expected
        assert body["extensions"]["cost"]["requestedQueryCost"] == 7
