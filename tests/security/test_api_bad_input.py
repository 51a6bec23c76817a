"""Bad input found by the API fuzzer (test_api_fuzz.py), each reproduced exactly: the answer must be a 4xx, not a 500.

Each test pins a 5xx the fuzzer once found; all are fixed and must stay fixed.
"""

from __future__ import annotations

from decimal import Decimal

import pytest
from rest_framework.test import APIClient

from inventory_app import orders, stock
from inventory_app.models import Price
from tests.factories import make_location, make_sku

pytestmark = pytest.mark.django_db


@pytest.fixture
def client(staff_token) -> APIClient:
    client = APIClient(raise_request_exception=False)
    client.credentials(HTTP_AUTHORIZATION=f"Token {staff_token}")
    return client


@pytest.fixture
def tee():
    return make_sku("BI-TEE", stock_at={make_location("bi-wh"): 10})


def assert_client_error(response):
    assert 400 <= response.status_code < 500, (response.status_code, response.content[:300])


def test_order_detail_with_non_numeric_id(client, tee):
    orders.place_order(channel="web", external_id="bi-1", lines=[orders.OrderLineRequest("bi-1-1", tee, 1)])
    assert_client_error(client.get("/api/v1/orders/null,null/"))


def test_order_detail_with_unknown_numeric_id_is_404(client):
    assert client.get("/api/v1/orders/999999/").status_code == 404


def test_price_with_negative_amount(client, tee):
    assert_client_error(client.post("/api/v1/prices/", {"sku": tee.code, "amount": "-1.00"}, format="json"))


def test_price_window_reversed_by_patch(client, tee):
    price = Price.objects.create(sku=tee, amount=Decimal("5.00"))
    assert_client_error(client.patch(f"/api/v1/prices/{price.pk}/", {"valid_to": "2001-01-01T00:00:00Z"}, format="json"))


def test_price_window_reversed_without_valid_from(client, tee):
    assert_client_error(client.post("/api/v1/prices/", {"sku": tee.code, "amount": "5.00",
                                                        "valid_to": "2001-01-01T00:00:00Z"}, format="json"))


BAD_UUID = "2080c62AABb-52Fb2Fb-acaEd8fEcbea9dcc"  # matches the route's [0-9a-fA-F-]{32,36}, is not a UUID


def test_reservation_id_not_a_uuid_on_detail(client):
    assert_client_error(client.get(f"/api/v1/reservations/{BAD_UUID}/"))


@pytest.mark.parametrize("action", ["commit", "release"])
def test_reservation_id_not_a_uuid_on_settle(client, action):
    assert_client_error(client.post(f"/api/v1/reservations/{BAD_UUID}/{action}/"))


def test_reservation_round_trip_still_works(client, tee):
    held = stock.reserve(lines=[stock.LineRequest(sku=tee.code, quantity=2)])
    assert client.get(f"/api/v1/reservations/{held['id']}/").status_code == 200
    assert client.post(f"/api/v1/reservations/{held['id']}/release/").status_code == 200
