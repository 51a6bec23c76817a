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


def _two_opt(state: _Tour, near: list[list[int]]) -> bool:
    """Reverse t[i..j] when the new arc t[i-1] -> t[j] goes to a near neighbour and the tour gets shorter."""
    m, improved = state.matrix, False
    i = 1
    while i < len(state.t) - 2:
        t, pos, fwd, bwd = state.t, state.pos, state.fwd, state.bwd
        a, b = t[i - 1], t[i]
        for c in near[a]:
            j = pos.get(c, 0)
            if j <= i:
                continue
            d = t[j + 1]
            old = m[a][b] + (fwd[j] - fwd[i]) + m[c][d]
            new = m[a][c] + (bwd[j] - bwd[i]) + m[b][d]
            if new < old - EPS:
                tour = state.tour
                tour[i - 1:j] = tour[i - 1:j][::-1]
                state.set(tour)
                improved = True
                break
        i += 1
    return improved


def _or_opt(state: _Tour, near: list[list[int]]) -> bool:
    """Move a segment of 1-3 stops, either way round, next to one of its near neighbours."""
    m, improved = state.matrix, False
    for size in (1, 2, 3):
        i = 1
        while i + size - 1 <= len(state.tour):
            t, pos, fwd, bwd = state.t, state.pos, state.fwd, state.bwd
            n = len(state.tour)
            first, last = t[i], t[i + size - 1]
            before, after = t[i - 1], t[i + size]
            inner = fwd[i + size - 1] - fwd[i]
            inner_rev = bwd[i + size - 1] - bwd[i]
            gain = m[before][first] + inner + m[last][after] - m[before][after]
            best, best_k, best_rev = -EPS, -1, False
            edges = set()
            for x in (*near[first], *near[last]):
                k = pos.get(x, 0)
                edges.add(k)
                edges.add(k - 1 if k else n)
            for k in edges:
                if i - 1 <= k <= i + size - 1 or k < 0:
                    continue
                p, q = t[k], t[k + 1]
                base = m[p][q]
                forward = gain - (m[p][first] + inner + m[last][q] - base)
                backward = gain - (m[p][last] + inner_rev + m[first][q] - base)
                if forward > best:
                    best, best_k, best_rev = forward, k, False
                if backward > best:
                    best, best_k, best_rev = backward, k, True
            if best_k >= 0 and best > EPS:
                tour = state.tour
                segment = tour[i - 1:i - 1 + size]
                if best_rev:
                    segment.reverse()
                rest = tour[:i - 1] + tour[i - 1 + size:]
                at = best_k if best_k < i else best_k - size
                state.set(rest[:at] + segment + rest[at:])
                improved = True
            i += 1
    return improved


def local_search(matrix: Matrix, tour: Iterable[int], near: list[list[int]] | None = None) -> list[int]:
    """2-opt and Or-opt passes over candidate lists until a pass changes nothing."""
    tour = list(tour)
    if len(tour) < 2:
        return tour
    if len(tour) == 2:
        return min((tour, tour[::-1]), key=lambda t: tour_length(matrix, t))
    near = near or neighbours(matrix)
    state = _Tour(matrix, tour)
    while _two_opt(state, near) | _or_opt(state, near):
        pass
    return state.tour


def _double_bridge(tour: list[int], rng: random.Random) -> list[int]:
    a, b, c = sorted(rng.sample(range(1, len(tour)), 3))
    return tour[:a] + tour[b:c] + tour[a:b] + tour[c:]


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
            tour = local_search(matrix, _double_bridge(best, rng), near)
            length = tour_length(matrix, tour)
            if length < best_len - EPS:
                best, best_len = tour, length
    return best_len, best
