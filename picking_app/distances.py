"""Shortest walking distances on a layout.

On a regular layout (no obstacles, one-way aisles or closed cross aisles) the
distance has a closed form: walk along the aisle when both points share it,
otherwise leave through one end of the first sub-aisle, cross, and enter the
second through one of its ends (the cross aisles are the only way between
aisles; Roodbergen & de Koster 2001). Anything else goes through A* over the
layout graph (junctions, every cell, the depot) with the Manhattan distance as
the heuristic, which is admissible because every edge is axis-parallel and
obstacles only lengthen walks. A whole matrix is one Dijkstra per source, i.e.
A* with a zero heuristic settled once for all targets, instead of n² searches.
"""

from __future__ import annotations

import heapq
from collections.abc import Sequence
from functools import lru_cache

from picking_app.geometry import BACK, DOWN, FRONT, UP, Grid, Point, xy


class Unreachable(ValueError):
    """No walk connects the two points (obstacles or one-way aisles cut them off)."""


class LayoutGraph:
    """Directed graph of the layout: node ids for junctions, cells and the depot."""

    def __init__(self, grid: Grid) -> None:
        self.grid = grid
        self.ids: dict[Point, int] = {}
        self.coords: list[tuple[float, float]] = []
        self.adj: list[list[tuple[int, float]]] = []
        for aisle in range(grid.aisles):
            for cross in range(grid.blocks + 1):
                self._node(Point.junction(aisle, cross))
            for block in range(grid.blocks):
                for cell in range(grid.cells_per_block):
                    self._node(Point("slot", aisle, block, cell))
        depot = self._node(Point.depot())
        one_way = {(a, b): d for a, b, d in grid.one_way}
        for aisle in range(grid.aisles):
            for block in range(grid.blocks):
                chain = [Point.junction(aisle, block)]
                chain += [Point("slot", aisle, block, cell) for cell in range(grid.cells_per_block)]
                chain.append(Point.junction(aisle, block + 1))
                direction = one_way.get((aisle, block))
                for after, (low, high) in enumerate(zip(chain, chain[1:], strict=False), start=-1):
                    if (aisle, block, after) in grid.cuts:
                        continue
                    length = xy(grid, high)[1] - xy(grid, low)[1]
                    if direction != DOWN:
                        self._edge(low, high, length)
                    if direction != UP:
                        self._edge(high, low, length)
        for cross in range(grid.blocks + 1):
            for aisle in range(grid.aisles - 1):
                if (cross, aisle) not in grid.closed_cross:
                    left, right = Point.junction(aisle, cross), Point.junction(aisle + 1, cross)
                    self._edge(left, right, grid.pitch)
                    self._edge(right, left, grid.pitch)
        gate = self.ids[depot_gate(grid)]
        self.adj[depot].append((gate, grid.depot_offset))
        self.adj[gate].append((depot, grid.depot_offset))

    def _node(self, point: Point) -> int:
        self.ids[point] = len(self.coords)
        self.coords.append(xy(self.grid, point))
        self.adj.append([])
        return self.ids[point]

    def _edge(self, a: Point, b: Point, length: float) -> None:
        self.adj[self.ids[a]].append((self.ids[b], length))

    def node(self, point: Point) -> int:
        try:
            return self.ids[point]
        except KeyError:
            raise ValueError(f"{point} is not on this layout.") from None

    def astar(self, source: Point, target: Point) -> tuple[float, list[int]]:
        """Hart, Nilsson & Raphael (1968) with the Manhattan heuristic."""
        start, goal = self.node(source), self.node(target)
        gx, gy = self.coords[goal]
        coords = self.coords

        def h(n: int) -> float:
            x, y = coords[n]
            return abs(x - gx) + abs(y - gy)

        best = {start: 0.0}
        parent = {start: -1}
        frontier = [(h(start), 0.0, start)]
        while frontier:
            _, g, node = heapq.heappop(frontier)
            if node == goal:
                path = [node]
                while parent[path[-1]] != -1:
                    path.append(parent[path[-1]])
                return g, path[::-1]
            if g > best[node]:
                continue
            for nxt, w in self.adj[node]:
                ng = g + w
                if ng < best.get(nxt, float("inf")) - 1e-12:
                    best[nxt] = ng
                    parent[nxt] = node
                    heapq.heappush(frontier, (ng + h(nxt), ng, nxt))
        raise Unreachable(f"No walk from {source} to {target}.")

    def dijkstra(self, source: Point) -> list[float]:
        dist = [float("inf")] * len(self.coords)
        start = self.node(source)
        dist[start] = 0.0
        frontier = [(0.0, start)]
        while frontier:
            d, node = heapq.heappop(frontier)
            if d > dist[node]:
                continue
            for nxt, w in self.adj[node]:
                nd = d + w
                if nd < dist[nxt]:
                    dist[nxt] = nd
                    heapq.heappush(frontier, (nd, nxt))
        return dist


def depot_gate(grid: Grid) -> Point:
    """The junction the depot connects to."""
    return Point.junction(grid.depot_aisle, 0 if grid.depot_side == FRONT else grid.blocks)


@lru_cache(maxsize=32)
def graph_for(grid: Grid) -> LayoutGraph:
    return LayoutGraph(grid)


def closed_form(grid: Grid, p: Point, q: Point) -> float:
    """Exact distance on a regular layout; see the module docstring."""
    if p == q:
        return 0.0
    if p.kind == "depot":
        return grid.depot_offset + closed_form(grid, depot_gate(grid), q)
    if q.kind == "depot":
        return grid.depot_offset + closed_form(grid, p, depot_gate(grid))
    x1, y1 = xy(grid, p)
    x2, y2 = xy(grid, q)
    if p.aisle == q.aisle:
        return abs(y1 - y2)
    ends1 = (p.block, p.block + 1) if p.kind == "slot" else (p.block,)
    ends2 = (q.block, q.block + 1) if q.kind == "slot" else (q.block,)
    vertical = min(
        abs(y1 - grid.cross_y(c1)) + abs(grid.cross_y(c1) - grid.cross_y(c2)) + abs(grid.cross_y(c2) - y2)
        for c1 in ends1
        for c2 in ends2
    )
    return abs(x1 - x2) + vertical


def _closed_form_matrix(grid: Grid, points: Sequence[Point]) -> list[list[float]]:
    """``closed_form`` for every pair, with the per-point work hoisted out of the n^2 loop."""
    gate = depot_gate(grid)
    info = []
    for p in points:
        extra = grid.depot_offset if p.kind == "depot" else 0.0
        q = gate if p.kind == "depot" else p
        x, y = xy(grid, q)
        ends = (q.block, q.block + 1) if q.kind == "slot" else (q.block,)
        info.append((q.aisle, x, y, [(abs(y - grid.cross_y(c)), grid.cross_y(c)) for c in ends], extra, p))
    rows = []
    for a1, x1, y1, ends1, e1, p in info:
        row = []
        for a2, x2, y2, ends2, e2, q in info:
            if p == q:
                row.append(0.0)
            elif a1 == a2:
                row.append(abs(y1 - y2) + e1 + e2)
            else:
                row.append(abs(x1 - x2) + e1 + e2 + min(d1 + abs(c1 - c2) + d2 for d1, c1 in ends1 for d2, c2 in ends2))
        rows.append(row)
    return rows


class Metric:
    """Distances between points of one layout: closed form when regular, graph search otherwise."""

    def __init__(self, grid: Grid) -> None:
        self.grid = grid
        self.regular = grid.is_regular
        self._graph: LayoutGraph | None = None

    @property
    def graph(self) -> LayoutGraph:
        if self._graph is None:
            self._graph = graph_for(self.grid)
        return self._graph

    def dist(self, p: Point, q: Point) -> float:
        if self.regular:
            return closed_form(self.grid, p, q)
        return self.graph.astar(p, q)[0]

    def matrix(self, points: Sequence[Point]) -> list[list[float]]:
        """``m[i][j]`` is the walk from ``points[i]`` to ``points[j]`` (asymmetric with one-way aisles)."""
        if self.regular:
            return _closed_form_matrix(self.grid, points)
        graph = self.graph
        targets = [graph.node(q) for q in points]
        rows = []
        for p in points:
            dist = graph.dijkstra(p)
            row = [dist[t] for t in targets]
            if any(d == float("inf") for d in row):
                raise Unreachable(f"Some points cannot be reached from {p}.")
            rows.append(row)
        return rows

    def path(self, p: Point, q: Point) -> list[tuple[float, float]]:
        """The polyline of one shortest walk (for drawing)."""
        _, nodes = self.graph.astar(p, q)
        coords = [self.graph.coords[n] for n in nodes]
        # Keep only the corners so the SVG stays small.
        out = coords[:1]
        for i in range(1, len(coords) - 1):
            (ax, ay), (bx, by), (cx, cy) = out[-1], coords[i], coords[i + 1]
            if not ((ax == bx == cx) or (ay == by == cy)):
                out.append(coords[i])
        if len(coords) > 1:
            out.append(coords[-1])
        return out


__all__ = ["BACK", "FRONT", "LayoutGraph", "Metric", "Unreachable", "closed_form", "depot_gate", "graph_for"]
