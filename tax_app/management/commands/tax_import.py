"""Import rate files by hand: ``python manage.py tax_import FILE... [--effective-from YYYY-MM-DD] [--eu-vat]``."""

from __future__ import annotations

import time
from datetime import date
from pathlib import Path

from django.core.management.base import BaseCommand, CommandError
from django.utils import timezone
from tqdm import tqdm

from tax_app import services
from tax_app.importers import ImportFailed


class Command(BaseCommand):
    help = "Import Avalara ZIP5 / WA DOR rate files and/or the EU VAT package data, then activate what is due."

    def add_arguments(self, parser):
        parser.add_argument("files", nargs="*")
        parser.add_argument("--effective-from", type=date.fromisoformat, default=None)
        parser.add_argument("--eu-vat", action="store_true")

    def handle(self, *args, files: list[str], effective_from: date | None, eu_vat: bool, **options):
        if not files and not eu_vat:
            raise CommandError("Nothing to import: name rate files and/or pass --eu-vat.")
        missing = [name for name in files if not Path(name).is_file()]
        if missing:
            raise CommandError(f"No such file: {', '.join(missing)}")
        now, started = timezone.now(), time.monotonic()
        tables, rows = [], 0
        sources = [*files, *(["EU VAT (eu-vat-rates-data)"] if eu_vat else [])]
        with tqdm(total=len(sources), unit="file", disable=not self.stdout.isatty()) as bar:
            for name in sources:
                bar.set_description(Path(name).name[:40])
                try:
                    if name in files:
                        imported = services.import_file(content=Path(name).read_bytes(), name=Path(name).name, now=now,
                                                        effective_from=effective_from)
                    else:
                        imported = [services.import_eu_vat(now=now, effective_from=effective_from)]
                except ImportFailed as exc:
                    raise CommandError(f"{name}: {exc} (nothing from this file was kept)") from exc
                for table in imported:
                    tables.append(table)
                    rows += table.row_count
                    line = f"{table.scope}: {table.row_count:,} rows from {table.effective_from} ({table.status})"
                    self.stdout.write(line) if bar.disable else bar.write(line)
                bar.set_postfix(rows=f"{rows:,}")
                bar.update(1)
        self.stdout.write(self.style.SUCCESS(
            f"Imported {len(sources)} source(s): {len(tables)} table(s), {rows:,} rows in "
            f"{time.monotonic() - started:.1f}s; active now: "
            f"{', '.join(sorted({t.scope for t in tables if t.status == 'active'})) or 'none (all scheduled)'}."))
