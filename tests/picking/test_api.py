"""POST /api/v1/picking/routes/: sequence, length and baselines; 400s with field errors for bad input."""

from __future__ import annotations

import pytest
from rest_framework.test import APIClient

from picking_app import services
from picking_app.models import Restriction, RestrictionKind
from tests.factories import make_location, make_sku

pytestmark = pytest.mark.django_db

URL = "/api/v1/picking/routes/"


@pytest.fixture
def layout():
    location = make_location("wh-pick")
    return services.build_layout(location=location, aisles=4, cells_per_block=6, aisle_pitch=5)


def test_routes_require_authentication(layout):
    assert APIClient().post(URL, {"location": "wh-pick", "picks": ["A00-000-L"]}, format="json").status_code in (401, 403)


def test_optimal_route_by_bin_and_sku_with_baselines(api, layout):
    sku = make_sku("MUG")
    layout.bins.filter(code="A03-005-R").update(sku=sku)
    resp = api.post(URL, {"location": "wh-pick", "picks": ["A01-002-L", "MUG", "A00-004-R", "A01-002-R"]}, format="json")
    assert resp.status_code == 200, resp.json()
    body = resp.json()
    assert body["method"] == "ratliff_rosenthal" and body["exact"] is True
    assert sorted(stop["pick"] for stop in body["sequence"]) == sorted(["A01-002-L", "MUG", "A00-004-R", "A01-002-R"])
    mug = next(stop for stop in body["sequence"] if stop["pick"] == "MUG")
    assert mug == {**mug, "bin": "A03-005-R", "sku": "MUG", "aisle": 3, "cell": 5, "side": "right"}
    assert set(body["baselines"]) == {"s_shape", "return", "midpoint", "largest_gap", "combined"}
    assert all(length >= body["length"] - 1e-9 for length in body["baselines"].values())
    # Aisles 0..3 at 5 m, aisle length 1.5 + 5 + 1.5 = 8 m; aisle 3 must be reached: at least 2 x 15 sideways.
    assert body["length"] >= 30


def test_policy_route_matches_its_baseline(api, layout):
    resp = api.post(URL, {"location": "wh-pick", "picks": ["A01-002-L", "A03-005-R"], "policy": "s_shape"}, format="json")
    assert resp.status_code == 200
    body = resp.json()
    assert body["method"] == "s_shape" and body["exact"] is False
    assert body["length"] == pytest.approx(body["baselines"]["s_shape"])


def test_irregular_layout_is_routed_by_held_karp(api, layout):
    Restriction.objects.create(layout=layout, kind=RestrictionKind.CUT, aisle=1, block=0, after_cell=3)
    resp = api.post(URL, {"location": "wh-pick", "picks": ["A01-001-L", "A01-005-L"]}, format="json")
    assert resp.status_code == 200, resp.json()
    body = resp.json()
    assert body["method"] == "held_karp" and body["exact"] is True
    # Aisle 1 is blocked between cells 3 and 4 (aisles 5 m apart, 8 m long): up aisle 0 (8), along the back (5),
    # down to cell 5 and back (2 x 1.5), back to aisle 0 (5), down it (8), along the front (5), in to cell 1 and
    # out (2 x 2.5), home (5).
    assert body["length"] == pytest.approx(8 + 5 + 3 + 5 + 8 + 5 + 5 + 5)
    regular = api.post(URL, {"location": "wh-pick", "picks": ["A01-001-L", "A01-005-L"], "policy": "return"},
                       format="json").json()
    assert regular["length"] >= body["length"]


@pytest.mark.parametrize("payload, field", [
    ({"picks": ["A00-000-L"]}, "location"),
    ({"location": "wh-pick"}, "picks"),
    ({"location": "wh-pick", "picks": []}, "picks"),
    ({"location": "wh-pick", "picks": "A00-000-L"}, "picks"),
    ({"location": "wh-pick", "picks": ["NOPE"]}, "picks"),
    ({"location": "wh-pick", "picks": ["A00-000-L"] * 201}, "picks"),
    ({"location": "wh-pick", "picks": ["A00-000-L"], "policy": "teleport"}, "policy"),
    ({"location": "nowhere", "picks": ["A00-000-L"]}, "location"),
    ({"location": "x" * 65, "picks": ["A00-000-L"]}, "location"),
])
def test_bad_input_is_a_400_with_field_errors(api, layout, payload, field):
    resp = api.post(URL, payload, format="json")
    assert resp.status_code == 400, resp.content
    assert field in resp.json()


def test_location_without_layout_and_unreachable_pick_are_400(api, layout):
    make_location("wh-empty")
    resp = api.post(URL, {"location": "wh-empty", "picks": ["A00-000-L"]}, format="json")
    assert resp.status_code == 400 and "location" in resp.json()
    for after in (1, 2):
        Restriction.objects.create(layout=layout, kind=RestrictionKind.CUT, aisle=2, block=0, after_cell=after)
    resp = api.post(URL, {"location": "wh-pick", "picks": ["A02-002-L"]}, format="json")
    assert resp.status_code == 400 and "picks" in resp.json()


def test_a_policy_whose_walk_is_blocked_has_a_null_baseline(api, layout):
    # Aisle 1's back end is sealed off (cross aisle closed on both sides, aisle cut below it): S-shape needs it.
    for aisle in (0, 1):
        Restriction.objects.create(layout=layout, kind=RestrictionKind.CLOSED_CROSS, aisle=aisle, block=1)
    Restriction.objects.create(layout=layout, kind=RestrictionKind.CUT, aisle=1, block=0, after_cell=5)
    resp = api.post(URL, {"location": "wh-pick", "picks": ["A00-004-L", "A01-003-L", "A02-001-L"]}, format="json")
    assert resp.status_code == 200, resp.json()
    body = resp.json()
    assert body["baselines"]["s_shape"] is None
    assert body["baselines"]["return"] >= body["length"] and body["exact"]


def test_unknown_pick_error_names_its_position(api, layout):
    resp = api.post(URL, {"location": "wh-pick", "picks": ["A00-000-L", "GHOST"]}, format="json")
    assert resp.status_code == 400
    assert list(resp.json()["picks"]) == ["1"]


def test_schema_documents_the_route_endpoint(api):
    resp = api.get("/api/schema/", {"format": "json"})
    assert resp.status_code == 200
    assert "/api/v1/picking/routes/" in resp.json()["paths"]
