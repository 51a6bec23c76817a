from __future__ import annotations

import json
import time
from datetime import UTC, datetime

import requests
from standardwebhooks import Webhook

TOKEN, SELLER = "Atza|token", "A2SELLER"
AUTH = {"x-amz-access-token": TOKEN}
PATCH = {
    "productType": "PRODUCT",
    "patches": [
        {
            "op": "replace",
            "path": "/attributes/fulfillment_availability",
            "value": [{"fulfillment_channel_code": "DEFAULT", "quantity": 3}],
        }
    ],
}
SIGNING = "whsec_" + "c2FuZGJveC1zaWduaW5nLXNlY3JldC0xMjM0NTY="


def amazon(sandbox, **kwargs):
    box = sandbox("amazon", credentials={"access_token": TOKEN, "seller_id": SELLER}, **kwargs)
    box.state.set_catalog([{"sku": "LAMP 1", "quantity": 9}])
    return box


def listing(box, seller=SELLER, sku="LAMP%201"):
    return f"{box.url}/listings/2021-08-01/items/{seller}/{sku}?marketplaceIds=ATVPDKIKX0DER"


def test_amazon_auth_is_refused_as_amazon_does(sandbox):
    box = amazon(sandbox)
    assert requests.patch(listing(box), json=PATCH).status_code == 403
    other_seller = requests.patch(listing(box, seller="SOMEONE"), json=PATCH, headers=AUTH)
    assert other_seller.status_code == 403 and other_seller.json()["errors"][0]["code"] == "Unauthorized"


def test_amazon_patch_and_read_quantity(sandbox):
    box = amazon(sandbox)
    reply = requests.patch(listing(box), json=PATCH, headers=AUTH)
    assert reply.status_code == 200
    assert reply.json()["status"] == "ACCEPTED" and reply.json()["sku"] == "LAMP 1" and reply.json()["issues"] == []
    assert reply.json()["submissionId"]
    read = requests.get(listing(box) + "&includedData=fulfillmentAvailability,summaries", headers=AUTH).json()
    assert read["fulfillmentAvailability"] == [{"fulfillmentChannelCode": "DEFAULT", "quantity": 3}]

    bad = requests.patch(
        listing(box),
        json={
            "productType": "PRODUCT",
            "patches": [{"op": "replace", "path": "/attributes/fulfillment_availability", "value": [{"quantity": -1}]}],
        },
        headers=AUTH,
    )
    assert bad.json()["status"] == "INVALID" and bad.json()["issues"][0]["severity"] == "ERROR"
    assert box.state.quantity("LAMP 1") == 3
    assert requests.patch(listing(box).split("?")[0], json=PATCH, headers=AUTH).status_code == 400  # no marketplaceIds
    assert requests.get(listing(box, sku="NOPE"), headers=AUTH).status_code == 404


def test_amazon_token_bucket_five_per_second(sandbox):
    box = amazon(sandbox)
    session = requests.Session()
    started = time.monotonic()
    statuses = []
    while time.monotonic() - started < 1.2:
        statuses.append(session.get(listing(box), headers=AUTH).status_code)
    elapsed = time.monotonic() - started
    accepted = statuses.count(200)
    assert statuses[:5] == [200] * 5 and 429 in statuses
    assert accepted <= 5 + 5 * elapsed + 1
    assert box.state.max_accepted_in_window(1.0) <= 10
    assert box.state.snapshot()["rate_limited"] == statuses.count(429)


def signed(body: dict, secret=SIGNING, msg_id="msg_1"):
    raw = json.dumps(body)
    headers = {"webhook-id": msg_id, "webhook-timestamp": str(int(time.time()))}
    headers["webhook-signature"] = Webhook(secret).sign(msg_id, datetime.now(UTC), raw)
    headers["Content-Type"] = "application/json"
    return raw, headers


def test_standard_push_is_verified_and_idempotent(sandbox):
    box = sandbox("standard", credentials={"signing_secret": SIGNING, "api_key": "read-key"})
    box.state.set_catalog([{"sku": "POS-1", "quantity": 1}, {"sku": "POS-2", "quantity": 1}])
    event = {"type": "stock.updated", "timestamp": "2026-01-01T00:00:00Z", "data": {"sku": "POS-1", "quantity": 12}}
    raw, headers = signed(event)
    assert requests.post(f"{box.url}/stock", data=raw, headers={**headers, "webhook-signature": "v1,AAAA"}).status_code == 401
    assert requests.post(f"{box.url}/stock", data=raw, headers=headers).json()["accepted"] == 1
    assert box.state.quantity("POS-1") == 12

    box.state.patch_inventory([{"sku": "POS-1", "quantity": 5}])
    replay = requests.post(f"{box.url}/stock", data=raw, headers=headers)
    assert replay.headers.get("Idempotent-Replayed") == "true"
    assert box.state.quantity("POS-1") == 5, "a repeated webhook-id changes nothing"

    batch = {
        "type": "stock.batch_updated",
        "timestamp": "2026-01-01T00:00:01Z",
        "data": {"items": [{"sku": "POS-1", "quantity": 2}, {"sku": "POS-2", "quantity": 3}, {"sku": "GONE", "quantity": 1}]},
    }
    raw, headers = signed(batch, msg_id="msg_2")
    result = requests.post(f"{box.url}/stock", data=raw, headers=headers).json()
    assert result["accepted"] == 2 and result["results"][2]["status"] == "unknown_sku"

    assert requests.get(f"{box.url}/stock").status_code == 401
    page = requests.get(f"{box.url}/stock?limit=1", headers={"Authorization": "Bearer read-key"}).json()
    assert page["items"][0] == {**page["items"][0], "sku": "POS-1", "quantity": 2}
    rest = requests.get(
        f"{box.url}/stock?limit=1&cursor={page['next_cursor']}", headers={"Authorization": "Bearer read-key"}
    ).json()
    assert rest["items"][0]["sku"] == "POS-2" and rest["next_cursor"] is None
