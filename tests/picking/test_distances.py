"""Closed-form distances equal A* on regular layouts; irregular layouts go round what is in the way."""

from __future__ import annotations

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from picking_app.distances import Metric, Unreachable, closed_form
from picking_app.geometry import Grid, Point, Slot


@st.composite
def regular_layout_and_points(draw):
    aisles, cells, blocks = draw(st.integers(1, 5)), draw(st.integers(1, 6)), draw(st.integers(1, 3))
    grid = Grid(aisles=aisles, cells_per_block=cells, blocks=blocks, pitch=draw(st.sampled_from([1.0, 5.0])),
                cell_length=draw(st.sampled_from([0.8, 1.0])), front_gap=draw(st.sampled_from([0.0, 1.5])),
                back_gap=draw(st.sampled_from([1.0, 2.0])), depot_aisle=draw(st.integers(0, aisles - 1)),
                depot_side=draw(st.sampled_from(["front", "back"])), depot_offset=draw(st.sampled_from([0.0, 3.0])))
    slot = st.builds(Point, st.just("slot"), st.integers(0, aisles - 1), st.integers(0, blocks - 1), st.integers(0, cells - 1))
    junction = st.builds(Point.junction, st.integers(0, aisles - 1), st.integers(0, blocks))
    points = draw(st.lists(st.one_of(slot, junction, st.just(Point.depot())), min_size=1, max_size=6))
    return grid, points


@settings(max_examples=150, deadline=None)
@given(regular_layout_and_points())
def test_closed_form_equals_astar_and_the_matrix_on_regular_layouts(case):
    grid, points = case
    metric = Metric(grid)
    matrix = metric.matrix(points)
    for i, p in enumerate(points):
        for j, q in enumerate(points):
            searched, _ = metric.graph.astar(p, q)
            assert closed_form(grid, p, q) == pytest.approx(searched)
            assert matrix[i][j] == pytest.approx(searched)


def test_obstacle_forces_a_detour_and_one_way_aisles_are_asymmetric():
    regular = Grid(aisles=2, cells_per_block=10, pitch=5)
    low, high = Point.of(Slot(0, 0, 1)), Point.of(Slot(0, 0, 8))
    assert Metric(regular).dist(low, high) == pytest.approx(7)
    # Block aisle 0 between cells 4 and 5: go out the front, through aisle 1 and back in from the back.
    blocked = Grid(aisles=2, cells_per_block=10, pitch=5, cuts=frozenset({(0, 0, 4)}))
    assert not blocked.is_regular
    assert Metric(blocked).dist(low, high) == pytest.approx(2.5 + 5 + 12 + 5 + 2.5)
    assert Metric(blocked).matrix([low, high])[0][1] == pytest.approx(27)
    one_way = Grid(aisles=2, cells_per_block=10, pitch=5, one_way=((0, 0, "up"),))
    metric = Metric(one_way)
    assert metric.dist(low, high) == pytest.approx(7)
    assert metric.dist(high, low) == pytest.approx(2.5 + 5 + 12 + 5 + 2.5)  # out the back, round through aisle 1
    path = metric.path(high, low)
    assert path[0] == (0.0, 9.5) and path[-1] == (0.0, 2.5) and len(path) > 2


def test_cut_off_points_are_unreachable():
    grid = Grid(aisles=1, cells_per_block=5, cuts=frozenset({(0, 0, 1), (0, 0, 2)}))
    trapped = Point.of(Slot(0, 0, 2))
    with pytest.raises(Unreachable):
        Metric(grid).dist(Point.depot(), trapped)
    with pytest.raises(Unreachable):
        Metric(grid).matrix([Point.depot(), trapped])


def test_invalid_layouts_are_refused():
    with pytest.raises(ValueError):
        Grid(aisles=0, cells_per_block=3)
    with pytest.raises(ValueError):
        Grid(aisles=2, cells_per_block=3, depot_aisle=2)
    with pytest.raises(ValueError):
        Grid(aisles=2, cells_per_block=3, cuts=frozenset({(0, 0, 3)}))
