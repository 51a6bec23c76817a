from __future__ import annotations

import threading
import time

import pytest
import requests

TOKEN = "shpat_f"
AUTH = {"X-Shopify-Access-Token": TOKEN}


@pytest.fixture
def box(sandbox):
    shop = sandbox("shopify", credentials={"access_token": TOKEN}, plan={"rest_bucket": 1000})
    shop.state.set_catalog([{"sku": "A", "quantity": 3, "inventory_item_id": 1, "location_id": 1}])
    return shop


def levels(shop, session=requests):
    return session.get(f"{shop.url}/admin/api/2025-07/inventory_levels.json?location_ids=1", headers=AUTH, timeout=5)


def test_error_rate_one_answers_every_call_5xx(box):
    assert requests.post(f"{box.url}/_sandbox/faults", json={"error_rate": 1.0}).status_code == 200
    statuses = [levels(box).status_code for _ in range(12)]
    assert all(status in (500, 502, 503) for status in statuses)
    state = requests.get(f"{box.url}/_sandbox/state").json()
    assert state["injected"]["5xx"] == 12 and state["rate_limited"] == 0
    requests.post(f"{box.url}/_sandbox/faults", json={})
    assert levels(box).status_code == 200


def test_burst_429_then_normal(box):
    requests.post(f"{box.url}/_sandbox/faults", json={"burst_429": 3, "retry_after": 7})
    replies = [levels(box) for _ in range(4)]
    assert [r.status_code for r in replies] == [429, 429, 429, 200]
    assert replies[0].headers["Retry-After"] == "7"
    state = requests.get(f"{box.url}/_sandbox/state").json()
    assert state["injected"]["429"] == 3 and state["rate_limited"] == 0


def test_down_for_drops_connections_then_recovers(box):
    requests.post(f"{box.url}/_sandbox/faults", json={"down_for": 0.4})
    with pytest.raises(requests.ConnectionError):
        levels(box)
    # The control API stays up while the "platform" is down.
    assert requests.get(f"{box.url}/_sandbox/state").json()["injected"]["down"] == 1
    time.sleep(0.45)
    assert levels(box).status_code == 200


def test_latency_timeout_and_in_flight(box):
    requests.post(f"{box.url}/_sandbox/faults", json={"latency_ms": 150})
    started = time.monotonic()
    threads = [threading.Thread(target=levels, args=(box,)) for _ in range(4)]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join()
    # Four concurrent calls finish in about one latency: the lock is not held while sleeping.
    assert time.monotonic() - started < 0.5
    assert requests.get(f"{box.url}/_sandbox/state").json()["max_in_flight"] == 4

    requests.post(f"{box.url}/_sandbox/faults", json={"timeout_rate": 1.0, "timeout_s": 0.6})
    with pytest.raises(requests.Timeout):
        requests.get(f"{box.url}/admin/api/2025-07/inventory_levels.json?location_ids=1", headers=AUTH, timeout=0.2)


def test_unknown_fault_and_bad_rates_are_refused(box):
    assert requests.post(f"{box.url}/_sandbox/faults", json={"explode": True}).status_code == 400
    assert requests.post(f"{box.url}/_sandbox/faults", json={"error_rate": 2}).status_code == 400


def test_drift_injection_and_reset(box):
    reply = requests.patch(f"{box.url}/_sandbox/inventory", json={"items": [{"sku": "A", "quantity": 42}]})
    assert reply.status_code == 200
    state = requests.get(f"{box.url}/_sandbox/state").json()
    assert state["inventory"][0]["quantity"] == 42 and state["webhooks_sent"] == 0
    assert set(state["inventory"][0]) >= {"sku", "quantity", "inventory_item_id", "location_id", "updated_at"}
    assert requests.patch(f"{box.url}/_sandbox/inventory", json={"items": [{"sku": "NOPE", "quantity": 1}]}).status_code == 400
    requests.post(f"{box.url}/_sandbox/reset")
    state = requests.get(f"{box.url}/_sandbox/state").json()
    assert state["inventory"] == [] and state["requests"] == {}


def test_run_many_and_stop_cuts_keep_alive_connections():
    from channels_app.sandbox import run_many

    with run_many([{"kind": "bigcommerce"}, {"kind": "woocommerce", "catalog": [{"sku": "X", "quantity": 1}]}]) as group:
        assert {box.kind for box in group} == {"bigcommerce", "woocommerce"}
        woo = group.by_kind("woocommerce")
        session = requests.Session()
        assert session.get(f"{woo.url}/wp-json/wc/v3/products").json()[0]["sku"] == "X"
    with pytest.raises(requests.ConnectionError):
        session.get(f"{woo.url}/wp-json/wc/v3/products", timeout=2)


def test_command_line_maps_credentials():
    import argparse

    from channels_app.sandbox.__main__ import credentials_for

    args = argparse.Namespace(
        token="t", key=None, api_secret="s", store_hash="h", seller_id="S", signing_secret=None, api_key=None
    )
    assert credentials_for("bigcommerce", args) == {"access_token": "t", "store_hash": "h"}
    assert credentials_for("woocommerce", args) == {"consumer_key": "t", "consumer_secret": "s"}
    assert credentials_for("amazon", args) == {"access_token": "t", "seller_id": "S"}
    assert credentials_for("standard", args) == {"signing_secret": "t"}
