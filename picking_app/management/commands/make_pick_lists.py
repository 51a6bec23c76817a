"""Batch the committed orders at a location into routed pick lists."""

from __future__ import annotations

from django.core.management.base import BaseCommand, CommandError

from inventory_app.models import Location
from picking_app import services
from picking_app.batching import METHODS
from picking_app.solvers import SOLVERS


class Command(BaseCommand):
    help = "Create pick lists from committed reservation lines at a location (batched, each routed)."

    def add_arguments(self, parser):
        parser.add_argument("location")
        parser.add_argument("--capacity", type=int, required=True, help="Cart capacity in units.")
        parser.add_argument("--method", choices=METHODS, default="savings")
        parser.add_argument("--policy", choices=SOLVERS, default="optimal")

    def handle(self, *args, **o):
        try:
            result = services.create_pick_lists(location=o["location"], capacity=o["capacity"], method=o["method"],
                                                policy=o["policy"])
        except (ValueError, Location.DoesNotExist) as exc:
            raise CommandError(str(exc)) from None
        for pick_list in result.pick_lists:
            self.stdout.write(f"pick list {pick_list.pk}: {pick_list.units} units, {pick_list.route_length:.1f} m")
        for line_id, reason in result.skipped.items():
            self.stderr.write(f"line {line_id} skipped: {reason}")
