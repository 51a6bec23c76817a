"""Batching: every order in exactly one cart, carts within capacity, savings and seed beat FCFS here."""

from __future__ import annotations

import random

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from picking_app.batching import OrderPicks, batch
from picking_app.geometry import Grid, Slot
from picking_app.solvers import solve

GRID = Grid(aisles=6, cells_per_block=10)


def route(slots):
    return solve(GRID, slots)


orders_strategy = st.lists(
    st.builds(lambda k, slots, units: OrderPicks(k, tuple(slots), units), st.integers(),
              st.lists(st.builds(Slot, st.integers(0, 5), st.just(0), st.integers(0, 9)), min_size=1, max_size=3),
              st.integers(1, 5)),
    min_size=1, max_size=10,
)


@settings(max_examples=60, deadline=None)
@given(orders_strategy, st.integers(5, 12), st.sampled_from(["fcfs", "seed", "savings"]))
def test_every_order_lands_in_one_cart_within_capacity(orders, capacity, method):
    carts = batch(orders, capacity=capacity, method=method, grid=GRID, route=route)
    assert sorted(i for cart in carts for i in cart.orders) == list(range(len(orders)))
    for cart in carts:
        assert cart.units == sum(orders[i].units for i in cart.orders) <= capacity
        assert sorted(cart.slots) == sorted(s for i in cart.orders for s in orders[i].slots)
        assert cart.route.length == pytest.approx(route(cart.slots).length)


def test_fcfs_keeps_arrival_order():
    orders = [OrderPicks(k, (Slot(k % 6, 0, 1),), 3) for k in range(5)]
    carts = batch(orders, capacity=7, method="fcfs", grid=GRID, route=route)
    assert [c.orders for c in carts] == [(0, 1), (2, 3), (4,)]


def test_seed_and_savings_group_neighbours_that_fcfs_splits():
    # Orders alternate between the far left and the far right aisle; FCFS mixes them, the others do not.
    orders = [OrderPicks(k, (Slot(0 if k % 2 == 0 else 5, 0, 8),), 1) for k in range(8)]
    totals = {m: sum(c.route.length for c in batch(orders, capacity=4, method=m, grid=GRID, route=route))
              for m in ("fcfs", "seed", "savings")}
    assert totals["seed"] < totals["fcfs"] and totals["savings"] < totals["fcfs"]
    for m in ("seed", "savings"):
        for cart in batch(orders, capacity=4, method=m, grid=GRID, route=route):
            assert len({orders[i].slots[0].aisle for i in cart.orders}) == 1


def test_savings_is_not_worse_than_fcfs_on_random_instances():
    rng = random.Random(7)
    worse = 0
    for _ in range(10):
        orders = [OrderPicks(k, tuple(Slot(rng.randrange(6), 0, rng.randrange(10)) for _ in range(rng.randint(1, 3))),
                             rng.randint(1, 3)) for k in range(12)]
        fcfs = sum(c.route.length for c in batch(orders, capacity=8, method="fcfs", grid=GRID, route=route))
        savings = sum(c.route.length for c in batch(orders, capacity=8, method="savings", grid=GRID, route=route))
        worse += savings > fcfs
    assert worse <= 1


def test_bad_capacity_method_and_oversized_orders_are_refused():
    orders = [OrderPicks("big", (Slot(0, 0, 0),), 9)]
    with pytest.raises(ValueError):
        batch(orders, capacity=0, method="fcfs", grid=GRID, route=route)
    with pytest.raises(ValueError):
        batch(orders, capacity=5, method="fcfs", grid=GRID, route=route)
    with pytest.raises(ValueError):
        batch(orders[:0], capacity=5, method="random", grid=GRID, route=route)
