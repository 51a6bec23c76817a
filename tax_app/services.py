"""Writes: importing rate tables, activating them on their effective date, the scheduled refresh.

Tables are never edited or deleted after import. Each scope's tables form a chain of effective windows
(``effective_to`` of one is the ``effective_from`` of the next, or the file's own expiry if earlier), which
``_rechain`` recomputes after every import, so importing out of order still gives the right window.
"""

from __future__ import annotations

import logging
import os
from dataclasses import dataclass, field
from datetime import date, datetime
from decimal import Decimal
from pathlib import Path

import requests
from django.db import connection, transaction
from django.db.models import Q

from tax_app import resilience, selectors
from tax_app.importers import ImportFailed, ParsedTable, detect_and_parse
from tax_app.importers import eu_vat as eu_vat_importer
from tax_app.importers.common import checksum
from tax_app.models import Jurisdiction, RateAlert, RateEntry, RateTable, TableStatus

log = logging.getLogger(__name__)
BATCH = 5000


def _bump_after_commit() -> None:
    resilience.bump_rules_version()
    transaction.on_commit(resilience.bump_rules_version)


def _lock_scope(scope: str) -> None:
    # Two imports into one scope must not interleave their chain updates.
    if connection.vendor == "postgresql":
        with connection.cursor() as cursor:
            cursor.execute("SELECT pg_advisory_xact_lock(hashtext(%s))", [f"tax_app.scope:{scope}"])


def store_table(*, parsed: ParsedTable, now: datetime) -> tuple[RateTable, bool]:
    """Store one parsed table; returns (table, created). The same content for the same scope and date is a no-op;
    different content for a date already imported replaces it (the old one stays, marked ``replaced``)."""
    with transaction.atomic():
        _lock_scope(parsed.scope)
        same_date = RateTable.objects.filter(scope=parsed.scope, effective_from=parsed.effective_from).exclude(
            status=TableStatus.REPLACED)
        existing = same_date.filter(checksum=parsed.checksum).first()
        if existing is not None:
            return existing, False
        for old in same_date:
            old.status, old.effective_to = TableStatus.REPLACED, old.effective_from
            old.save(update_fields=["status", "effective_to"])
        table = RateTable.objects.create(
            source=parsed.source, scope=parsed.scope, name=parsed.name[:255], checksum=parsed.checksum,
            effective_from=parsed.effective_from, expires_on=parsed.expires_on, status=TableStatus.SCHEDULED,
            row_count=len(parsed.rows), imported_at=now, jurisdiction_codes=sorted(parsed.jurisdictions),
        )
        _insert_entries(table=table, rows=parsed.rows)
        _upsert_jurisdictions(table=table, parsed=parsed)
        _rechain(scope=parsed.scope)
        _bump_after_commit()
    log.info("tax rates: imported %s rows for %s effective %s from %s", len(parsed.rows), parsed.scope,
             parsed.effective_from, parsed.name)
    return table, True


ENTRY_COLUMNS = ["country", "state", "zip", "plus4_low", "plus4_high", "category", "jurisdiction_code", "region_name",
                 "county_name", "city_name", "country_rate", "state_rate", "county_rate", "city_rate", "special_rate"]
ENTRY_DEFAULTS = {"category": "standard", "country_rate": Decimal(0), "state_rate": Decimal(0),
                  "county_rate": Decimal(0), "city_rate": Decimal(0), "special_rate": Decimal(0)}


def _copy(table_name: str, columns: list[str], rows) -> None:
    """PostgreSQL COPY: tens of thousands of rows a second, where ORM inserts manage a few thousand."""
    with connection.cursor() as cursor:
        quoted = ", ".join(connection.ops.quote_name(c) for c in columns)
        with cursor.cursor.copy(f"COPY {connection.ops.quote_name(table_name)} ({quoted}) FROM STDIN") as copy:
            for row in rows:
                copy.write_row(row)


def _insert_entries(*, table: RateTable, rows: list[dict]) -> None:
    if connection.vendor == "postgresql":
        columns = ["table_id", *ENTRY_COLUMNS]
        _copy(RateEntry._meta.db_table, columns,
              ((table.pk, *(row.get(c, ENTRY_DEFAULTS.get(c, "")) for c in ENTRY_COLUMNS)) for row in rows))
        return
    for start in range(0, len(rows), BATCH):
        RateEntry.objects.bulk_create([RateEntry(table=table, **row) for row in rows[start:start + BATCH]])


def _upsert_jurisdictions(*, table: RateTable, parsed: ParsedTable) -> None:
    # Codes carry their scope and the scope is locked, so no other import can insert the same code meanwhile.
    known = set(Jurisdiction.objects.filter(scope=parsed.scope).values_list("code", flat=True))
    new = [(code, kind, name[:128]) for code, (kind, name) in parsed.jurisdictions.items() if code not in known]
    if connection.vendor == "postgresql":
        _copy(Jurisdiction._meta.db_table, ["code", "scope", "kind", "name", "first_seen_id", "last_seen_id"],
              ((code, parsed.scope, kind, name, table.pk, table.pk) for code, kind, name in new))
    else:
        Jurisdiction.objects.bulk_create([Jurisdiction(code=code, scope=parsed.scope, kind=kind, name=name,
                                                       first_seen=table, last_seen=table) for code, kind, name in new])
    seen_again = [code for code in parsed.jurisdictions if code in known]
    if seen_again:
        Jurisdiction.objects.filter(code__in=seen_again).update(last_seen=table, vanished_on=None)


def _rechain(*, scope: str) -> None:
    tables = list(RateTable.objects.filter(scope=scope).exclude(status=TableStatus.REPLACED)
                  .order_by("effective_from", "imported_at"))
    for current, following in zip(tables, [*tables[1:], None], strict=True):
        ends = [d for d in (following.effective_from if following else None, current.expires_on) if d is not None]
        effective_to = min(ends) if ends else None
        if effective_to is not None and effective_to < current.effective_from:
            effective_to = current.effective_from
        if current.effective_to != effective_to:
            current.effective_to = effective_to
            current.save(update_fields=["effective_to"])


def import_file(*, content: bytes | str, name: str, now: datetime, effective_from: date | None = None) -> list[RateTable]:
    """Import an Avalara ZIP5 or WA DOR file (detected by header) and activate whatever is due ``now``."""
    parsed_tables = detect_and_parse(content, name=name, effective_from=effective_from)
    # One file is all or nothing: a national file must not stay half imported if one state fails.
    with transaction.atomic():
        created = [store_table(parsed=parsed, now=now)[0] for parsed in parsed_tables]
        activate_due(on_date=now.date(), now=now)
    return created


def import_eu_vat(*, now: datetime, effective_from: date | None = None, content: bytes | None = None) -> RateTable:
    table, _ = store_table(parsed=eu_vat_importer.parse(effective_from=effective_from, content=content), now=now)
    activate_due(on_date=now.date(), now=now)
    return table


@dataclass
class Activation:
    table: RateTable
    previous: RateTable | None
    vanished: list[str] = field(default_factory=list)


def activate_due(*, on_date: date, now: datetime) -> list[Activation]:
    """Make each scope's status match ``on_date``: the table in force becomes active (the one before it
    superseded, kept), future ones stay scheduled. Jurisdictions missing from a newly active table are alerted."""
    activations = []
    for scope in RateTable.objects.values_list("scope", flat=True).distinct().order_by("scope"):
        with transaction.atomic():
            _lock_scope(scope)
            activation = _activate_scope(scope=scope, on_date=on_date, now=now)
        if activation is not None:
            activations.append(activation)
    return activations


def _activate_scope(*, scope: str, on_date: date, now: datetime) -> Activation | None:
    current = selectors.table_on(scope=scope, on_date=on_date)
    tables = RateTable.objects.filter(scope=scope).exclude(status=TableStatus.REPLACED)
    tables.filter(effective_from__gt=on_date).exclude(status=TableStatus.SCHEDULED).update(status=TableStatus.SCHEDULED)
    stale = tables.filter(status=TableStatus.ACTIVE)
    if current is not None:
        stale = stale.exclude(pk=current.pk)
    previous = stale.order_by("-effective_from").first()
    stale.update(status=TableStatus.SUPERSEDED)
    tables.filter(Q(effective_to__lte=on_date), status=TableStatus.SCHEDULED).update(status=TableStatus.SUPERSEDED)
    if current is None or current.status == TableStatus.ACTIVE:
        return None
    if previous is None:
        previous = tables.filter(effective_from__lt=current.effective_from).order_by("-effective_from").first()
    current.status, current.activated_at = TableStatus.ACTIVE, now
    current.save(update_fields=["status", "activated_at"])
    activation = Activation(table=current, previous=previous)
    if previous is not None:
        activation.vanished = sorted(set(previous.jurisdiction_codes) - set(current.jurisdiction_codes))
        _alert_vanished(table=current, previous=previous, codes=activation.vanished, on_date=on_date, now=now)
    _bump_after_commit()
    log.info("tax rates: %s table effective %s is now active", scope, current.effective_from)
    return activation


def _alert_vanished(*, table: RateTable, previous: RateTable, codes: list[str], on_date: date, now: datetime) -> None:
    if not codes:
        return
    log.warning("tax rates: %d jurisdiction(s) vanished from %s on %s: %s", len(codes), table.scope, on_date,
                ", ".join(codes[:20]))
    RateAlert.objects.bulk_create([
        RateAlert(table=table, previous_table=previous, jurisdiction_code=code[:96], created_at=now,
                  message=f"{code} was in the {previous.effective_from} table and is missing from the "
                          f"{table.effective_from} table of {table.scope}"[:255])
        for code in codes
    ], ignore_conflicts=True)
    Jurisdiction.objects.filter(code__in=codes, vanished_on__isnull=True).update(vanished_on=on_date)


@dataclass
class RefreshReport:
    imported: list[str] = field(default_factory=list)
    skipped: list[str] = field(default_factory=list)
    errors: list[str] = field(default_factory=list)
    activated: list[str] = field(default_factory=list)
    vanished: int = 0

    def as_dict(self) -> dict:
        return {"imported": self.imported, "skipped": self.skipped, "errors": self.errors,
                "activated": self.activated, "vanished": self.vanished}


def refresh_rates(*, now: datetime, directory: str | Path | None = None, url: str | None = None,
                  include_eu_vat: bool | None = None) -> RefreshReport:
    """Import every new file from ``directory`` (env ``TAX_RATES_DIR``) and ``url`` (env ``TAX_RATES_URL``), the EU
    VAT package data (env ``TAX_IMPORT_EU_VAT``, default on), then activate what is due on ``now``'s date.

    A file already imported (same content) is skipped; a bad file is reported and the others still import."""
    report = RefreshReport()
    directory = directory if directory is not None else os.environ.get("TAX_RATES_DIR") or None
    url = url if url is not None else os.environ.get("TAX_RATES_URL") or None
    if include_eu_vat is None:
        include_eu_vat = os.environ.get("TAX_IMPORT_EU_VAT", "1").lower() in {"1", "true", "yes", "on"}
    sources: list[tuple[str, bytes]] = []
    if directory:
        path = Path(directory)
        if not path.is_dir():
            report.errors.append(f"TAX_RATES_DIR {directory} is not a directory")
        else:
            sources.extend((p.name, p.read_bytes()) for p in sorted(path.glob("*.csv")))
    if url:
        try:
            response = requests.get(url, timeout=(3, 30))
            response.raise_for_status()
            sources.append((url.rstrip("/").rsplit("/", 1)[-1].split("?")[0], response.content))
        except requests.RequestException as exc:
            report.errors.append(f"download failed: {type(exc).__name__}")
    for name, content in sources:
        if RateTable.objects.filter(checksum=checksum(content)).exists():
            report.skipped.append(name)
            continue
        try:
            parsed_tables = detect_and_parse(content, name=name)
            with transaction.atomic():
                for parsed in parsed_tables:
                    store_table(parsed=parsed, now=now)
            report.imported.append(name)
        except ImportFailed as exc:
            log.warning("tax rates: %s", exc)
            report.errors.append(str(exc))
    if include_eu_vat:
        try:
            parsed = eu_vat_importer.parse()
            if RateTable.objects.filter(scope="EU-VAT", checksum=parsed.checksum).exists():
                report.skipped.append(parsed.name)
            else:
                store_table(parsed=parsed, now=now)
                report.imported.append(parsed.name)
        except ImportFailed as exc:
            report.errors.append(str(exc))
    for activation in activate_due(on_date=now.date(), now=now):
        report.activated.append(f"{activation.table.scope}@{activation.table.effective_from}")
        report.vanished += len(activation.vanished)
    return report
