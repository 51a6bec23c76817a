"""POST /api/v1/tax/calculate/: answers, 400 field errors for bad input, never a 500."""

from __future__ import annotations

import json

import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from tests.tax.conftest import SANDBOX_RATES, control, provider

URL = "/api/v1/tax/calculate/"


def body(**overrides) -> dict:
    data = {
        "currency": "USD",
        "ship_from": {"country": "US", "state": "WA", "zip": "98501", "city": "Olympia", "street": "1 Main St"},
        "ship_to": {"country": "US", "state": "WA", "zip": "98101", "city": "Seattle", "street": "400 Pine St"},
        "lines": [{"id": "1", "sku": "TEE", "quantity": 3, "unit_price": "10.05", "discount": 0},
                  {"id": "2", "tax_code": "20010", "quantity": 1, "unit_price": 49.99}],
        "shipping": "7.95",
        "on_date": "2025-07-01",
    }
    data.update(overrides)
    return data


def post(api, data):
    return api.post(URL, data=json.dumps(data), content_type="application/json")


def test_calculate(api, us_rates):
    response = post(api, body())
    assert response.status_code == 200, response.json()
    data = response.json()
    # 30.15 -> 1.96 + 1.13; 49.99 under 110 -> state exempt, city 1.874625 -> 1.87; shipping 0.52 + 0.30
    assert data["total_tax"] == "5.78"
    assert [(line["id"], line["taxable_amount"], line["tax"], line["rate"]) for line in data["lines"]] == [
        ("1", "30.15", "3.09", "0.102500"), ("2", "49.99", "1.87", "0.037500")]
    assert data["shipping"]["tax"] == "0.82"
    assert {(j["kind"], j["tax"]) for j in data["breakdown"]} == {("state", "2.48"), ("city", "3.30")}
    assert (data["provider"], data["cached"], data["fallback"]) == ("local", False, False)
    assert post(api, body()).json()["cached"] is True


def test_calculate_through_a_provider_that_is_down(api, us_rates, sandbox):
    control(sandbox, rates=SANDBOX_RATES, mode="down")
    provider(sandbox, "taxjar")
    data = post(api, body()).json()
    assert (data["total_tax"], data["fallback"], data["fallback_reason"], data["provider"]) == (
        "5.78", True, "provider_unavailable", "local")


def test_requires_authentication(client, db):
    assert client.post(URL, data=json.dumps(body()), content_type="application/json").status_code in (401, 403)


@pytest.mark.parametrize(("change", "field"), [
    ({"currency": "XYZ"}, "currency"),
    ({"ship_to": {"country": "US", "state": "WA", "zip": "9810"}}, "ship_to"),
    ({"ship_to": {"country": "US", "zip": "98101"}}, "ship_to"),
    ({"ship_to": {"country": "USA"}}, "ship_to"),
    ({"lines": []}, "lines"),
    ({"lines": [{"id": "1", "sku": "A", "quantity": 0, "unit_price": "1"}]}, "lines"),
    ({"lines": [{"id": "1", "sku": "A", "quantity": 1, "unit_price": "-1"}]}, "lines"),
    ({"lines": [{"id": "1", "sku": "A", "quantity": 1, "unit_price": "5", "discount": "6"}]}, "lines"),
    ({"lines": [{"id": "1", "quantity": 1, "unit_price": "5"}]}, "lines"),
    ({"lines": [{"id": "1", "sku": "A", "quantity": 1, "unit_price": "5"}] * 2}, "lines"),
    ({"lines": [{"id": "1", "sku": "A", "quantity": 1, "unit_price": "NaN"}]}, "lines"),
    ({"lines": [{"id": "1", "sku": "A", "quantity": 1, "unit_price": "1e400"}]}, "lines"),
    ({"shipping": "-1"}, "shipping"),
    ({"on_date": "2025-13-01"}, "on_date"),
])
def test_bad_input_is_a_400_naming_the_field(api, us_rates, change, field):
    response = post(api, body(**change))
    assert response.status_code == 400
    assert field in response.json()


def test_unknown_tax_code_is_a_400_with_a_code(api, us_rates):
    response = post(api, body(lines=[{"id": "1", "tax_code": "NOPE", "quantity": 1, "unit_price": "1"}]))
    assert response.status_code == 400 and response.json()["code"] == "unknown_tax_code"


def test_address_without_rates_is_a_422(api, us_rates):
    response = post(api, body(ship_to={"country": "US", "state": "WA", "zip": "98999"}))
    assert response.status_code == 422 and response.json()["code"] == "no_rates_for_address"


def test_malformed_json_is_a_400(api, db):
    assert api.post(URL, data="{not json", content_type="application/json").status_code == 400
    assert api.post(URL, data='{"shipping": NaN}', content_type="application/json").status_code == 400
    assert api.post(URL, data="[1, 2]", content_type="application/json").status_code == 400


json_values = st.recursive(
    st.none() | st.booleans() | st.integers() | st.text(max_size=8) | st.sampled_from(["10.05", "-1", "1e999", "US", "WA"]),
    lambda children: st.lists(children, max_size=3) | st.dictionaries(st.text(max_size=6), children, max_size=3),
    max_leaves=12,
)


@settings(max_examples=60, deadline=None, suppress_health_check=[HealthCheck.function_scoped_fixture])
@given(st.dictionaries(st.sampled_from(["currency", "ship_to", "lines", "shipping", "ship_from", "customer_exemption",
                                        "on_date"]), json_values))
def test_garbage_is_never_a_500(api, us_rates, garbage):
    response = post(api, body(**garbage))
    assert response.status_code in (200, 400, 422), response.content


def test_openapi_documents_the_endpoint(api):
    schema = api.get("/api/schema/", HTTP_ACCEPT="application/json").json()
    operation = schema["paths"][URL]["post"]
    assert "200" in operation["responses"] and "400" in operation["responses"]
