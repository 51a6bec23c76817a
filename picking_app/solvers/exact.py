"""Exact route solvers.

* ``ratliff_rosenthal``: the optimal tour in a single-block (one front and one
  back cross aisle) regular warehouse, by the dynamic programme of Ratliff &
  Rosenthal (1983), "Order-picking in a rectangular warehouse: a solvable case
  of the traveling salesman problem", Operations Research 31(3). It builds the
  tour subgraph aisle by aisle; the state after each aisle is the degree parity
  of the aisle's two ends (zero, odd, even) and how the partial subgraph's
  components touch them, so the work is linear in the number of aisles. The
  transitions are derived by simulating the degrees and components of every
  candidate edge configuration instead of copying the paper's tables, which
  keeps them checkable against Held-Karp and brute force (tests/picking).
* ``held_karp``: Held & Karp (1962) over a shortest-path matrix; exact on any
  layout (multi-block, obstacles, one-way aisles), O(2^n n^2), so small lists.
* ``brute_force``: every permutation; only for tests.
"""

from __future__ import annotations

import itertools
from collections import defaultdict
from collections.abc import Sequence

from picking_app.geometry import BACK, Grid, Slot
from picking_app.solvers.base import Route, distinct, expand, mirror_grid, mirror_slot, tour_length

HELD_KARP_LIMIT = 13  # distinct stops; 2^13 * 13^2 inner steps is about a second of pure Python

INF = float("inf")

# Vertical configurations of one aisle (Ratliff & Rosenthal's six): name, edges added at the front end,
# at the back end, and whether they join the two ends into one component.
_VERTICAL = {
    "none": (0, 0, False),
    "traverse": (1, 1, True),
    "double": (2, 2, True),
    "gap": (2, 2, False),  # in from both ends, leaving out the largest gap between two picks
    "back": (0, 2, False),  # in from the back and out again
    "front": (2, 0, False),  # in from the front and out again
}


def _add(degree: int, edges: int) -> int:
    """Degree classes: 0 = no edges, 1 = odd, 2 = even and positive."""
    if edges == 0:
        return degree
    return 1 if (degree == 1) != (edges % 2 == 1) else 2


def _components(state: tuple[int, int, str]) -> list[set[str]]:
    da, db, comp = state
    if comp == "1":
        return [{v for v, d in (("a", da), ("b", db)) if d}]
    if comp == "2":
        return [{"a"}, {"b"}]
    return []


def _vertical(state: tuple[int, int, str], option: str) -> tuple[int, int, str] | None:
    da, db, comp = state
    va, vb, join = _VERTICAL[option]
    if comp == "C":
        return state if (va, vb) == (0, 0) else None
    comps = _components(state)
    for vertex, added in (("a", va), ("b", vb)):
        if added and not any(vertex in c for c in comps):
            comps.append({vertex})
    if join:
        merged = set().union(*(c for c in comps if c & {"a", "b"}))
        comps = [c for c in comps if not c & {"a", "b"}] + [merged]
    da, db = _add(da, va), _add(db, vb)
    if not comps:
        return (0, 0, "E")
    return (da, db, "1" if len(comps) == 1 else "2")


def _horizontal(state: tuple[int, int, str], ha: int, hb: int, depot_here: bool) -> tuple[int, int, str] | None:
    da, db, comp = state
    if _add(da, ha) == 1 or _add(db, hb) == 1:
        return None  # an end left with odd degree can never be fixed
    if depot_here and _add(da, ha) == 0:
        return None
    if comp == "C":
        return state if (ha, hb) == (0, 0) else None
    closed = 0
    new: list[set[str]] = []
    for c in _components(state):
        nc = ({"a"} if "a" in c and ha else set()) | ({"b"} if "b" in c and hb else set())
        if nc:
            new.append(nc)
        else:
            closed += 1
    for vertex, added, degree in (("a", ha, da), ("b", hb, db)):
        if added and degree == 0:
            new.append({vertex})
    if closed:
        return (0, 0, "C") if closed == 1 and not new else None
    if not new:
        return (0, 0, "E")
    return (_add(0, ha), _add(0, hb), "1" if len(new) == 1 else "2")


def _options(ys: Sequence[float], length: float) -> list[tuple[str, float]]:
    if not ys:
        return [("none", 0.0), ("traverse", length), ("double", 2 * length)]
    options = [("traverse", length), ("double", 2 * length), ("back", 2 * (length - ys[0])), ("front", 2 * ys[-1])]
    if len(ys) > 1:
        gap = max(b - a for a, b in itertools.pairwise(ys))
        options.append(("gap", 2 * (length - gap)))
    return options


def ratliff_rosenthal(grid: Grid, slots: Sequence[Slot]) -> Route:
    """Optimal tour for a regular single-block layout (Ratliff & Rosenthal 1983)."""
    if grid.blocks != 1 or not grid.is_regular:
        raise ValueError("Ratliff-Rosenthal needs a regular single-block layout.")
    if grid.depot_side == BACK:
        # Seen from the back the tour is the same walk: same order, same length.
        return ratliff_rosenthal(mirror_grid(grid), [mirror_slot(grid, s) for s in slots])
    if not slots:
        return Route((), 0.0, "ratliff_rosenthal", exact=True)
    length, m, d = grid.height, grid.aisles, grid.depot_aisle
    by_aisle: dict[int, dict[float, list[int]]] = defaultdict(lambda: defaultdict(list))
    for i, slot in enumerate(slots):
        by_aisle[slot.aisle][grid.y(slot)].append(i)
    ys = [sorted(by_aisle[j]) for j in range(m)]

    # Trim the empty aisles on both sides that the depot does not need: they can only add length.
    first = min(min(by_aisle), d)
    last = max(max(by_aisle), d)

    start = (0, 0, "E")
    layer: dict[tuple, tuple[float, tuple | None, tuple]] = {}
    history: list[dict] = []
    for option, cost in _options(ys[first], length):
        nxt = _vertical(start, option)
        if nxt is not None and (nxt not in layer or cost < layer[nxt][0]):
            layer[nxt] = (cost, None, ("v", option))
    history.append(layer)
    for j in range(first + 1, last + 1):
        between: dict[tuple, tuple[float, tuple, tuple]] = {}
        for state, (cost, _, _) in layer.items():
            for ha in range(3):
                for hb in range(3):
                    nxt = _horizontal(state, ha, hb, depot_here=(j - 1 == d))
                    total = cost + (ha + hb) * grid.pitch
                    if nxt is not None and (nxt not in between or total < between[nxt][0]):
                        between[nxt] = (total, state, ("h", ha, hb))
        history.append(between)
        layer = {}
        for state, (cost, _, _) in between.items():
            for option, extra in _options(ys[j], length):
                nxt = _vertical(state, option)
                total = cost + extra
                if nxt is not None and (nxt not in layer or total < layer[nxt][0]):
                    layer[nxt] = (total, state, ("v", option))
        history.append(layer)

    best, best_state = INF, None
    for state, (cost, _, _) in layer.items():
        da, db, comp = state
        if da == 1 or db == 1 or comp not in ("1", "C"):
            continue
        if last == d and da == 0:
            continue
        if cost < best:
            best, best_state = cost, state
    if best_state is None:  # pragma: no cover - a traversal of every aisle is always feasible
        raise RuntimeError("Ratliff-Rosenthal found no tour.")

    choices = []
    state = best_state
    for stage in reversed(history):
        _, prev, choice = stage[state]
        choices.append(choice)
        state = prev
    choices.reverse()
    order = _euler_order(grid, ys, by_aisle, choices, first)
    return Route(order, best + 2 * grid.depot_offset, "ratliff_rosenthal", exact=True)


def _euler_order(grid: Grid, ys: list[list[float]], by_aisle, choices: list[tuple], first: int) -> tuple[int, ...]:
    """Walk the optimal tour subgraph (Hierholzer) from the depot; picks in first-visit order."""
    adj: dict[tuple, list[list]] = defaultdict(list)

    def edge(u: tuple, v: tuple, copies: int) -> None:
        for _ in range(copies):
            record = [u, v, False]
            adj[u].append(record)
            adj[v].append(record)

    aisle = first
    for choice in choices:
        if choice[0] == "h":
            _, ha, hb = choice
            edge(("a", aisle), ("a", aisle + 1), ha)
            edge(("b", aisle), ("b", aisle + 1), hb)
            aisle += 1
            continue
        option = choice[1]
        chain = [("a", aisle)] + [("p", aisle, y) for y in ys[aisle]] + [("b", aisle)]
        links = list(itertools.pairwise(chain))
        if option == "traverse":
            copies = [1] * len(links)
        elif option == "double":
            copies = [2] * len(links)
        elif option == "back":
            copies = [0] + [2] * (len(links) - 1)
        elif option == "front":
            copies = [2] * (len(links) - 1) + [0]
        elif option == "gap":
            gaps = [b - a for a, b in itertools.pairwise(ys[aisle])]
            skip = gaps.index(max(gaps)) + 1  # the link between pick k and pick k+1 is link k+1
            copies = [0 if k == skip else 2 for k in range(len(links))]
        else:
            copies = [0] * len(links)
        for (u, v), c in zip(links, copies, strict=True):
            edge(u, v, c)

    start = ("a", grid.depot_aisle)
    stack, walk = [start], []
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
            order.extend(by_aisle[node[1]][node[2]])
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
