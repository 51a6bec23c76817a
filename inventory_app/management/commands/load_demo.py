"""Demo data: two warehouses and a store, a few SKUs with one bundle, stock and prices. Safe to rerun."""

from __future__ import annotations

from decimal import Decimal

from django.core.management.base import BaseCommand
from django.db import transaction

from inventory_app import stock
from inventory_app.models import BundleComponent, Location, LocationKind, Price, Sku, StockLevel

LOCATIONS = [
    ("wh-east", "East warehouse", LocationKind.WAREHOUSE, 10),
    ("wh-west", "West warehouse", LocationKind.WAREHOUSE, 20),
    ("store-soho", "SoHo store", LocationKind.STORE, 50),
]
SKUS = [
    ("TEE-BLK-M", "Black tee, M", Decimal("24.00"), {"wh-east": 40, "wh-west": 25, "store-soho": 6}),
    ("TEE-WHT-M", "White tee, M", Decimal("24.00"), {"wh-east": 30, "wh-west": 10, "store-soho": 4}),
    ("CAP-NAVY", "Navy cap", Decimal("18.50"), {"wh-east": 15, "store-soho": 3}),
    ("MUG-LOGO", "Logo mug", Decimal("12.00"), {"wh-west": 60}),
    ("HOODIE-GRY-L", "Grey hoodie, L (preorder)", Decimal("59.00"), {}),
]
BUNDLE = ("STARTER-KIT", "Starter kit: tee + cap + mug", Decimal("49.00"),
          [("TEE-BLK-M", 1), ("CAP-NAVY", 1), ("MUG-LOGO", 1)])


class Command(BaseCommand):
    help = "Load demo locations, SKUs (incl. a bundle and a preorder SKU), stock and prices."

    def handle(self, *args, **options):
        with transaction.atomic():
            locations = {}
            for code, name, kind, priority in LOCATIONS:
                locations[code], _ = Location.objects.get_or_create(
                    code=code, defaults={"name": name, "kind": kind, "priority": priority})
            for code, name, price, levels in SKUS:
                sku, created = Sku.objects.get_or_create(code=code, defaults={"name": name})
                Price.objects.get_or_create(sku=sku, channel="", defaults={"amount": price, "currency": "USD"})
                for location_code, quantity in levels.items():
                    if not StockLevel.objects.filter(sku=sku, location=locations[location_code]).exists():
                        stock.receive(sku=sku, location=locations[location_code], quantity=quantity,
                                      reference="demo", source="demo")
            bundle_code, bundle_name, bundle_price, parts = BUNDLE
            bundle, _ = Sku.objects.get_or_create(code=bundle_code, defaults={"name": bundle_name})
            for component, qty in parts:
                BundleComponent.objects.get_or_create(bundle=bundle, component=Sku.objects.get(code=component),
                                                      defaults={"quantity": qty})
            Price.objects.get_or_create(sku=bundle, channel="", defaults={"amount": bundle_price})
        stock.set_stock_policy(sku="HOODIE-GRY-L", policy="preorder", limit=20, location="wh-east")
        self.stdout.write(self.style.SUCCESS(
            f"Demo data ready: {Location.objects.count()} locations, {Sku.objects.count()} SKUs."))
