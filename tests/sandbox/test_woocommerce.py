from __future__ import annotations

import requests

KEY, SECRET = "ck_test", "cs_test"
API = "/wp-json/wc/v3"


def woo(sandbox):
    box = sandbox("woocommerce", credentials={"consumer_key": KEY, "consumer_secret": SECRET})
    box.state.set_catalog(
        [
            {"sku": "TEE", "quantity": 5, "product_id": 10},
            {"sku": "TEE-S", "quantity": 2, "product_id": 20, "variant_id": 21},
            {"sku": "TEE-M", "quantity": 0, "product_id": 20, "variant_id": 22},
        ]
        + [{"sku": f"SKU-{n}", "quantity": n, "product_id": 100 + n} for n in range(12)]
    )
    return box


def test_refuses_bad_credentials(sandbox):
    box = woo(sandbox)
    missing = requests.put(f"{box.url}{API}/products/10", json={"stock_quantity": 1})
    assert missing.status_code == 401 and missing.json()["code"] == "woocommerce_rest_cannot_edit"
    wrong = requests.put(f"{box.url}{API}/products/10", json={"stock_quantity": 1}, auth=(KEY, "nope"))
    assert wrong.status_code == 401
    assert wrong.json() == {
        "code": "woocommerce_rest_authentication_error",
        "message": "Consumer secret is invalid.",
        "data": {"status": 401},
    }
    # Query-string keys are accepted too, as WooCommerce does over HTTPS.
    ok = requests.get(f"{box.url}{API}/products/10?consumer_key={KEY}&consumer_secret={SECRET}")
    assert ok.status_code == 200


def test_product_and_variation_round_trip(sandbox):
    box = woo(sandbox)
    reply = requests.put(f"{box.url}{API}/products/10", json={"manage_stock": True, "stock_quantity": 0}, auth=(KEY, SECRET))
    assert reply.status_code == 200
    assert reply.json()["stock_quantity"] == 0 and reply.json()["stock_status"] == "outofstock"
    assert reply.json()["date_modified_gmt"]

    reply = requests.put(f"{box.url}{API}/products/20/variations/22", json={"stock_quantity": 6}, auth=(KEY, SECRET))
    assert reply.status_code == 200
    assert reply.json()["id"] == 22 and reply.json()["stock_status"] == "instock"
    assert box.state.quantity("TEE-M") == 6

    bad = requests.put(f"{box.url}{API}/products/10", json={"stock_quantity": "many"}, auth=(KEY, SECRET))
    assert bad.status_code == 400 and bad.json()["code"] == "rest_invalid_param"
    assert requests.put(f"{box.url}{API}/products/999", json={"stock_quantity": 1}, auth=(KEY, SECRET)).status_code == 404


def test_batch_updates_and_refuses_over_100(sandbox):
    box = woo(sandbox)
    reply = requests.post(
        f"{box.url}{API}/products/batch",
        json={"update": [{"id": 10, "stock_quantity": 9, "manage_stock": True}, {"id": 4242, "stock_quantity": 1}]},
        auth=(KEY, SECRET),
    )
    assert reply.status_code == 200
    first, second = reply.json()["update"]
    assert first["stock_quantity"] == 9
    assert second["error"]["code"] == "woocommerce_rest_product_invalid_id"
    assert box.state.quantity("TEE") == 9

    too_many = {"update": [{"id": 10, "stock_quantity": n} for n in range(101)]}
    refused = requests.post(f"{box.url}{API}/products/batch", json=too_many, auth=(KEY, SECRET))
    assert refused.status_code == 413
    assert refused.json()["code"] == "woocommerce_rest_request_entity_too_large"
    assert box.state.quantity("TEE") == 9


def test_products_list_paginates_with_wp_headers(sandbox):
    box = woo(sandbox)
    ids = []
    page = 1
    while True:
        reply = requests.get(f"{box.url}{API}/products?per_page=5&page={page}", auth=(KEY, SECRET))
        assert reply.status_code == 200
        assert reply.headers["X-WP-Total"] == "14" and reply.headers["X-WP-TotalPages"] == "3"
        ids += [product["id"] for product in reply.json()]
        if "next" not in reply.links:
            break
        page += 1
    assert page == 3 and len(ids) == len(set(ids)) == 14
    variable = next(p for p in requests.get(f"{box.url}{API}/products?include=20", auth=(KEY, SECRET)).json())
    assert variable["type"] == "variable" and variable["variations"] == [21, 22]
    variations = requests.get(f"{box.url}{API}/products/20/variations", auth=(KEY, SECRET)).json()
    assert [(v["id"], v["stock_quantity"]) for v in variations] == [(21, 2), (22, 0)]
