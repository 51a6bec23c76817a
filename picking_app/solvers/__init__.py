"""Route solvers over plain data: ``solve(grid, slots, policy)`` picks the right one.

``optimal`` is exact: the aisle-by-aisle dynamic programme on a regular layout
with one block (Ratliff-Rosenthal) or two (Roodbergen-de Koster), Held-Karp on
anything else up to ``HELD_KARP_LIMIT`` distinct stops; beyond
that it falls back to the improvement heuristic and says so (``exact=False``).
"""

from __future__ import annotations

from collections.abc import Sequence

from picking_app.distances import Metric, Unreachable
from picking_app.geometry import Grid, Point, Slot
from picking_app.solvers.base import Route, distinct, expand, tour_length
from picking_app.solvers.exact import AISLE_DP_MAX_BLOCKS, HELD_KARP_LIMIT, aisle_dp, held_karp_route
from picking_app.solvers.heuristics import improve
from picking_app.solvers.policies import POLICIES, policy_route

SOLVERS = ("optimal", "heuristic", *POLICIES)

__all__ = ["HELD_KARP_LIMIT", "POLICIES", "SOLVERS", "Route", "baselines", "heuristic_route", "matrix_with_depot",
           "sequence_length", "solve"]


def matrix_with_depot(metric: Metric, slots: Sequence[Slot]) -> list[list[float]]:
    return metric.matrix([Point.depot(), *(Point.of(s) for s in slots)])


def sequence_length(metric: Metric, slots: Sequence[Slot], order: Sequence[int]) -> float:
    """Shortest walk that visits ``slots`` in ``order`` from and back to the depot."""
    points = [Point.depot(), *(Point.of(slots[i]) for i in order), Point.depot()]
    return sum(metric.dist(p, q) for p, q in zip(points, points[1:], strict=False))


def heuristic_route(metric: Metric, slots: Sequence[Slot], *, kicks: int = 20, seed: int = 0) -> Route:
    unique, groups = distinct(slots)
    matrix = matrix_with_depot(metric, unique)
    # Start from the policy with the shortest walk and the one with the shortest order: cheap, already
    # good, and the result is never longer than any baseline (a policy walks at least its order's length,
    # and local search only shortens).
    routes = []
    for policy in POLICIES:
        try:
            routes.append(policy_route(metric.grid, unique, policy, metric.dist))
        except Unreachable:
            continue
    if not routes:
        length, tour = improve(matrix, kicks=kicks, seed=seed)
        return Route(expand([t - 1 for t in tour], groups), length, "heuristic", exact=False)
    by_walk = min(routes, key=lambda r: r.length)
    by_order = min(routes, key=lambda r: tour_length(matrix, [i + 1 for i in r.order]))
    starts = [[i + 1 for i in r.order] for r in {by_walk.method: by_walk, by_order.method: by_order}.values()]
    length, tour = improve(matrix, starts, kicks=kicks, seed=seed)
    return Route(expand([t - 1 for t in tour], groups), length, "heuristic", exact=False)


def solve(grid: Grid, slots: Sequence[Slot], policy: str = "optimal", *, metric: Metric | None = None) -> Route:
    """Route ``slots`` (a pick may repeat a slot) from the depot and back with ``policy``."""
    metric = metric or Metric(grid)
    for slot in slots:
        if not grid.contains(slot):
            raise ValueError(f"{slot} is outside the layout.")
    if policy in POLICIES:
        return policy_route(grid, slots, policy, metric.dist)
    if policy == "heuristic":
        return heuristic_route(metric, slots)
    if policy != "optimal":
        raise ValueError(f"Unknown policy {policy!r}; one of {', '.join(SOLVERS)}.")
    if grid.is_regular and grid.blocks <= AISLE_DP_MAX_BLOCKS:
        return aisle_dp(grid, slots)
    if len(set(slots)) <= HELD_KARP_LIMIT:
        return held_karp_route(slots, lambda unique: matrix_with_depot(metric, unique))
    return heuristic_route(metric, slots, kicks=50)


def baselines(grid: Grid, slots: Sequence[Slot], *, metric: Metric | None = None) -> dict[str, float | None]:
    """Each classic policy's length; None where the policy's walk is impossible (an aisle end it needs is cut off)."""
    metric = metric or Metric(grid)
    out: dict[str, float | None] = {}
    for policy in POLICIES:
        try:
            out[policy] = policy_route(grid, slots, policy, metric.dist).length
        except Unreachable:
            out[policy] = None
    return out
