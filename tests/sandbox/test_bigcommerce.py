from __future__ import annotations

import requests

TOKEN, HASH = "bc-token", "abc123"
AUTH = {"X-Auth-Token": TOKEN}


def store(sandbox, **kwargs):
    box = sandbox("bigcommerce", credentials={"access_token": TOKEN, "store_hash": HASH}, **kwargs)
    box.state.set_catalog(
        [
            {"sku": "BOOT-9", "quantity": 6, "product_id": 77, "variant_id": 701, "location_id": 1},
            {"sku": "BOOT-9", "quantity": 2, "location_id": 2},
            {"sku": "BOOT-10", "quantity": 1, "product_id": 77, "variant_id": 702, "location_id": 1},
        ]
    )
    return box


def base(box):
    return f"{box.url}/stores/{HASH}/v3"


def test_refuses_wrong_token_or_store_hash(sandbox):
    box = store(sandbox)
    body = {"reason": "sync", "items": [{"location_id": 1, "variant_id": 701, "quantity": 1}]}
    assert requests.put(f"{base(box)}/inventory/adjustments/absolute", json=body).status_code == 401
    wrong_store = requests.put(f"{box.url}/stores/other/v3/inventory/adjustments/absolute", json=body, headers=AUTH)
    assert wrong_store.status_code == 401
    assert wrong_store.json()["status"] == 401 and "title" in wrong_store.json()
    assert box.state.quantity("BOOT-9", 1) == 6


def test_absolute_and_relative_adjustments(sandbox):
    box = store(sandbox)
    body = {
        "reason": "sync",
        "items": [{"location_id": 1, "variant_id": 701, "quantity": 4}, {"location_id": 2, "sku": "BOOT-9", "quantity": 0}],
    }
    reply = requests.put(f"{base(box)}/inventory/adjustments/absolute", json=body, headers=AUTH)
    assert reply.status_code == 200 and reply.json()["transaction_id"]
    assert box.state.quantity("BOOT-9", 1) == 4 and box.state.quantity("BOOT-9", 2) == 0

    body = {"reason": "sale", "items": [{"location_id": 1, "variant_id": 702, "quantity": -1}]}
    assert requests.post(f"{base(box)}/inventory/adjustments/relative", json=body, headers=AUTH).status_code == 200
    assert box.state.quantity("BOOT-10") == 0

    unknown = {
        "reason": "x",
        "items": [{"location_id": 1, "variant_id": 999, "quantity": 1}, {"location_id": 1, "variant_id": 701, "quantity": 9}],
    }
    refused = requests.put(f"{base(box)}/inventory/adjustments/absolute", json=unknown, headers=AUTH)
    assert refused.status_code == 422 and "items.0" in refused.json()["errors"]
    assert box.state.quantity("BOOT-9", 1) == 4, "a refused request writes nothing"


def test_more_than_2000_items_refused(sandbox):
    box = store(sandbox)
    body = {"reason": "sync", "items": [{"location_id": 1, "variant_id": 701, "quantity": 1}] * 2001}
    reply = requests.put(f"{base(box)}/inventory/adjustments/absolute", json=body, headers=AUTH)
    assert reply.status_code == 422
    assert box.state.quantity("BOOT-9", 1) == 6


def test_inventory_items_listing_paginates(sandbox):
    box = store(sandbox)
    first = requests.get(f"{base(box)}/inventory/items?location_id:in=1,2&limit=1&page=1", headers=AUTH).json()
    assert first["meta"]["pagination"]["total"] == 2 and first["meta"]["pagination"]["total_pages"] == 2
    assert "next" in first["meta"]["pagination"]["links"]
    row = first["data"][0]
    assert row["identity"] == {"sku": "BOOT-9", "variant_id": 701, "product_id": 77, "sku_id": None}
    assert [(loc["location_id"], loc["available_to_sell"]) for loc in row["locations"]] == [(1, 6), (2, 2)]
    second = requests.get(f"{base(box)}/inventory/items?location_id:in=1,2&limit=1&page=2", headers=AUTH).json()
    assert second["data"][0]["identity"]["variant_id"] == 702 and "next" not in second["meta"]["pagination"]["links"]
    only_two = requests.get(f"{base(box)}/inventory/items?location_id:in=2", headers=AUTH).json()
    assert [r["identity"]["sku"] for r in only_two["data"]] == ["BOOT-9"]


def test_fixed_window_headers_and_429(sandbox):
    box = store(sandbox)
    reply = requests.get(f"{base(box)}/inventory/items", headers=AUTH)
    assert reply.headers["X-Rate-Limit-Requests-Quota"] == "150"
    assert reply.headers["X-Rate-Limit-Time-Window-Ms"] == "30000"
    assert reply.headers["X-Rate-Limit-Requests-Left"] == "149"
    assert 0 < int(reply.headers["X-Rate-Limit-Time-Reset-Ms"]) <= 30000

    small = store(sandbox, plan={"window_quota": 5, "window_ms": 3000})
    session = requests.Session()
    statuses = [session.get(f"{base(small)}/inventory/items", headers=AUTH) for _ in range(7)]
    assert [r.status_code for r in statuses] == [200] * 5 + [429] * 2
    assert [r.headers["X-Rate-Limit-Requests-Left"] for r in statuses[:5]] == ["4", "3", "2", "1", "0"]
    assert statuses[-1].json()["status"] == 429
    assert small.state.snapshot()["rate_limited"] == 2
    assert small.state.max_accepted_in_window(3.0) <= 5
