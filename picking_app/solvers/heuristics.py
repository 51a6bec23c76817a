"""Improvement heuristics for large pick lists and multi-block or irregular layouts.

Local search with 2-opt (Croes 1958) and Or-opt (Or 1976) moves over the
shortest-path matrix, started from the best policy routes and nearest
neighbour, then an iterated local search (double-bridge kicks, Martin, Otto &
Felten 1991) that keeps the best tour found. Moves are evaluated for
asymmetric matrices too (one-way aisles), so a reversed segment is costed on
its reversed arcs. Tours are lists of matrix indices without the depot (0).
"""

from __future__ import annotations

import random
from collections import deque
from collections.abc import Iterable, Sequence

from picking_app.solvers.base import tour_length

Matrix = Sequence[Sequence[float]]
EPS = 1e-9


def nearest_neighbour(matrix: Matrix) -> list[int]:
    left = set(range(1, len(matrix)))
    tour, here = [], 0
    while left:
        here = min(left, key=lambda j: (matrix[here][j], j))
        tour.append(here)
        left.remove(here)
    return tour


def neighbours(matrix: Matrix, k: int = 8) -> list[list[int]]:
    """For each node the ``k`` nearest others (either direction), depot included: the candidate lists
    that keep a pass O(n k) instead of O(n^2) (Johnson & McGeoch 1997)."""
    n = len(matrix)
    return [sorted((j for j in range(n) if j != i), key=lambda j: min(matrix[i][j], matrix[j][i]))[:k] for i in range(n)]


class _Tour:
    """Depot-anchored tour ``t = [0, *tour, 0]`` with positions and forward/backward prefix lengths."""

    def __init__(self, matrix: Matrix, tour: list[int]) -> None:
        self.matrix = matrix
        self.set(tour)

    def set(self, tour: list[int]) -> None:
        m = self.matrix
        self.tour = tour
        t = self.t = [0, *tour, 0]
        self.pos = {node: k for k, node in enumerate(t[:-1])}
        fwd, bwd = [0.0] * len(t), [0.0] * len(t)
        for k in range(1, len(t)):
            fwd[k] = fwd[k - 1] + m[t[k - 1]][t[k]]
            bwd[k] = bwd[k - 1] + m[t[k]][t[k - 1]]
        self.fwd, self.bwd = fwd, bwd


def _reverse(state: _Tour, i: int, j: int) -> tuple[int, ...] | None:
    """2-opt: reverse t[i..j] (1 <= i < j <= n) if that shortens the tour; the touched nodes, or None."""
    if not 1 <= i < j <= len(state.tour):
        return None
    m, t, fwd, bwd = state.matrix, state.t, state.fwd, state.bwd
    a, b, c, d = t[i - 1], t[i], t[j], t[j + 1]
    old = m[a][b] + (fwd[j] - fwd[i]) + m[c][d]
    new = m[a][c] + (bwd[j] - bwd[i]) + m[b][d]
    if new >= old - EPS:
        return None
    tour = state.tour
    tour[i - 1:j] = tour[i - 1:j][::-1]
    state.set(tour)
    return a, b, c, d


def _move(state: _Tour, near: list[list[int]], i: int, size: int) -> tuple[int, ...] | None:
    """Or-opt: move t[i..i+size-1], either way round, between two stops next to a near neighbour."""
    n = len(state.tour)
    if not (1 <= i and i + size - 1 <= n):
        return None
    m, t, pos, fwd, bwd = state.matrix, state.t, state.pos, state.fwd, state.bwd
    first, last = t[i], t[i + size - 1]
    before, after = t[i - 1], t[i + size]
    inner = fwd[i + size - 1] - fwd[i]
    inner_rev = bwd[i + size - 1] - bwd[i]
    gain = m[before][first] + inner + m[last][after] - m[before][after]
    if gain <= EPS:
        return None
    best, best_k, best_rev = EPS, -1, False
    edges = set()
    for x in (*near[first][:6], *near[last][:6]):
        k = pos.get(x, 0)
        edges.add(k)
        edges.add((k - 1) if k else n)
    for edge in edges:
        if not i - 1 <= edge <= i + size - 1:
            p, q = t[edge], t[edge + 1]
            base = m[p][q]
            forward = gain - (m[p][first] + inner + m[last][q] - base)
            backward = gain - (m[p][last] + inner_rev + m[first][q] - base)
            if forward > best:
                best, best_k, best_rev = forward, edge, False
            if backward > best:
                best, best_k, best_rev = backward, edge, True
    if best_k < 0:
        return None
    tour = state.tour
    segment = tour[i - 1:i - 1 + size]
    if best_rev:
        segment.reverse()
    rest = tour[:i - 1] + tour[i - 1 + size:]
    at = best_k if best_k < i else best_k - size
    state.set(rest[:at] + segment + rest[at:])
    return before, after, first, last, t[best_k], t[best_k + 1]


def _improve_at(state: _Tour, near: list[list[int]], v: int) -> tuple[int, ...] | None:
    """First improving 2-opt or Or-opt move that creates an arc at ``v`` or moves a segment ending at ``v``."""
    pos = state.pos
    here = pos[v]
    for a_index in (here - 1, here):  # new arc from the stop before v, or from v itself
        a = state.t[a_index]
        for c in near[a]:
            touched = _reverse(state, a_index + 1, pos.get(c, 0))
            if touched:
                return touched
    for c in near[v]:
        j = pos.get(c, 0)
        if 1 <= j < here:  # reversing t[j..here-1] makes the arc c -> v
            touched = _reverse(state, j, here - 1)
            if touched:
                return touched
    for size in (1, 2, 3):
        for i in (here, here - size + 1):
            touched = _move(state, near, i, size)
            if touched:
                return touched
    return None


def local_search(matrix: Matrix, tour: Iterable[int], near: list[list[int]] | None = None,
                 active: Iterable[int] | None = None) -> list[int]:
    """2-opt and Or-opt over candidate lists with a queue of active stops ("don't look bits",
    Bentley 1992): a stop is looked at again only when an arc at it changed."""
    tour = list(tour)
    if len(tour) < 2:
        return tour
    if len(tour) == 2:
        return min((tour, tour[::-1]), key=lambda t: tour_length(matrix, t))
    near = near or neighbours(matrix)
    state = _Tour(matrix, tour)
    queue = deque(tour if active is None else [v for v in active if v])
    queued = set(queue)
    while queue:
        v = queue.popleft()
        queued.discard(v)
        touched = _improve_at(state, near, v)
        if touched:
            for u in (v, *touched):
                if u and u not in queued:
                    queue.append(u)
                    queued.add(u)
    return state.tour


def _double_bridge(tour: list[int], rng: random.Random) -> tuple[list[int], list[int]]:
    """The kicked tour and the stops at its new arcs."""
    a, b, c = sorted(rng.sample(range(1, len(tour)), 3))
    kicked = tour[:a] + tour[b:c] + tour[a:b] + tour[c:]
    ends = {0, len(tour) - 1, a - 1, a, b - 1, b, c - 1, c}
    return kicked, [tour[k] for k in ends if 0 <= k < len(tour)]


def improve(matrix: Matrix, starts: Iterable[Sequence[int]] = (), *, kicks: int = 20, seed: int = 0) -> tuple[float, list[int]]:
    """Best tour from local search on each start (plus nearest neighbour), then ``kicks`` ILS rounds."""
    candidates = [list(s) for s in starts] + [nearest_neighbour(matrix)]
    near = neighbours(matrix)
    best, best_len = [], float("inf")
    for start in candidates:
        tour = local_search(matrix, start, near)
        length = tour_length(matrix, tour)
        if length < best_len - EPS:
            best, best_len = tour, length
    if len(best) >= 8:
        rng = random.Random(seed)
        for _ in range(kicks):
            kicked, active = _double_bridge(best, rng)
            tour = local_search(matrix, kicked, near, active)
            length = tour_length(matrix, tour)
            if length < best_len - EPS:
                best, best_len = tour, length
        # A kick's search looks only at the stops by its new arcs, so its result can still hold an improving
        # move elsewhere: one full pass makes the answer a local optimum (found by the property test).
        tour = local_search(matrix, best, near)
        length = tour_length(matrix, tour)
        if length < best_len - EPS:
            best, best_len = tour, length
    return best_len, best
