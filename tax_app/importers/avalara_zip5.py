"""Avalara's free per-state ZIP5 rate tables (``TAXRATES_ZIP5_<ST><YYYYMM>.csv``).

Header: ``State,ZipCode,TaxRegionName,StateRate,EstimatedCombinedRate,EstimatedCountyRate,EstimatedCityRate,
EstimatedSpecialRate,RiskLevel``. Rates are fractions (0.065). ZIPs keep their leading zeros; a ZIP that a
spreadsheet stripped ("501") is padded back to five digits. The file carries no effective date: it comes
from the file name (first of the month) or the caller.
"""

from __future__ import annotations

import csv
import io
from collections import defaultdict
from datetime import date
from decimal import Decimal

from tax_app.importers.common import (
    MAX_REPORTED_ERRORS,
    ImportFailed,
    ParsedTable,
    checksum,
    decode,
    effective_from_name,
    parse_rate,
)

HEADER = ["State", "ZipCode", "TaxRegionName", "StateRate", "EstimatedCombinedRate", "EstimatedCountyRate",
          "EstimatedCityRate", "EstimatedSpecialRate", "RiskLevel"]
# Avalara rounds the combined estimate; components may differ from it by this much without being an error.
COMBINED_TOLERANCE = "0.00002"


def parse(content: bytes | str, *, name: str, effective_from: date | None = None) -> list[ParsedTable]:
    text = decode(content)
    effective_from = effective_from or effective_from_name(name)
    if effective_from is None:
        raise ImportFailed(f"{name}: no effective date in the file name; pass effective_from")
    rows = csv.reader(io.StringIO(text))
    if [h.strip() for h in next(rows, [])] != HEADER:
        raise ImportFailed(f"{name}: not an Avalara ZIP5 table")
    by_state: dict[str, ParsedTable] = {}
    seen: dict[str, set[str]] = defaultdict(set)
    errors: list[str] = []
    digest = checksum(content)
    tolerance = Decimal(COMBINED_TOLERANCE)
    for number, raw in enumerate(rows, start=2):
        if not raw:
            continue
        where = f"{name} line {number}"
        try:
            if len(raw) != len(HEADER):
                raise ValueError(f"{where}: {len(raw)} fields, expected {len(HEADER)}")
            state_raw, zip_raw, region_raw, state_rate, combined_raw, county_raw, city_raw, special_raw, _risk = raw
            state = state_raw.strip().upper()
            zip5 = zip_raw.strip()
            if len(state) != 2 or not state.isalpha():
                raise ValueError(f"{where}: bad state {state_raw!r}")
            if not zip5.isdigit() or len(zip5) > 5:
                raise ValueError(f"{where}: bad ZIP {zip_raw!r}")
            zip5 = zip5.zfill(5)
            if zip5 in seen[state]:
                raise ValueError(f"{where}: ZIP {zip5} listed twice")
            seen[state].add(zip5)
            region = " ".join(region_raw.split()).upper() or zip5
            rates = {
                "state_rate": parse_rate(state_rate, where=where),
                "county_rate": parse_rate(county_raw, where=where),
                "city_rate": parse_rate(city_raw, where=where),
                "special_rate": parse_rate(special_raw, where=where),
            }
            combined = parse_rate(combined_raw, where=where)
            if abs(sum(rates.values()) - combined) > tolerance:
                raise ValueError(f"{where}: components add up to {sum(rates.values())}, combined says {combined}")
        except ValueError as exc:
            errors.append(str(exc))
            if len(errors) >= MAX_REPORTED_ERRORS:
                break
            continue
        table = by_state.get(state)
        if table is None:
            table = by_state[state] = ParsedTable(source="avalara_zip5", scope=f"US-{state}", name=name,
                                                  checksum=digest, effective_from=effective_from)
            table.jurisdictions[f"US-{state}"] = ("state", state)
        table.rows.append({"country": "US", "state": state, "zip": zip5, "jurisdiction_code": region,
                           "region_name": region, **rates})
        for kind in ("county", "city", "special"):
            if rates[f"{kind}_rate"]:
                table.jurisdictions[f"US-{state}:{region}:{kind}"] = (kind, f"{region} {kind}")
    if errors:
        raise ImportFailed(f"{name}: {len(errors)} bad row(s), nothing imported", errors)
    if not by_state:
        raise ImportFailed(f"{name}: no rows")
    return list(by_state.values())
