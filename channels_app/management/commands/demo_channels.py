from django.core.management.base import BaseCommand

from channels_app.demo import create_demo_channels
from hub.schedules import sync_schedules


class Command(BaseCommand):
    help = "Create the demo sandbox channels (Shopify, WooCommerce, a POS) with listings for the demo SKUs."

    def handle(self, *args, **options):
        channels = create_demo_channels()
        sync_schedules()
        for channel in channels:
            self.stdout.write(f"  {channel.slug:14} {channel.kind:12} {channel.api_base_url}")
        self.stdout.write(self.style.SUCCESS(f"{len(channels)} demo channels ready (secrets stored encrypted)."))
