"""Draw a layout and a route as SVG (for the admin): aisles, cross aisles, bins, picks, depot, the walk."""

from __future__ import annotations

from collections.abc import Iterable, Sequence
from html import escape

from picking_app.geometry import Grid, Slot

SCALE = 10.0  # pixels per metre
MARGIN = 30.0


def render(grid: Grid, *, bins: Iterable[tuple[Slot, str, bool]] = (), picks: Sequence[Slot] = (),
           route: Sequence[tuple[float, float]] = (), title: str = "") -> str:
    """``bins``: (slot, side, holds a SKU); ``route``: the walk's corners in metres."""
    width = grid.width + 2 * MARGIN / SCALE + grid.pitch
    height = grid.height + 2 * MARGIN / SCALE + grid.depot_offset + 2

    def px(x: float, y: float) -> tuple[float, float]:
        # y grows towards the back; the front cross aisle is drawn at the bottom.
        return MARGIN + (x + grid.pitch / 2) * SCALE, MARGIN + (grid.height + 1 - y) * SCALE

    out = [f'<svg xmlns="http://www.w3.org/2000/svg" width="{width * SCALE:.0f}" height="{height * SCALE:.0f}" '
           f'viewBox="0 0 {width * SCALE:.0f} {height * SCALE:.0f}" font-family="sans-serif" font-size="10">',
           f"<title>{escape(title)}</title>"]
    for cross in range(grid.blocks + 1):
        (x1, y), (x2, _) = px(-grid.pitch / 2, grid.cross_y(cross)), px(grid.width + grid.pitch / 2, grid.cross_y(cross))
        out.append(f'<line x1="{x1:.1f}" y1="{y:.1f}" x2="{x2:.1f}" y2="{y:.1f}" stroke="#ccc" stroke-width="6"/>')
    for aisle in range(grid.aisles):
        (x, y1), (_, y2) = px(grid.x(aisle), 0), px(grid.x(aisle), grid.height)
        out.append(f'<line x1="{x:.1f}" y1="{y1:.1f}" x2="{x:.1f}" y2="{y2:.1f}" stroke="#eee" stroke-width="6"/>')
        out.append(f'<text x="{x:.1f}" y="{y1 + 14:.1f}" text-anchor="middle">{aisle}</text>')
    half = min(grid.pitch / 4, 1.0)
    cell = min(grid.cell_length * 0.9, 0.9) * SCALE
    for slot, side, stocked in bins:
        dx = -half if side == "left" else half
        x, y = px(grid.x(slot.aisle) + dx, grid.y(slot))
        fill = "#9cc" if stocked else "#fff"
        out.append(f'<rect x="{x - cell / 2:.1f}" y="{y - cell / 2:.1f}" width="{cell:.1f}" height="{cell:.1f}" '
                   f'fill="{fill}" stroke="#888" stroke-width="0.5"/>')
    if route:
        points = " ".join("{:.1f},{:.1f}".format(*px(x, y)) for x, y in route)
        out.append(f'<polyline points="{points}" fill="none" stroke="#1f5fbf" stroke-width="2" '
                   f'stroke-linejoin="round" opacity="0.8"/>')
    for k, slot in enumerate(picks, start=1):
        x, y = px(grid.x(slot.aisle), grid.y(slot))
        out.append(f'<circle cx="{x:.1f}" cy="{y:.1f}" r="4" fill="#d33"/>')
        out.append(f'<text x="{x + 5:.1f}" y="{y - 4:.1f}" fill="#d33">{k}</text>')
    dx, dy = grid.depot_xy()
    x, y = px(dx, dy)
    out.append(f'<rect x="{x - 6:.1f}" y="{y - 6:.1f}" width="12" height="12" fill="#222"><title>depot</title></rect>')
    out.append("</svg>")
    return "\n".join(out)
