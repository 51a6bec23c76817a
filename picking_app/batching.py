"""Order batching under a cart capacity, over plain data.

Methods (compared in de Koster, van der Poort & Wolters 1999, "Efficient
orderbatching methods in warehouses", IJPR 37(7)):

* ``fcfs``: orders in arrival order fill a cart until the next one does not fit.
* ``seed``: a seed order opens each batch (the one spreading over the most
  sub-aisles, then the longest alone); orders are added by the fewest extra
  sub-aisles to enter, ties by the nearest centre of gravity (Elsayed 1981;
  de Koster et al. 1999, seed rule "smallest number of additional aisles").
* ``savings``: Clarke & Wright (1964) savings ``d(i) + d(j) - d(i+j)`` with
  ``d`` the routed length; pairs in decreasing savings merge the batches
  holding them while the cart allows (de Koster et al.'s CW(i)).

Every batch is then routed by the caller's routing function, so the same
solver (optimal by default) judges all three methods.
"""

from __future__ import annotations

from collections.abc import Callable, Hashable, Sequence
from dataclasses import dataclass

from picking_app.geometry import Grid, Slot
from picking_app.solvers.base import Route

METHODS = ("fcfs", "seed", "savings")


@dataclass(frozen=True)
class OrderPicks:
    key: Hashable
    slots: tuple[Slot, ...]
    units: int


@dataclass(frozen=True)
class Batch:
    orders: tuple[int, ...]  # indices into the orders given
    slots: tuple[Slot, ...]
    units: int
    route: Route


RouteFn = Callable[[Sequence[Slot]], Route]


def batch(orders: Sequence[OrderPicks], *, capacity: int, method: str, grid: Grid, route: RouteFn) -> list[Batch]:
    """Group ``orders`` into carts of at most ``capacity`` units and route each cart with ``route``."""
    if capacity < 1:
        raise ValueError("capacity must be at least 1.")
    too_big = [o.key for o in orders if o.units > capacity]
    if too_big:
        raise ValueError(f"Orders larger than the cart: {too_big}.")
    if method == "fcfs":
        groups = _fcfs(orders, capacity)
    elif method == "seed":
        groups = _seed(orders, capacity, grid)
    elif method == "savings":
        groups = _savings(orders, capacity, route)
    else:
        raise ValueError(f"Unknown batching method {method!r}; one of {', '.join(METHODS)}.")
    out = []
    for group in groups:
        slots = tuple(s for i in group for s in orders[i].slots)
        out.append(Batch(tuple(group), slots, sum(orders[i].units for i in group), route(slots)))
    return out


def _fcfs(orders: Sequence[OrderPicks], capacity: int) -> list[list[int]]:
    groups: list[list[int]] = []
    load = capacity + 1
    for i, order in enumerate(orders):
        if load + order.units > capacity:
            groups.append([])
            load = 0
        groups[-1].append(i)
        load += order.units
    return groups


def _centre(grid: Grid, slots: Sequence[Slot]) -> tuple[float, float]:
    return (sum(grid.x(s.aisle) for s in slots) / len(slots), sum(grid.y(s) for s in slots) / len(slots))


def _seed(orders: Sequence[OrderPicks], capacity: int, grid: Grid) -> list[list[int]]:
    subaisles = [{(s.aisle, s.block) for s in o.slots} for o in orders]
    centres = [_centre(grid, o.slots) if o.slots else (0.0, 0.0) for o in orders]
    left = set(range(len(orders)))
    groups = []
    while left:
        seed = max(left, key=lambda i: (len(subaisles[i]), centres[i][0] + centres[i][1], -i))
        left.remove(seed)
        group, load, covered = [seed], orders[seed].units, set(subaisles[seed])
        while True:
            fits = [i for i in left if load + orders[i].units <= capacity]
            if not fits:
                break
            cx, cy = _centre(grid, [s for g in group for s in orders[g].slots] or [Slot(0, 0, 0)])
            nxt = min(fits, key=lambda i: (len(subaisles[i] - covered),
                                           abs(centres[i][0] - cx) + abs(centres[i][1] - cy), i))
            left.remove(nxt)
            group.append(nxt)
            load += orders[nxt].units
            covered |= subaisles[nxt]
        groups.append(sorted(group))
    return groups


def _savings(orders: Sequence[OrderPicks], capacity: int, route: RouteFn) -> list[list[int]]:
    alone = [route(o.slots).length for o in orders]
    pairs = []
    for i in range(len(orders)):
        for j in range(i + 1, len(orders)):
            if orders[i].units + orders[j].units <= capacity:
                saving = alone[i] + alone[j] - route(orders[i].slots + orders[j].slots).length
                pairs.append((-saving, i, j))
    pairs.sort()
    owner = list(range(len(orders)))
    members = {i: [i] for i in range(len(orders))}
    load = {i: orders[i].units for i in range(len(orders))}
    for _, i, j in pairs:
        a, b = owner[i], owner[j]
        if a == b or load[a] + load[b] > capacity:
            continue
        for k in members[b]:
            owner[k] = a
        members[a] += members.pop(b)
        load[a] += load.pop(b)
    return sorted(sorted(group) for group in members.values())
