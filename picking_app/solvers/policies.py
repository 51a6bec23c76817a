"""The classic routing policies, as baselines.

Each policy is written as the walk it prescribes: a list of waypoints (aisle
ends on the cross aisles and the picks, in order) whose length is the sum of
the shortest walks between consecutive waypoints. Putting the aisle ends in the
list forces, for instance, S-shape to traverse a whole aisle even when a short
cut exists, so the lengths are those of the policies, not of their pick orders.

Single block (Hall 1993; Petersen 1997; Roodbergen & de Koster 2001):

* ``s_shape``: every aisle with picks is traversed entirely; with an odd number
  of such aisles the last one is entered and left from the front.
* ``return``: every aisle with picks is entered and left from the front.
* ``midpoint``: the first and last aisles are traversed; the others are
  entered from the back for picks in their back half and from the front for the rest.
* ``largest_gap``: as midpoint, but each aisle is split at its largest gap.
* ``combined``: per aisle, traverse or return, chosen by a two-state dynamic
  programme (Roodbergen & de Koster 1998).

Multi-block (Roodbergen & de Koster 2001, "Routing methods for warehouses with
multiple cross aisles"): go up the left-most aisle with picks to the back of the
farthest block with picks, then serve the blocks from the back to the front;
inside a block the picker enters at the block's back cross aisle, works in the
direction away from the nearer end, and leaves at its front cross aisle, using
the block version of the policy. ``return`` treats each whole aisle from the front.
"""

from __future__ import annotations

import itertools
from collections import defaultdict
from collections.abc import Callable, Sequence

from picking_app.geometry import BACK, Grid, Point, Slot
from picking_app.solvers.base import Route, mirror_grid, mirror_point, mirror_slot

POLICIES = ("s_shape", "return", "midpoint", "largest_gap", "combined")

Picks = list[tuple[float, int]]  # (y, pick index), sorted by y


class _Walk:
    def __init__(self) -> None:
        self.points: list[Point] = [Point.depot()]
        self.order: list[int] = []

    def to(self, point: Point) -> None:
        if self.points[-1] != point:
            self.points.append(point)

    def pick(self, slots: Sequence[Slot], picks: Picks) -> None:
        for _, i in picks:
            self.to(Point.of(slots[i]))
            self.order.append(i)


def policy_route(grid: Grid, slots: Sequence[Slot], policy: str, dist: Callable[[Point, Point], float]) -> Route:
    """The route ``policy`` prescribes; ``dist`` is the layout's shortest-walk metric."""
    if policy not in POLICIES:
        raise ValueError(f"Unknown policy {policy!r}.")
    if grid.depot_side == BACK:
        mirrored = mirror_grid(grid)
        walk = _walk(mirrored, [mirror_slot(grid, s) for s in slots], policy)
        walk.points = [mirror_point(mirrored, p) for p in walk.points]
    else:
        walk = _walk(grid, slots, policy)
    walk.to(Point.depot())
    if len(walk.points) == 1:
        walk.points.append(Point.depot())
    length = sum(dist(p, q) for p, q in itertools.pairwise(walk.points))
    return Route(tuple(walk.order), length, policy, exact=False, waypoints=tuple(walk.points))


def _walk(grid: Grid, slots: Sequence[Slot], policy: str) -> _Walk:
    walk = _Walk()
    if not slots:
        return walk
    by_sub: dict[tuple[int, int], Picks] = defaultdict(list)
    by_aisle: dict[int, Picks] = defaultdict(list)
    for i, slot in enumerate(slots):
        y = grid.y(slot)
        by_sub[slot.aisle, slot.block].append((y, i))
        by_aisle[slot.aisle].append((y, i))
    for picks in (*by_sub.values(), *by_aisle.values()):
        picks.sort()
    aisles = sorted(by_aisle)
    far = max(slot.block for slot in slots)

    if policy == "return" or (far == 0 and len(aisles) == 1):
        for a in aisles:
            walk.to(Point.junction(a, 0))
            walk.pick(slots, by_aisle[a])
            walk.to(Point.junction(a, 0))
        return walk

    if policy == "combined" and far == 0:
        walk.to(Point.junction(aisles[0], 0))
        _combined(grid, walk, slots, [(a, by_sub[a, 0]) for a in aisles], 0, start_back=False)
        return walk

    first = aisles[0]
    walk.to(Point.junction(first, 0))
    walk.pick(slots, [p for b in range(far + 1) for p in by_sub.get((first, b), [])])
    walk.to(Point.junction(first, far + 1))
    here = first
    for block in range(far, -1, -1):
        subs = sorted(a for (a, b) in by_sub if b == block and a != first)
        if subs and abs(subs[-1] - here) < abs(subs[0] - here):
            subs.reverse()
        work = [(a, by_sub[a, block]) for a in subs]
        if not work:
            walk.to(Point.junction(here, block))
        elif policy == "s_shape":
            _s_shape(walk, slots, work, block)
        elif policy == "combined":
            _combined(grid, walk, slots, work, block, start_back=True)
        else:
            _split(grid, walk, slots, work, block, policy)
        here = walk.points[-1].aisle
    return walk


def _s_shape(walk: _Walk, slots, work: list[tuple[int, Picks]], block: int) -> None:
    at_back = True
    for k, (a, picks) in enumerate(work):
        if k == len(work) - 1 and not at_back:
            walk.to(Point.junction(a, block))
            walk.pick(slots, picks)
            walk.to(Point.junction(a, block))
        elif at_back:
            walk.to(Point.junction(a, block + 1))
            walk.pick(slots, picks[::-1])
            walk.to(Point.junction(a, block))
            at_back = False
        else:
            walk.to(Point.junction(a, block))
            walk.pick(slots, picks)
            walk.to(Point.junction(a, block + 1))
            at_back = True


def _split(grid: Grid, walk: _Walk, slots, work: list[tuple[int, Picks]], block: int, policy: str) -> None:
    """Midpoint and largest gap inside one block, entered at its back and left at its front."""
    low, high = grid.cross_y(block), grid.cross_y(block + 1)
    *served_twice, (last, last_picks) = work
    front: list[tuple[int, Picks]] = []
    for a, picks in served_twice:
        if policy == "midpoint":
            cut = (low + high) / 2
        else:
            ys = [low] + [y for y, _ in picks] + [high]
            gap = max(range(len(ys) - 1), key=lambda k: ys[k + 1] - ys[k])
            cut = ys[gap]  # picks at or below the gap's lower end are served from the front
        back_part = [p for p in picks if p[0] > cut]
        front.append((a, [p for p in picks if p[0] <= cut]))
        if back_part:
            walk.to(Point.junction(a, block + 1))
            walk.pick(slots, back_part[::-1])
            walk.to(Point.junction(a, block + 1))
    walk.to(Point.junction(last, block + 1))
    walk.pick(slots, last_picks[::-1])
    walk.to(Point.junction(last, block))
    for a, picks in reversed(front):
        if picks:
            walk.to(Point.junction(a, block))
            walk.pick(slots, picks)
            walk.to(Point.junction(a, block))


def _combined(grid: Grid, walk: _Walk, slots, work: list[tuple[int, Picks]], block: int, *, start_back: bool) -> None:
    """Traverse or return per sub-aisle, minimising the vertical walking; ends on the front cross aisle."""
    low, high = grid.cross_y(block), grid.cross_y(block + 1)
    length = high - low
    # cost[side] after each sub-aisle; side 0 = front cross aisle, 1 = back. Sideways walking is the
    # same on both cross aisles, so only the vertical part decides.
    cost = [float("inf"), float("inf")]
    cost[1 if start_back else 0] = 0.0
    choices: list[tuple[tuple[int, str], tuple[int, str]]] = []
    for _, picks in work:
        ret = (2 * (picks[-1][0] - low), 2 * (high - picks[0][0]))
        new = [float("inf"), float("inf")]
        pick: list[tuple[int, str]] = [(0, ""), (0, "")]
        for side in (0, 1):
            for came_from, how, extra in ((side, "return", ret[side]), (1 - side, "traverse", length)):
                if cost[came_from] + extra < new[side]:
                    new[side] = cost[came_from] + extra
                    pick[side] = (came_from, how)
        choices.append((pick[0], pick[1]))
        cost = new
    plan, side = [], 0
    for choice in reversed(choices):
        came_from, how = choice[side]
        plan.append((side, how))
        side = came_from
    plan.reverse()
    for (a, picks), (side, how) in zip(work, plan, strict=True):
        if how == "traverse":
            entry = block if side == 1 else block + 1
            walk.to(Point.junction(a, entry))
            walk.pick(slots, picks if side == 1 else picks[::-1])
            walk.to(Point.junction(a, block + side))
        else:
            walk.to(Point.junction(a, block + side))
            walk.pick(slots, picks if side == 0 else picks[::-1])
            walk.to(Point.junction(a, block + side))
