"""The REST API: auth, validation (400 with field messages), 409s and Idempotency-Key."""

from __future__ import annotations

import threading

import pytest
from django.db import connection
from rest_framework.test import APIClient

from inventory_app.models import IdempotencyKey, IdempotencyStatus, Reservation, StockLevel
from tests.factories import make_bundle, make_location, make_sku

pytestmark = pytest.mark.django_db


def test_every_api_endpoint_requires_authentication():
    client = APIClient()
    for url in ["/api/v1/skus/", "/api/v1/locations/", "/api/v1/reservations/", "/api/v1/stock/adjustments/",
                "/api/v1/orders/"]:
        assert client.get(url).status_code in (401, 403, 405)
        assert client.post(url, {}, format="json").status_code in (401, 403)


def test_create_sku_bundle_location_and_read_availability(api):
    assert api.post("/api/v1/locations/", {"code": "wh-1", "name": "Main", "priority": 1}, format="json").status_code == 201
    for code in ("TEE", "CAP"):
        assert api.post("/api/v1/skus/", {"code": code, "name": code}, format="json").status_code == 201
    resp = api.post("/api/v1/skus/", {"code": "KIT", "name": "Kit", "components": [
        {"sku": "TEE", "quantity": 2}, {"sku": "CAP", "quantity": 1}]}, format="json")
    assert resp.status_code == 201, resp.json()
    assert resp.json()["is_bundle"] is True
    for sku, qty in (("TEE", 9), ("CAP", 3)):
        resp = api.post("/api/v1/stock/adjustments/", {"sku": sku, "location": "wh-1", "delta": qty,
                                                       "reason": "initial"}, format="json")
        assert resp.status_code == 201, resp.json()
    body = api.get("/api/v1/skus/KIT/availability/").json()
    assert body["available"] == 3 and body["is_bundle"]
    tee = api.get("/api/v1/skus/TEE/availability/").json()
    assert tee == {**tee, "sku": "TEE", "on_hand": 9, "reserved": 0, "available": 9}
    assert tee["locations"][0]["location"] == "wh-1"
    assert "channels" in tee


def test_bad_input_is_400_with_field_messages(api):
    make_location("wh-1")
    cases = [
        ("/api/v1/skus/", {"name": "no code"}, "code"),
        ("/api/v1/stock/adjustments/", {"sku": "X", "location": "wh-1", "delta": "many", "reason": "r"}, "delta"),
        ("/api/v1/stock/adjustments/", {"sku": "X", "location": "wh-1", "delta": 0, "reason": "r"}, "delta"),
        ("/api/v1/stock/counts/", {"sku": "X", "location": "wh-1", "on_hand": -1, "as_of": "2026-01-01T00:00:00Z"},
         "on_hand"),
        ("/api/v1/stock/counts/", {"sku": "X", "location": "wh-1", "on_hand": 1, "as_of": "yesterday"}, "as_of"),
        ("/api/v1/reservations/", {"lines": []}, "lines"),
        ("/api/v1/reservations/", {"lines": [{"sku": "X", "quantity": 0}]}, "lines"),
        ("/api/v1/reservations/", "not json at all", None),
    ]
    for url, body, field in cases:
        resp = api.post(url, body, format="json")
        assert resp.status_code == 400, (url, body, resp.content)
        if field:
            assert field in resp.json(), resp.json()
    resp = api.post("/api/v1/stock/adjustments/", {"sku": "NOPE", "location": "wh-1", "delta": 1, "reason": "r"},
                    format="json")
    assert resp.status_code == 400 and resp.json()["code"] == "unknown_sku"


def test_reservation_lifecycle_and_insufficient_stock(api):
    wh = make_location("wh-1")
    make_sku("TEE", stock_at={wh: 3})
    resp = api.post("/api/v1/reservations/", {"lines": [{"sku": "TEE", "quantity": 2}], "channel": "web"},
                    format="json")
    assert resp.status_code == 201
    reservation = resp.json()
    assert reservation["lines"] == [{"sku": "TEE", "stock_sku": "TEE", "location": "wh-1", "quantity": 2}]
    resp = api.post("/api/v1/reservations/", {"lines": [{"sku": "TEE", "quantity": 2}]}, format="json")
    assert resp.status_code == 409
    assert resp.json() == {**resp.json(), "code": "insufficient_stock", "sku": "TEE", "available": 1}
    assert api.post(f"/api/v1/reservations/{reservation['id']}/commit/").json()["status"] == "committed"
    assert api.post(f"/api/v1/reservations/{reservation['id']}/release/").status_code == 409
    assert api.get(f"/api/v1/reservations/{reservation['id']}/").json()["status"] == "committed"
    assert api.get("/api/v1/reservations/00000000-0000-0000-0000-000000000000/").status_code == 404
    assert api.post("/api/v1/reservations/00000000-0000-0000-0000-000000000000/commit/").status_code == 404


def test_idempotency_key_replays_rejects_changed_body_and_in_flight(api, api_user):
    wh = make_location("wh-1")
    sku = make_sku("TEE", stock_at={wh: 10})
    body = {"lines": [{"sku": "TEE", "quantity": 2}]}
    first = api.post("/api/v1/reservations/", body, format="json", HTTP_IDEMPOTENCY_KEY="k-1")
    again = api.post("/api/v1/reservations/", body, format="json", HTTP_IDEMPOTENCY_KEY="k-1")
    assert first.status_code == again.status_code == 201
    assert again.json()["id"] == first.json()["id"] and again["Idempotent-Replayed"] == "true"
    assert StockLevel.objects.get(sku=sku).reserved == 2 and Reservation.objects.count() == 1
    changed = api.post("/api/v1/reservations/", {"lines": [{"sku": "TEE", "quantity": 3}]}, format="json",
                       HTTP_IDEMPOTENCY_KEY="k-1")
    assert changed.status_code == 422
    IdempotencyKey.objects.create(owner=str(api_user.pk), key="k-busy", fingerprint="x",
                                  status=IdempotencyStatus.IN_PROGRESS)
    busy = api.post("/api/v1/reservations/", body, format="json", HTTP_IDEMPOTENCY_KEY="k-busy")
    assert busy.status_code in (409, 422)


def test_an_idempotency_key_of_255_characters_is_kept_and_answered_again(api):
    """Keys up to 255 characters are accepted; the stock operation's key prefixed it past the 255 the ledger keeps,
    and the database's refusal answered 500 (review finding, 2026-12-07)."""
    wh = make_location("wh-1")
    sku = make_sku("TEE", stock_at={wh: 10})
    body = {"lines": [{"sku": "TEE", "quantity": 2}]}
    key = "k" * 255
    first = api.post("/api/v1/reservations/", body, format="json", HTTP_IDEMPOTENCY_KEY=key)
    again = api.post("/api/v1/reservations/", body, format="json", HTTP_IDEMPOTENCY_KEY=key)
    assert first.status_code == again.status_code == 201, first.content
    assert again.json()["id"] == first.json()["id"] and StockLevel.objects.get(sku=sku).reserved == 2


def test_in_flight_repeat_with_same_body_is_409(api, api_user):
    from inventory_app.api.idempotency import request_fingerprint

    wh = make_location("wh-1")
    make_sku("TEE", stock_at={wh: 10})
    body = {"lines": [{"sku": "TEE", "quantity": 1}]}

    class FakeRequest:  # the fingerprint only reads method, path and parsed data
        method, path, data = "POST", "/api/v1/reservations/", body

    IdempotencyKey.objects.create(owner=str(api_user.pk), key="k-busy", fingerprint=request_fingerprint(FakeRequest),
                                  status=IdempotencyStatus.IN_PROGRESS)
    busy = api.post("/api/v1/reservations/", body, format="json", HTTP_IDEMPOTENCY_KEY="k-busy")
    assert busy.status_code == 409 and busy.json()["code"] == "idempotency_key_in_use"


def test_insufficient_stock_answer_is_replayed_for_the_same_key(api):
    wh = make_location("wh-1")
    make_sku("TEE", stock_at={wh: 1})
    body = {"lines": [{"sku": "TEE", "quantity": 2}]}
    assert api.post("/api/v1/reservations/", body, format="json", HTTP_IDEMPOTENCY_KEY="k-2").status_code == 409
    again = api.post("/api/v1/reservations/", body, format="json", HTTP_IDEMPOTENCY_KEY="k-2")
    assert again.status_code == 409 and again["Idempotent-Replayed"] == "true"


@pytest.mark.django_db(transaction=True)
def test_concurrent_requests_with_one_key_reserve_once(api_user):
    from rest_framework.authtoken.models import Token

    wh = make_location("wh-1")
    sku = make_sku("TEE", stock_at={wh: 100})
    token = Token.objects.create(user=api_user)
    codes: list[int] = []

    def post():
        client = APIClient()
        client.credentials(HTTP_AUTHORIZATION=f"Token {token.key}")
        codes.append(client.post("/api/v1/reservations/", {"lines": [{"sku": "TEE", "quantity": 1}]},
                                 format="json", HTTP_IDEMPOTENCY_KEY="same").status_code)
        connection.close()

    threads = [threading.Thread(target=post) for _ in range(8)]
    for t in threads:
        t.start()
    for t in threads:
        t.join()
    assert StockLevel.objects.get(sku=sku).reserved == 1
    assert Reservation.objects.count() == 1
    assert set(codes) <= {201, 409} and 201 in codes


def test_bundle_cannot_contain_itself_or_a_bundle(api):
    tee = make_sku("TEE")
    make_bundle({tee: 1}, code="KIT")
    resp = api.post("/api/v1/skus/", {"code": "META", "name": "m", "components": [{"sku": "KIT", "quantity": 1}]},
                    format="json")
    assert resp.status_code == 400 and "components" in resp.json()


def test_schema_and_docs_are_served(api):
    assert api.get("/api/schema/").status_code == 200
    assert api.get("/api/docs/").status_code == 200
