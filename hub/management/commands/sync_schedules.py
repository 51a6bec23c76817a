from django.core.management.base import BaseCommand

from hub.schedules import sync_schedules


class Command(BaseCommand):
    help = "Create or update every beat schedule (global jobs and per-channel jobs). Safe to rerun."

    def handle(self, *args, **options):
        names = sync_schedules()
        self.stdout.write(self.style.SUCCESS(f"{len(names)} schedules in step."))
