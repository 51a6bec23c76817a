"""Import rate files by hand: ``python manage.py tax_import FILE... [--effective-from YYYY-MM-DD] [--eu-vat]``."""

from __future__ import annotations

from datetime import date
from pathlib import Path

from django.core.management.base import BaseCommand, CommandError
from django.utils import timezone

from tax_app import services
from tax_app.importers import ImportFailed


class Command(BaseCommand):
    help = "Import Avalara ZIP5 / WA DOR rate files and/or the EU VAT package data, then activate what is due."

    def add_arguments(self, parser):
        parser.add_argument("files", nargs="*")
        parser.add_argument("--effective-from", type=date.fromisoformat, default=None)
        parser.add_argument("--eu-vat", action="store_true")

    def handle(self, *args, files: list[str], effective_from: date | None, eu_vat: bool, **options):
        now = timezone.now()
        try:
            for name in files:
                for table in services.import_file(content=Path(name).read_bytes(), name=Path(name).name, now=now,
                                                  effective_from=effective_from):
                    self.stdout.write(f"{table.scope}: {table.row_count} rows from {table.effective_from} ({table.status})")
            if eu_vat:
                table = services.import_eu_vat(now=now, effective_from=effective_from)
                self.stdout.write(f"{table.scope}: {table.row_count} rows from {table.effective_from} ({table.status})")
        except ImportFailed as exc:
            raise CommandError(str(exc)) from exc
