"""Build a parametric picking layout (bins on both sides of every cell) for a location."""

from __future__ import annotations

from django.core.management.base import BaseCommand, CommandError
from django.db import IntegrityError

from inventory_app.models import Location
from picking_app import services


class Command(BaseCommand):
    help = "Build a warehouse layout: aisles, cells per aisle, pitch, cell length, cross aisles, depot."

    def add_arguments(self, parser):
        parser.add_argument("location", help="Location code.")
        parser.add_argument("--aisles", type=int, default=10)
        parser.add_argument("--cells", type=int, default=45, help="Cells per aisle (split evenly over the blocks).")
        parser.add_argument("--cross-aisles", type=int, default=2, help="Front and back = 2; each middle one adds a block.")
        parser.add_argument("--pitch", type=float, default=5.0, help="Aisle centre to centre (m).")
        parser.add_argument("--cell-length", type=float, default=1.0)
        parser.add_argument("--front-gap", type=float, default=1.5, help="Cross aisle to the first cell (m).")
        parser.add_argument("--back-gap", type=float, default=1.5, help="Last cell to the cross aisle (m).")
        parser.add_argument("--depot-aisle", type=int, default=0)
        parser.add_argument("--depot-side", choices=["front", "back"], default="front")
        parser.add_argument("--depot-offset", type=float, default=0.0)
        parser.add_argument("--name", default="")
        parser.add_argument("--replace", action="store_true", help="Replace the location's existing layout.")

    def handle(self, *args, **o):
        blocks = o["cross_aisles"] - 1
        if blocks < 1:
            raise CommandError("A layout needs at least the front and the back cross aisle.")
        if o["cells"] % blocks:
            raise CommandError(f"{o['cells']} cells do not split evenly over {blocks} blocks.")
        try:
            location = Location.objects.get(code=o["location"])
            layout = services.build_layout(
                location=location, aisles=o["aisles"], cells_per_block=o["cells"] // blocks, blocks=blocks,
                aisle_pitch=o["pitch"], cell_length=o["cell_length"], front_gap=o["front_gap"], back_gap=o["back_gap"],
                depot_aisle=o["depot_aisle"], depot_side=o["depot_side"], depot_offset=o["depot_offset"],
                name=o["name"], replace=o["replace"],
            )
        except Location.DoesNotExist:
            raise CommandError(f"No location {o['location']!r}.") from None
        except ValueError as exc:
            raise CommandError(str(exc)) from None
        except IntegrityError:  # the one-layout-per-location constraint
            raise CommandError("This location already has a layout; use --replace.") from None
        self.stdout.write(f"Layout {layout.pk} for {location.code}: {layout.aisles} aisles x {layout.blocks} block(s) x "
                          f"{layout.cells_per_block} cells, {layout.bins.count()} bins.")
