"""Import a single-picker routing instance file (NUM_AISLES, NUM_CELLS, ... SKU_SECTION, ORDER_SECTION)."""

from __future__ import annotations

from pathlib import Path

from django.core.management.base import BaseCommand, CommandError

from inventory_app.models import Location
from picking_app import services
from picking_app.instances import InstanceError
from picking_app.solvers import solve


class Command(BaseCommand):
    help = "Build a location's layout from an instance file; optionally place SKUs and route the instance's orders."

    def add_arguments(self, parser):
        parser.add_argument("location")
        parser.add_argument("path")
        parser.add_argument("--sku-prefix", default="", help="Place SKU <prefix><article id> in its bins.")
        parser.add_argument("--replace", action="store_true")
        parser.add_argument("--route", action="store_true", help="Print the optimal length of each order.")

    def handle(self, *args, **o):
        try:
            text = Path(o["path"]).read_text(encoding="utf-8", errors="replace")
            layout, instance = services.import_instance(location=o["location"], text=text, sku_prefix=o["sku_prefix"],
                                                        replace=o["replace"])
        except (OSError, InstanceError, Location.DoesNotExist) as exc:
            raise CommandError(str(exc)) from None
        self.stdout.write(f"Layout {layout.pk}: {layout.aisles} aisles x {layout.cells_per_block} cells; "
                          f"{len(instance.storage)} stored articles, {len(instance.orders)} orders.")
        if o["route"]:
            for k, order in enumerate(instance.orders):
                route = solve(instance.grid, instance.slots_for(order))
                self.stdout.write(f"order {k}: {route.length:.2f} ({route.method})")
