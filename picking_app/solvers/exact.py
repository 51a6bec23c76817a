"""Exact route solvers.

* ``aisle_dp``: the optimal tour in a regular warehouse by dynamic programming
  over the aisles. For one block this is Ratliff & Rosenthal (1983), "Order-
  picking in a rectangular warehouse: a solvable case of the traveling salesman
  problem", Operations Research 31(3); for two blocks (a middle cross aisle) it
  is the extension of Roodbergen & de Koster (2001), "Routing order pickers in
  a warehouse with a middle aisle", EJOR 133(1). The tour subgraph is built
  aisle by aisle: each sub-aisle takes one of six edge configurations (none,
  traverse, double, in from both ends leaving out the largest gap, in and out
  from the back, in and out from the front) and each cross-aisle stretch 0, 1
  or 2 copies. The state after an aisle is the degree parity of the aisle's
  cross-aisle vertices (zero, odd, even) and which of them share a component,
  so the work is linear in the number of aisles. Transitions are derived by
  simulating degrees and components (cached per state) instead of copying the
  papers' tables, and are checked against Held-Karp and brute force in
  tests/picking. ``ratliff_rosenthal`` is the single-block case.
* ``held_karp``: Held & Karp (1962) over a shortest-path matrix; exact on any
  layout (obstacles, one-way aisles, more blocks), O(2^n n^2), so small lists.
* ``brute_force``: every permutation; only for tests.
"""

from __future__ import annotations

import itertools
from collections import defaultdict
from collections.abc import Sequence
from functools import cache

from picking_app.geometry import FRONT, Grid, Slot
from picking_app.solvers.base import Route, distinct, expand, tour_length

HELD_KARP_LIMIT = 13  # distinct stops; 2^13 * 13^2 inner steps is about a second of pure Python
AISLE_DP_MAX_BLOCKS = 2  # the state space grows quickly with the number of cross aisles

INF = float("inf")

# Sub-aisle configurations: edges added at the lower (front) end, at the upper end, and whether they join
# the two ends into one component.
_VERTICAL = {
    "none": (0, 0, False),
    "traverse": (1, 1, True),
    "double": (2, 2, True),
    "gap": (2, 2, False),  # in from both ends, leaving out the largest gap between two picks
    "back": (0, 2, False),  # in from the upper end and out again
    "front": (2, 0, False),  # in from the lower end and out again
}

# A state: (degree class per cross-aisle vertex, component label per vertex (-1: no edges), closed) where
# degree classes are 0 = no edges, 1 = odd, 2 = even and positive, and closed means a finished tour that
# touches none of the current vertices (only valid if nothing else is ever added).
State = tuple[tuple[int, ...], tuple[int, ...], bool]


def _add(degree: int, edges: int) -> int:
    if edges == 0:
        return degree
    return 1 if (degree == 1) != (edges % 2 == 1) else 2


def _canon(labels: list[int]) -> tuple[int, ...]:
    seen: dict[int, int] = {}
    return tuple(-1 if x == -1 else seen.setdefault(x, len(seen)) for x in labels)


# Unbounded caches are bounded in practice: at most AISLE_DP_MAX_BLOCKS + 1 vertices give a small finite set
# of states, option tuples and copy tuples.
@cache
def _vertical(state: State, options: tuple[str, ...]) -> State | None:
    degs, labels, closed = state
    if closed:
        return state if all(o == "none" for o in options) else None
    degs, labels = list(degs), list(labels)
    fresh = len(labels)
    for low, option in enumerate(options):
        add_low, add_high, join = _VERTICAL[option]
        for v, added in ((low, add_low), (low + 1, add_high)):
            if added:
                if labels[v] == -1:
                    labels[v], fresh = fresh, fresh + 1
                degs[v] = _add(degs[v], added)
        if join and labels[low] != labels[low + 1]:
            old, new = labels[low + 1], labels[low]
            labels = [new if x == old else x for x in labels]
    return tuple(degs), _canon(labels), False


@cache
def _horizontal(state: State, copies: tuple[int, ...], depot: int) -> State | None:
    """Add ``copies[c]`` edges along cross aisle ``c`` to the next aisle; ``depot`` is the vertex that must
    end with edges (the depot's), or -1."""
    degs, labels, closed = state
    if any(_add(d, h) == 1 for d, h in zip(degs, copies, strict=True)):
        return None  # a vertex left behind with odd degree can never be fixed
    if depot >= 0 and _add(degs[depot], copies[depot]) == 0:
        return None
    if closed:
        return state if not any(copies) else None
    new = [-1] * len(labels)
    finished = 0
    for label in set(labels) - {-1}:
        members = [c for c, x in enumerate(labels) if x == label and copies[c]]
        finished += not members
        for c in members:
            new[c] = label
    fresh = len(labels)
    for c, h in enumerate(copies):
        if h and labels[c] == -1:
            new[c], fresh = fresh, fresh + 1
    if finished:
        if finished == 1 and all(x == -1 for x in new):
            return tuple(0 for _ in degs), tuple(-1 for _ in degs), True
        return None
    return tuple(_add(0, h) for h in copies), _canon(new), False


def _options(ys: Sequence[float], low: float, high: float) -> list[tuple[str, float]]:
    length = high - low
    if not ys:
        return [("none", 0.0), ("traverse", length), ("double", 2 * length)]
    options = [("traverse", length), ("double", 2 * length), ("back", 2 * (high - ys[0])), ("front", 2 * (ys[-1] - low))]
    if len(ys) > 1:
        gap = max(b - a for a, b in itertools.pairwise(ys))
        options.append(("gap", 2 * (length - gap)))
    return options


def ratliff_rosenthal(grid: Grid, slots: Sequence[Slot]) -> Route:
    """Optimal tour for a regular single-block layout (Ratliff & Rosenthal 1983)."""
    if grid.blocks != 1:
        raise ValueError("Ratliff-Rosenthal needs a single-block layout.")
    return aisle_dp(grid, slots)


def aisle_dp(grid: Grid, slots: Sequence[Slot]) -> Route:
    """Optimal tour for a regular layout with up to ``AISLE_DP_MAX_BLOCKS`` blocks (see the module docstring)."""
    if not grid.is_regular or grid.blocks > AISLE_DP_MAX_BLOCKS:
        raise ValueError(f"The aisle DP needs a regular layout with at most {AISLE_DP_MAX_BLOCKS} blocks.")
    method = "ratliff_rosenthal" if grid.blocks == 1 else "roodbergen_de_koster"
    if not slots:
        return Route((), 0.0, method, exact=True)
    k, d = grid.blocks + 1, grid.depot_aisle
    depot_vertex = 0 if grid.depot_side == FRONT else grid.blocks
    by_point: dict[tuple[int, int, float], list[int]] = defaultdict(list)
    for i, slot in enumerate(slots):
        by_point[slot.aisle, slot.block, grid.y(slot)].append(i)
    ys = [[sorted(y for (a, b, y) in by_point if a == j and b == block) for block in range(grid.blocks)]
          for j in range(grid.aisles)]
    bounds = [(grid.cross_y(b), grid.cross_y(b + 1)) for b in range(grid.blocks)]

    def vertical_options(j: int) -> list[tuple[tuple[str, ...], float]]:
        per_block = [_options(ys[j][b], *bounds[b]) for b in range(grid.blocks)]
        return [(tuple(o for o, _ in combo), sum(c for _, c in combo)) for combo in itertools.product(*per_block)]

    # Empty aisles beyond the picks and the depot can only add length.
    used = {a for a, _, _ in by_point} | {d}
    first, last = min(used), max(used)
    horizontal = list(itertools.product(range(3), repeat=k))

    empty: State = ((0,) * k, (-1,) * k, False)
    history: list[dict] = []
    layer: dict[State, tuple[float, State | None, tuple]] = {}
    for options, cost in vertical_options(first):
        nxt = _vertical(empty, options)
        if nxt is not None and (nxt not in layer or cost < layer[nxt][0]):
            layer[nxt] = (cost, None, options)
    history.append(layer)
    for j in range(first + 1, last + 1):
        between: dict[State, tuple[float, State, tuple]] = {}
        depot = depot_vertex if j - 1 == d else -1
        for state, (cost, _, _) in layer.items():
            for copies in horizontal:
                nxt = _horizontal(state, copies, depot)
                if nxt is None:
                    continue
                total = cost + sum(copies) * grid.pitch
                if nxt not in between or total < between[nxt][0]:
                    between[nxt] = (total, state, copies)
        history.append(between)
        layer = {}
        options_j = vertical_options(j)
        for state, (cost, _, _) in between.items():
            for options, extra in options_j:
                nxt = _vertical(state, options)
                if nxt is None:
                    continue
                total = cost + extra
                if nxt not in layer or total < layer[nxt][0]:
                    layer[nxt] = (total, state, options)
        history.append(layer)

    best, best_state = INF, None
    for state, (cost, _, _) in layer.items():
        degs, labels, closed = state
        if 1 in degs or (last == d and degs[depot_vertex] == 0):
            continue
        if (closed or len(set(labels) - {-1}) == 1) and cost < best:
            best, best_state = cost, state
    if best_state is None:  # pragma: no cover - traversing every aisle is always feasible
        raise RuntimeError("The aisle DP found no tour.")
    choices = []
    state = best_state
    for stage in reversed(history):
        _, prev, choice = stage[state]
        choices.append(choice)
        state = prev
    choices.reverse()
    order = _euler_order(grid, ys, by_point, choices, first, depot_vertex)
    return Route(order, best + 2 * grid.depot_offset, method, exact=True)


def _euler_order(grid: Grid, ys, by_point, choices: list[tuple], first: int, depot_vertex: int) -> tuple[int, ...]:
    """Walk the optimal tour subgraph (Hierholzer) from the depot; picks in first-visit order."""
    adj: dict[tuple, list[list]] = defaultdict(list)

    def edge(u: tuple, v: tuple, copies: int) -> None:
        for _ in range(copies):
            record = [u, v, False]
            adj[u].append(record)
            adj[v].append(record)

    aisle = first
    for stage, choice in enumerate(choices):
        if stage % 2:  # horizontal copies per cross aisle, towards the next aisle
            for c, h in enumerate(choice):
                edge(("v", aisle, c), ("v", aisle + 1, c), h)
            aisle += 1
            continue
        for block, option in enumerate(choice):
            points = ys[aisle][block]
            chain = [("v", aisle, block), *(("p", aisle, block, y) for y in points), ("v", aisle, block + 1)]
            links = len(chain) - 1
            if option == "traverse":
                copies = [1] * links
            elif option == "double":
                copies = [2] * links
            elif option == "back":
                copies = [0] + [2] * (links - 1)
            elif option == "front":
                copies = [2] * (links - 1) + [0]
            elif option == "gap":
                gaps = [b - a for a, b in itertools.pairwise(points)]
                skip = gaps.index(max(gaps)) + 1  # the link between pick k and pick k+1 is link k+1
                copies = [0 if n == skip else 2 for n in range(links)]
            else:
                copies = [0] * links
            for (u, v), c in zip(itertools.pairwise(chain), copies, strict=True):
                edge(u, v, c)

    stack, walk = [("v", grid.depot_aisle, depot_vertex)], []
    while stack:
        u = stack[-1]
        while adj[u] and adj[u][-1][2]:
            adj[u].pop()
        if adj[u]:
            record = adj[u].pop()
            record[2] = True
            stack.append(record[1] if record[0] == u else record[0])
        else:
            walk.append(stack.pop())
    seen: set[tuple] = set()
    order: list[int] = []
    for node in reversed(walk):
        if node[0] == "p" and node not in seen:
            seen.add(node)
            order.extend(by_point[node[1], node[2], node[3]])
    return tuple(order)


def held_karp(matrix: Sequence[Sequence[float]]) -> tuple[float, tuple[int, ...]]:
    """Exact TSP tour from node 0 over a (possibly asymmetric) matrix; returns (length, visiting order of 1..n)."""
    n = len(matrix) - 1
    if n <= 0:
        return 0.0, ()
    if n > HELD_KARP_LIMIT:
        raise ValueError(f"Held-Karp is limited to {HELD_KARP_LIMIT} stops.")
    full = 1 << n
    cost = [[INF] * n for _ in range(full)]
    parent = [[-1] * n for _ in range(full)]
    for j in range(n):
        cost[1 << j][j] = matrix[0][j + 1]
    bits = [1 << k for k in range(n)]
    for mask in range(1, full):
        row = cost[mask]
        for j in range(n):
            here = row[j]
            if here == INF:
                continue
            out = matrix[j + 1]
            for k in range(n):
                if mask & bits[k]:
                    continue
                nxt = mask | bits[k]
                value = here + out[k + 1]
                if value < cost[nxt][k]:
                    cost[nxt][k] = value
                    parent[nxt][k] = j
    last_row = cost[full - 1]
    best, end = min((last_row[j] + matrix[j + 1][0], j) for j in range(n))
    order, mask = [], full - 1
    while end != -1:
        order.append(end + 1)
        end, mask = parent[mask][end], mask & ~bits[end]
    return best, tuple(reversed(order))


def brute_force(matrix: Sequence[Sequence[float]]) -> tuple[float, tuple[int, ...]]:
    n = len(matrix) - 1
    if n > 9:
        raise ValueError("Brute force is for tests only (at most 9 stops).")
    best = min((tour_length(matrix, p), p) for p in itertools.permutations(range(1, n + 1)))
    return best[0], tuple(best[1])


def held_karp_route(slots: Sequence[Slot], matrix_for) -> Route:
    """Held-Karp over the distinct stops; ``matrix_for(slots)`` is the matrix with the depot as row/column 0."""
    unique, groups = distinct(slots)
    length, tour = held_karp(matrix_for(unique))
    return Route(expand([t - 1 for t in tour], groups), length, "held_karp", exact=True)
