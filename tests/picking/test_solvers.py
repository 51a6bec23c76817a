"""The exact solvers agree with each other and with brute force; nothing beats the optimum."""

from __future__ import annotations

import pytest
from hypothesis import HealthCheck, example, given, settings
from hypothesis import strategies as st

from picking_app.distances import Metric, Unreachable
from picking_app.geometry import Grid, Slot
from picking_app.solvers import POLICIES, heuristic_route, matrix_with_depot, sequence_length, solve
from picking_app.solvers.base import tour_length
from picking_app.solvers.exact import aisle_dp, brute_force, held_karp, ratliff_rosenthal
from picking_app.solvers.heuristics import local_search

SETTINGS = settings(max_examples=100, deadline=None, suppress_health_check=[HealthCheck.too_slow])


@st.composite
def single_block(draw, max_picks: int = 7):
    aisles = draw(st.integers(1, 6))
    cells = draw(st.integers(1, 8))
    grid = Grid(
        aisles=aisles, cells_per_block=cells, pitch=draw(st.sampled_from([1.0, 2.5, 5.0])),
        cell_length=draw(st.sampled_from([1.0, 1.3])), front_gap=draw(st.sampled_from([0.0, 1.5])),
        back_gap=draw(st.sampled_from([0.5, 1.5])), depot_aisle=draw(st.integers(0, aisles - 1)),
        depot_side=draw(st.sampled_from(["front", "back"])), depot_offset=draw(st.sampled_from([0.0, 2.0])),
    )
    slots = draw(st.lists(st.builds(Slot, st.integers(0, aisles - 1), st.just(0), st.integers(0, cells - 1)),
                          min_size=0, max_size=max_picks))
    return grid, slots


@st.composite
def any_layout(draw, max_picks: int = 6):
    aisles = draw(st.integers(1, 4))
    cells = draw(st.integers(1, 5))
    blocks = draw(st.integers(1, 3))
    subaisle = st.tuples(st.integers(0, aisles - 1), st.integers(0, blocks - 1))
    cuts = draw(st.frozensets(st.tuples(st.integers(0, aisles - 1), st.integers(0, blocks - 1), st.integers(-1, cells - 1)),
                              max_size=2))
    one_way = draw(st.dictionaries(subaisle, st.sampled_from(["up", "down"]), max_size=2))
    grid = Grid(
        aisles=aisles, cells_per_block=cells, blocks=blocks, pitch=draw(st.sampled_from([2.0, 5.0])),
        depot_aisle=draw(st.integers(0, aisles - 1)), depot_side=draw(st.sampled_from(["front", "back"])),
        depot_offset=draw(st.sampled_from([0.0, 1.0])), cuts=cuts,
        one_way=tuple((a, b, d) for (a, b), d in one_way.items()),
    )
    slots = draw(st.lists(st.builds(Slot, st.integers(0, aisles - 1), st.integers(0, blocks - 1), st.integers(0, cells - 1)),
                          min_size=1, max_size=max_picks))
    return grid, slots


def _is_permutation(order, n: int) -> bool:
    return sorted(order) == list(range(n))


@SETTINGS
@given(single_block())
def test_ratliff_rosenthal_equals_held_karp_and_brute_force(case):
    grid, slots = case
    metric = Metric(grid)
    rr = ratliff_rosenthal(grid, slots)
    matrix = matrix_with_depot(metric, slots)
    hk, _ = held_karp(matrix)
    bf, _ = brute_force(matrix)
    assert rr.length == pytest.approx(bf)
    assert hk == pytest.approx(bf)
    assert _is_permutation(rr.order, len(slots))
    # The order read off the optimal tour subgraph walks exactly the optimal length.
    assert sequence_length(metric, slots, rr.order) == pytest.approx(rr.length)


@st.composite
def two_block(draw, max_picks: int = 9):
    aisles, cells = draw(st.integers(1, 6)), draw(st.integers(1, 6))
    grid = Grid(aisles=aisles, cells_per_block=cells, blocks=2, pitch=draw(st.sampled_from([1.0, 5.0])),
                front_gap=draw(st.sampled_from([0.0, 1.5])), back_gap=draw(st.sampled_from([0.5, 2.0])),
                depot_aisle=draw(st.integers(0, aisles - 1)), depot_side=draw(st.sampled_from(["front", "back"])),
                depot_offset=draw(st.sampled_from([0.0, 1.0])))
    slots = draw(st.lists(st.builds(Slot, st.integers(0, aisles - 1), st.integers(0, 1), st.integers(0, cells - 1)),
                          min_size=0, max_size=max_picks))
    return grid, slots


@SETTINGS
@given(two_block())
def test_two_block_aisle_dp_equals_held_karp(case):
    grid, slots = case
    metric = Metric(grid)
    route = aisle_dp(grid, slots)
    hk, _ = held_karp(matrix_with_depot(metric, slots))
    assert route.exact and route.method == "roodbergen_de_koster"
    assert route.length == pytest.approx(hk)
    assert _is_permutation(route.order, len(slots))
    assert sequence_length(metric, slots, route.order) == pytest.approx(route.length)


@SETTINGS
@given(any_layout())
def test_optimal_equals_brute_force_on_multi_block_and_irregular_layouts(case):
    grid, slots = case
    metric = Metric(grid)
    try:
        matrix = matrix_with_depot(metric, slots)
    except Unreachable:
        return
    bf, _ = brute_force(matrix)
    route = solve(grid, slots, "optimal")
    assert route.exact and route.length == pytest.approx(bf)
    assert sequence_length(metric, slots, route.order) == pytest.approx(bf)


@SETTINGS
@given(st.one_of(single_block(), any_layout()))
def test_no_heuristic_or_policy_beats_the_optimum(case):
    grid, slots = case
    metric = Metric(grid)
    try:
        optimum = brute_force(matrix_with_depot(metric, slots))[0]
    except Unreachable:
        return
    for policy in (*POLICIES, "heuristic"):
        try:
            route = solve(grid, slots, policy)
        except Unreachable:
            continue  # a policy's waypoint (an aisle end) may be cut off; the optimum does not need it
        assert route.length >= optimum - 1e-9, policy
        assert _is_permutation(route.order, len(slots)), policy
        # The walk a policy prescribes is never shorter than the shortest walk in its own order.
        assert route.length >= sequence_length(metric, slots, route.order) - 1e-9, policy


@settings(max_examples=40, deadline=None)
@given(st.lists(st.builds(Slot, st.integers(0, 9), st.integers(0, 1), st.integers(0, 21)), min_size=14, max_size=40))
@example([Slot(*s) for s in ((0, 0, 0), (0, 0, 1), (0, 1, 0), (0, 1, 1), (0, 1, 11), (1, 0, 18), (1, 1, 1), (2, 0, 6),
                             (2, 0, 11), (2, 1, 6), (2, 1, 17), (3, 0, 0), (4, 0, 0), (4, 0, 9), (5, 0, 6), (5, 1, 0),
                             (6, 0, 0), (7, 0, 2), (7, 1, 10))])  # the kicks' searches had left an improving move
def test_heuristic_never_beats_the_best_known_and_is_a_local_optimum(slots):
    grid = Grid(aisles=10, cells_per_block=22, blocks=2)
    metric = Metric(grid)
    matrix = matrix_with_depot(metric, slots)
    route = heuristic_route(metric, slots, kicks=3)
    length, tour = route.length, [i + 1 for i in route.order]
    assert sorted(tour) == list(range(1, len(slots) + 1))
    assert sequence_length(metric, slots, [t - 1 for t in tour]) == pytest.approx(length)
    assert tour_length(matrix, local_search(matrix, tour)) == pytest.approx(length)  # already a local optimum
    for policy in POLICIES:
        # Started from the policies' orders, the heuristic can only be at least as good as every policy.
        assert length <= solve(grid, slots, policy, metric=metric).length + 1e-9


def test_ratliff_rosenthal_hand_checked_example():
    # Two aisles 10 m apart, aisle length 1.5 + 4 + 1.5 = 7 m, depot at the front of aisle 0.
    grid = Grid(aisles=2, cells_per_block=5, pitch=10)
    slots = [Slot(0, 0, 4), Slot(1, 0, 0)]
    # Up aisle 0 (5.5), back out (5.5), across (10), into aisle 1 (1.5) and out (1.5), back (10): 34.
    # Traversing both aisles costs 7 + 10 + 7 + 10 = 34 too; nothing is shorter.
    assert ratliff_rosenthal(grid, slots).length == pytest.approx(34)
    assert solve(grid, slots, "s_shape").length == pytest.approx(34)
    assert solve(grid, slots, "return").length == pytest.approx(34)


def test_policies_hand_checked_example():
    # 3 aisles, 5 m apart; aisle 0..7 m; picks: aisle 0 at 2.5 m, aisle 1 at 5.5 m, aisle 2 at 1.5 m.
    grid = Grid(aisles=3, cells_per_block=5, pitch=5)
    slots = [Slot(0, 0, 1), Slot(1, 0, 4), Slot(2, 0, 0)]
    lengths = {p: solve(grid, slots, p).length for p in POLICIES}
    # S-shape: traverse 0 and 1 (7 + 7), then aisle 2 in and out (3), plus 2 x 10 sideways.
    assert lengths["s_shape"] == pytest.approx(7 + 7 + 3 + 20)
    # Return: 2 x (2.5 + 5.5 + 1.5) + 20.
    assert lengths["return"] == pytest.approx(19 + 20)
    # Midpoint: traverse 0 and 2, aisle 1 from the back (2 x 1.5).
    assert lengths["midpoint"] == pytest.approx(7 + 3 + 7 + 20)
    assert lengths["largest_gap"] == pytest.approx(7 + 3 + 7 + 20)
    assert solve(grid, slots).length == pytest.approx(min(lengths.values()))


def test_empty_pick_list_is_a_zero_route():
    grid = Grid(aisles=3, cells_per_block=4)
    for policy in ("optimal", "heuristic", *POLICIES):
        route = solve(grid, [], policy)
        assert route.length == 0 and route.order == ()


def test_unknown_policy_and_slot_outside_layout_are_refused():
    grid = Grid(aisles=2, cells_per_block=3)
    with pytest.raises(ValueError):
        solve(grid, [Slot(0, 0, 0)], "teleport")
    with pytest.raises(ValueError):
        solve(grid, [Slot(2, 0, 0)])
