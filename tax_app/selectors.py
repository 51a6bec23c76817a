"""Reads: which rates, codes and rules apply to an address on a date. No writes here."""

from __future__ import annotations

import time
from collections import defaultdict
from collections.abc import Iterable
from datetime import date
from decimal import Decimal

from django.db.models import Q, QuerySet

from tax_app.models import (
    CustomerExemption,
    Nexus,
    ProductTaxCode,
    ProviderConfig,
    RateEntry,
    RateTable,
    ShippingRule,
    TableStatus,
    TaxCode,
    TaxCodeRule,
)
from tax_app.providers.base import LineItem, UnknownTaxCode

GENERAL_TAX_CODE = "00000"

EU_MEMBERS = frozenset(
    "AT BE BG HR CY CZ DK EE FI FR DE GR HU IE IT LV LT LU MT NL PL PT RO SK SI ES SE".split()
)


def in_force(on_date: date, prefix: str = "") -> Q:
    """Tables whose effective window contains ``on_date`` (``effective_to`` is exclusive)."""
    return (
        Q(**{f"{prefix}effective_from__lte": on_date})
        & (Q(**{f"{prefix}effective_to__isnull": True}) | Q(**{f"{prefix}effective_to__gt": on_date}))
        & ~Q(**{f"{prefix}status": TableStatus.REPLACED})
    )


def table_on(*, scope: str, on_date: date) -> RateTable | None:
    return RateTable.objects.filter(in_force(on_date), scope=scope).order_by("-effective_from", "-imported_at").first()


def table_history(*, scope: str) -> QuerySet[RateTable]:
    return RateTable.objects.filter(scope=scope).order_by("-effective_from", "-imported_at")


def us_rate_entry(*, state: str, zip5: str, on_date: date, plus4: str = "",
                  table: RateTable | None = None) -> RateEntry | None:
    """The ZIP's row in the table in force; with several ZIP+4 ranges, the one holding ``plus4``, else the widest."""
    table = table or table_on(scope=f"US-{state}", on_date=on_date)
    if table is None:
        return None
    rows = list(RateEntry.objects.filter(table_id=table.pk, zip=zip5)[:500])
    if len(rows) <= 1:
        return rows[0] if rows else None
    if plus4:
        for row in rows:
            if not row.plus4_low or row.plus4_low <= plus4 <= row.plus4_high:
                return row

    def width(row: RateEntry) -> int:
        return int(row.plus4_high or 9999) - int(row.plus4_low or 0)

    return max(rows, key=lambda row: (width(row), row.jurisdiction_code))


def vat_entries(*, country: str, on_date: date, table: RateTable | None = None) -> dict[str, RateEntry]:
    table = table or table_on(scope="EU-VAT", on_date=on_date)
    if table is None:
        return {}
    return {e.category: e for e in RateEntry.objects.filter(table_id=table.pk, country=country)}


def resolve_tax_codes(lines: Iterable[LineItem]) -> dict[str, TaxCode]:
    """Line id -> TaxCode: an explicit ``tax_code`` wins, then the SKU's mapping, then general merchandise."""
    lines = list(lines)
    explicit = {line.tax_code for line in lines if line.tax_code}
    skus = {line.sku for line in lines if line.sku and not line.tax_code}
    by_sku = {p.sku: p.tax_code for p in ProductTaxCode.objects.filter(sku__in=skus).select_related("tax_code")}
    codes = {c.code: c for c in TaxCode.objects.filter(code__in=explicit | {GENERAL_TAX_CODE})}
    general = codes.get(GENERAL_TAX_CODE) or TaxCode(code=GENERAL_TAX_CODE, name="General merchandise")
    resolved: dict[str, TaxCode] = {}
    for line in lines:
        if line.tax_code:
            if line.tax_code not in codes:
                raise UnknownTaxCode(f"Unknown tax code {line.tax_code!r}.", line=line.id, tax_code=line.tax_code)
            resolved[line.id] = codes[line.tax_code]
        else:
            resolved[line.id] = by_sku.get(line.sku, general)
    return resolved


def code_rules(*, tax_codes: Iterable[TaxCode], country: str, state: str) -> list[TaxCodeRule]:
    ids = [c.pk for c in tax_codes if c.pk]
    if not ids:
        return []
    return list(TaxCodeRule.objects.filter(tax_code_id__in=ids, country=country, state__in=[state, ""]))


def taxable_in(*, tax_code: TaxCode, rules: list[TaxCodeRule], state: str, kind: str, unit_price: Decimal) -> bool:
    """The most specific rule wins: (state, kind) > (state) > (country, kind) > (country) > the code's default."""
    best: tuple[int, TaxCodeRule] | None = None
    for rule in rules:
        if rule.tax_code_id != tax_code.pk or rule.state not in (state, "") or rule.kind not in (kind, ""):
            continue
        if rule.below_unit_price is not None and unit_price >= rule.below_unit_price:
            continue
        score = (2 if rule.state else 0) + (1 if rule.kind else 0)
        if best is None or score > best[0]:
            best = (score, rule)
    return best[1].taxable if best else tax_code.taxable_by_default


def shipping_taxable(*, country: str, state: str, default: bool) -> bool:
    rules = {r.state: r.taxable for r in ShippingRule.objects.filter(country=country, state__in=[state, ""])}
    if state in rules:
        return rules[state]
    return rules.get("", default)


def has_nexus(*, country: str, state: str, on_date: date) -> bool:
    countries = [country, "EU"] if country in EU_MEMBERS else [country]
    return (
        Nexus.objects.filter(country__in=countries, state__in=[state, ""], since__lte=on_date)
        .filter(Q(until__isnull=True) | Q(until__gt=on_date))
        .exists()
    )


def valid_exemption(*, customer_id: str, country: str, state: str, on_date: date) -> CustomerExemption | None:
    if not customer_id:
        return None
    return (
        CustomerExemption.objects.filter(customer_id=customer_id, country=country, state__in=[state, ""],
                                         valid_from__lte=on_date)
        .filter(Q(valid_to__isnull=True) | Q(valid_to__gt=on_date))
        .first()
    )


def primary_provider() -> ProviderConfig | None:
    return ProviderConfig.objects.filter(is_active=True).order_by("priority", "name").first()


# --- per-version snapshot of the small tables ----------------------------------------------------

SNAPSHOT_MAX_AGE_SECONDS = 60.0


class RulesSnapshot:
    """Tax codes, taxability and shipping rules, nexus and the table index, read once per rules version.

    Every save or delete of these models bumps the version (``signals``), so a snapshot is never used after a
    change made through the ORM's ``save``/``delete``; the age limit bounds staleness after bulk ``update()``s.
    Only the large ``RateEntry`` table and per-SKU codes are queried per calculation.
    """

    def __init__(self, version: int):
        self.version = version
        self.loaded_at = time.monotonic()
        self.tax_codes = {c.code: c for c in TaxCode.objects.all()}
        self.rules: dict[tuple[int, str], list[TaxCodeRule]] = defaultdict(list)
        for rule in TaxCodeRule.objects.all():
            self.rules[(rule.tax_code_id, rule.country)].append(rule)
        self.shipping = {(r.country, r.state): r.taxable for r in ShippingRule.objects.all()}
        self.nexus = list(Nexus.objects.all())
        self.tables: dict[str, list[RateTable]] = defaultdict(list)
        for table in RateTable.objects.exclude(status=TableStatus.REPLACED).order_by("-effective_from", "-imported_at"):
            self.tables[table.scope].append(table)

    def fresh(self) -> bool:
        return time.monotonic() - self.loaded_at < SNAPSHOT_MAX_AGE_SECONDS

    def table_on(self, *, scope: str, on_date: date) -> RateTable | None:
        for table in self.tables.get(scope, ()):
            if table.effective_from <= on_date and (table.effective_to is None or table.effective_to > on_date):
                return table
        return None

    def resolve_tax_codes(self, lines: Iterable[LineItem]) -> dict[str, TaxCode]:
        lines = list(lines)
        skus = {line.sku for line in lines if line.sku and not line.tax_code}
        by_sku = {}
        if skus:
            by_sku = {sku: self.tax_codes.get(code) for sku, code in
                      ProductTaxCode.objects.filter(sku__in=skus).values_list("sku", "tax_code__code")}
        general = self.tax_codes.get(GENERAL_TAX_CODE) or TaxCode(code=GENERAL_TAX_CODE, name="General merchandise")
        resolved: dict[str, TaxCode] = {}
        for line in lines:
            if line.tax_code:
                if line.tax_code not in self.tax_codes:
                    raise UnknownTaxCode(f"Unknown tax code {line.tax_code!r}.", line=line.id, tax_code=line.tax_code)
                resolved[line.id] = self.tax_codes[line.tax_code]
            else:
                resolved[line.id] = by_sku.get(line.sku) or general
        return resolved

    def code_rules(self, *, tax_codes: Iterable[TaxCode], country: str, state: str) -> list[TaxCodeRule]:
        return [rule for code in {c.pk for c in tax_codes if c.pk} for rule in self.rules.get((code, country), ())
                if rule.state in (state, "")]

    def shipping_taxable(self, *, country: str, state: str, default: bool) -> bool:
        if (country, state) in self.shipping:
            return self.shipping[(country, state)]
        return self.shipping.get((country, ""), default)

    def has_nexus(self, *, country: str, state: str, on_date: date) -> bool:
        countries = (country, "EU") if country in EU_MEMBERS else (country,)
        return any(n.country in countries and n.state in (state, "") and n.since <= on_date
                   and (n.until is None or n.until > on_date) for n in self.nexus)


_snapshots: dict[str, RulesSnapshot] = {}


def snapshot(*, version: int, namespace: str = "") -> RulesSnapshot:
    """The snapshot for ``version`` (re-read when the version moves or it ages out; always re-read if unknown)."""
    current = _snapshots.get(namespace)
    if version < 0 or current is None or current.version != version or not current.fresh():
        current = RulesSnapshot(version)
        if version >= 0:
            _snapshots[namespace] = current
    return current
