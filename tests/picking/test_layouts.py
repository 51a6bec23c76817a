"""Layouts: the parametric builder, the instance importer, constraints, the admin route drawing."""

from __future__ import annotations

import pytest
from django.core.management import CommandError, call_command
from django.db import IntegrityError, transaction

from inventory_app.models import Sku
from picking_app import services
from picking_app.instances import InstanceError, parse_instance
from picking_app.models import Bin, Layout, Restriction
from picking_app.selectors import grid_for
from picking_app.solvers import solve
from tests.factories import make_location

INSTANCE = """TYPE: Single_picker_routing
NUM_AISLES: 3
NUM_CELLS: 4
DEPOT_AISLE: 1
DEPOT_LOCATION: bottom
DISTANCE_AISLE_TO_AISLE: 5
DISTANCE_CELL_TO_CELL: 1
DISTANCE_TOP_TO_CELL: 2
DISTANCE_BOTTOM_TO_CELL: 1.5
DISTANCE_TOP_OR_BOTTOM_TO_DEPOT: 0.5
ARTICLE_SECTION
ID 0 WEIGHT 1
ID 1 WEIGHT 1
SKU_SECTION
ID 0 AISLE 0 CELL 3 QUANTITY 5 SIDE left
ID 1 AISLE 2 CELL 0 QUANTITY 2 SIDE right
ORDER_SECTION
NUM_ORDERS: 2
NUM_ARTICLES_IN_ORDER: 2
ID 0 AMOUNT 1
ID 1 AMOUNT 2
NUM_ARTICLES_IN_ORDER: 1
ID 1 AMOUNT 1
"""


def test_instance_parser_reads_geometry_storage_and_orders():
    instance = parse_instance(INSTANCE)
    g = instance.grid
    assert (g.aisles, g.cells_per_block, g.pitch, g.front_gap, g.back_gap, g.depot_aisle, g.depot_offset) == (
        3, 4, 5.0, 1.5, 2.0, 1, 0.5)
    assert g.depot_side == "front"
    # Cells count from the top in the file: cell 3 of 4 is the first cell from the front.
    assert [(s.article, s.slot.aisle, s.slot.cell, s.side) for s in instance.storage] == [(0, 0, 0, "left"), (1, 2, 3, "right")]
    assert instance.orders == [[(0, 1), (1, 2)], [(1, 1)]]
    # Order 0: depot (aisle 1, 0.5 m out) -> aisle 0 cell 0 -> aisle 2 cell 3 (y = 1.5 + 3 = 4.5).
    route = solve(g, instance.slots_for(instance.orders[0]))
    assert route.length == pytest.approx(2 * 0.5 + 2 * 1.5 + 2 * 4.5 + 2 * 5 + 2 * 5)


@pytest.mark.parametrize("broken, message", [
    (INSTANCE.replace("NUM_CELLS: 4\n", ""), "NUM_CELLS"),
    (INSTANCE.replace("DEPOT_LOCATION: bottom", "DEPOT_LOCATION: left"), "DEPOT_LOCATION"),
    (INSTANCE.replace("AISLE 2 CELL 0", "AISLE 7 CELL 0"), "outside"),
    (INSTANCE.replace("AISLE 2 CELL 0", "AISLE x CELL 0"), "integer"),
    (INSTANCE.replace("NUM_AISLES: 3", "NUM_AISLES: many"), "header"),
])
def test_instance_parser_refuses_broken_files(broken, message):
    with pytest.raises(InstanceError, match=message):
        parse_instance(broken)


@pytest.mark.django_db
def test_import_instance_builds_layout_bins_and_places_skus(tmp_path, capsys):
    make_location("wh-inst")
    path = tmp_path / "instance.txt"
    path.write_text(INSTANCE)
    call_command("import_picking_instance", "wh-inst", str(path), "--sku-prefix", "ART-", "--route")
    layout = Layout.objects.get(location__code="wh-inst")
    assert layout.bins.count() == 3 * 4 * 2 and layout.depot_aisle == 1 and layout.back_gap == 2.0
    assert Bin.objects.get(layout=layout, sku__code="ART-1").code == "A02-003-R"
    assert Sku.objects.filter(code__startswith="ART-").count() == 2
    assert "order 1:" in capsys.readouterr().out
    with pytest.raises(CommandError):
        call_command("import_picking_instance", "wh-inst", str(tmp_path / "missing.txt"))


@pytest.mark.django_db
def test_make_layout_command_and_one_layout_per_location(capsys):
    make_location("wh-make")
    call_command("make_layout", "wh-make", "--aisles", "4", "--cells", "20", "--cross-aisles", "3", "--depot-aisle", "2")
    layout = Layout.objects.get(location__code="wh-make")
    assert (layout.blocks, layout.cells_per_block, layout.bins.count()) == (2, 10, 4 * 2 * 10 * 2)
    assert grid_for(layout).height == pytest.approx(2 * (1.5 + 9 + 1.5))
    with pytest.raises(CommandError, match="already has a layout"):
        call_command("make_layout", "wh-make")
    call_command("make_layout", "wh-make", "--aisles", "2", "--cells", "5", "--replace")
    assert Layout.objects.get(location__code="wh-make").aisles == 2
    with pytest.raises(CommandError):
        call_command("make_layout", "wh-make", "--cells", "7", "--cross-aisles", "3", "--replace")
    with pytest.raises(CommandError):
        call_command("make_layout", "wh-make", "--depot-aisle", "40", "--replace")


@pytest.mark.django_db
def test_database_constraints_hold():
    layout = services.build_layout(location=make_location(), aisles=2, cells_per_block=3)
    with pytest.raises(IntegrityError), transaction.atomic():
        Layout.objects.filter(pk=layout.pk).update(depot_aisle=2)
    with pytest.raises(IntegrityError), transaction.atomic():
        Bin.objects.create(layout=layout, code="dup", aisle=0, block=0, cell=0, side="left")
    with pytest.raises(IntegrityError), transaction.atomic():
        Restriction.objects.create(layout=layout, kind="one_way", aisle=0, block=0, direction="")
    with pytest.raises(IntegrityError), transaction.atomic():
        Restriction.objects.create(layout=layout, kind="cut", aisle=0, block=0, after_cell=None)


@pytest.mark.django_db
def test_admin_draws_a_route_on_the_layout(admin_client):
    layout = services.build_layout(location=make_location("wh-draw"), aisles=3, cells_per_block=5)
    Restriction.objects.create(layout=layout, kind="one_way", aisle=1, block=0, direction="up")
    url = f"/admin/picking_app/layout/{layout.pk}/route/"
    resp = admin_client.get(url, {"n": 6, "seed": 3})
    html = resp.content.decode()
    assert resp.status_code == 200
    assert "<svg" in html and "<polyline" in html and html.count("<circle") == 6
    assert "proven optimal" in html
    resp = admin_client.get(url, {"picks": "A00-001-L, A02-004-R", "policy": "s_shape"})
    assert resp.status_code == 200 and "s_shape" in resp.content.decode()
    resp = admin_client.get(url, {"picks": "NOPE"})
    assert resp.status_code == 200 and "errornote" in resp.content.decode()
    assert admin_client.get(f"/admin/picking_app/layout/{layout.pk}/change/").status_code == 200
    # An impossible layout is a form error in the admin, not a crash.
    form = {"location": layout.location_id, "name": "", "aisles": 3, "blocks": 1, "cells_per_block": 5, "aisle_pitch": 5,
            "cell_length": 1, "front_gap": 1.5, "back_gap": 1.5, "depot_aisle": 7, "depot_side": "front", "depot_offset": 0,
            "restrictions-TOTAL_FORMS": 0, "restrictions-INITIAL_FORMS": 0}
    resp = admin_client.post(f"/admin/picking_app/layout/{layout.pk}/change/", form)
    assert resp.status_code == 200 and "The depot must be in line with an aisle." in resp.content.decode()
    assert Layout.objects.get(pk=layout.pk).depot_aisle == 0
    resp = admin_client.post(f"/admin/picking_app/layout/{layout.pk}/change/", {**form, "depot_aisle": 2, "name": "Main"})
    assert resp.status_code == 302 and Layout.objects.get(pk=layout.pk).depot_aisle == 2
    assert admin_client.get("/admin/picking_app/bin/").status_code == 200
    assert admin_client.get("/admin/picking_app/picklist/").status_code == 200
