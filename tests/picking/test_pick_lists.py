"""Pick lists from committed orders at a location: batched under the cart capacity, each routed, never twice."""

from __future__ import annotations

import pytest
from django.core.management import call_command

from inventory_app import stock
from inventory_app.models import ReservationLine
from picking_app import services
from picking_app.distances import Metric
from picking_app.models import PickList, PickListLine
from picking_app.selectors import grid_for, slot_of
from picking_app.solvers import sequence_length
from tests.factories import make_location, make_sku

pytestmark = pytest.mark.django_db


@pytest.fixture
def warehouse():
    here = make_location("wh-a", priority=1)
    other = make_location("wh-b", priority=2)
    layout = services.build_layout(location=here, aisles=5, cells_per_block=8)
    skus = []
    for k in range(8):
        sku = make_sku(f"P{k}", stock_at={here: 50, other: 50})
        layout.bins.filter(aisle=k % 5, cell=(3 * k) % 8, side="left").update(sku=sku)
        skus.append(sku)
    return here, other, layout, skus


def _order(lines: dict[str, int], commit: bool = True) -> str:
    result = stock.reserve(lines=stock.lines_from([{"sku": s, "quantity": q} for s, q in lines.items()]))
    if commit:
        stock.commit(reservation_id=result["id"])
    return result["id"]


@pytest.mark.parametrize("method", ["fcfs", "seed", "savings"])
def test_committed_orders_are_batched_within_capacity_and_routed(warehouse, method):
    here, _, layout, _ = warehouse
    orders = [_order({"P0": 2, "P3": 1}), _order({"P1": 3}), _order({"P2": 1, "P4": 1, "P5": 2}), _order({"P6": 4}),
              _order({"P7": 1, "P0": 1})]
    active = _order({"P1": 1}, commit=False)  # not committed: not picked yet
    result = services.create_pick_lists(location="wh-a", capacity=6, method=method)
    assert result.skipped == {}
    lists = PickList.objects.filter(layout=layout).prefetch_related("lines__reservation_line", "lines__bin")
    assert len(lists) >= 3  # 16 units in carts of 6
    picked = [line.reservation_line.reservation_id for pl in lists for line in pl.lines.all()]
    assert {str(r) for r in picked} == set(orders) and str(active) not in {str(r) for r in picked}
    metric = Metric(grid_for(layout))
    for pl in lists:
        lines = list(pl.lines.order_by("sequence"))
        assert pl.units == sum(line.quantity for line in lines) <= 6
        assert [line.sequence for line in lines] == list(range(1, len(lines) + 1))
        # Orders are never split across carts.
        line_ids = {line.reservation_line_id for line in lines}
        for reservation_id in {line.reservation_line.reservation_id for line in lines}:
            assert set(ReservationLine.objects.filter(reservation_id=reservation_id).values_list("id", flat=True)) <= line_ids
        # The stored length is the walk of the stored sequence, and optimal (Ratliff-Rosenthal).
        slots = [slot_of(line.bin) for line in lines]
        assert pl.exact and pl.route_length == pytest.approx(sequence_length(metric, slots, range(len(slots))))


def test_second_run_picks_nothing_twice_and_other_locations_are_ignored(warehouse):
    here, other, _, skus = warehouse
    _order({"P0": 1})
    first = services.create_pick_lists(location=here, capacity=10)
    assert len(first.pick_lists) == 1
    assert services.create_pick_lists(location=here, capacity=10).pick_lists == []
    # Stock at wh-a runs out for P0, so the next order is served (and committed) at wh-b.
    stock.adjust(sku="P0", location=here, delta=-49, reason="test")
    _order({"P0": 5})
    assert services.create_pick_lists(location=here, capacity=10).pick_lists == []
    assert PickListLine.objects.count() == 1


def test_lines_without_a_bin_or_too_big_for_the_cart_are_reported(warehouse):
    here, _, _, _ = warehouse
    make_sku("LOOSE", stock_at={here: 5})
    _order({"LOOSE": 1})
    _order({"P2": 9})
    result = services.create_pick_lists(location=here, capacity=8)
    assert result.pick_lists == []
    assert sorted(result.skipped.values()) == ["Its order needs 9 units; the cart holds 8.", "No bin at wh-a holds LOOSE."]


def test_api_and_command_create_pick_lists(api, warehouse, capsys):
    _order({"P0": 1, "P1": 1})
    resp = api.post("/api/v1/picking/pick-lists/", {"location": "wh-a", "capacity": 5, "method": "seed"}, format="json")
    assert resp.status_code == 201, resp.json()
    body = resp.json()
    assert len(body["pick_lists"]) == 1 and [line["sequence"] for line in body["pick_lists"][0]["lines"]] == [1, 2]
    assert api.post("/api/v1/picking/pick-lists/", {"location": "wh-a", "capacity": 0}, format="json").status_code == 400
    assert api.post("/api/v1/picking/pick-lists/", {"location": "nope", "capacity": 3}, format="json").status_code == 400
    _order({"P3": 2})
    call_command("make_pick_lists", "wh-a", "--capacity", "4")
    assert "pick list" in capsys.readouterr().out
    assert PickList.objects.count() == 2
