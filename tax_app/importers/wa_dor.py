"""Washington DOR's effective-dated ZIP+4 rate file ("Zip+4 short").

Header: ``ZIP,PLUS4_LOW,PLUS4_HIGH,CODE,STATE,LOCAL,TOT_RATE,EFF_START,EFF_END``. ``CODE`` is DOR's location
code; ``LOCAL`` is the whole local rate (city or county, plus transit), which DOR does not split, so it is
reported as one "city"-level jurisdiction named after the location code. One file may hold several
quarters: rows are grouped by ``EFF_START`` into one table per effective date. ``EFF_END`` is the last day
in force (inclusive), stored as an exclusive end.
"""

from __future__ import annotations

from collections import defaultdict
from datetime import date
from decimal import Decimal

from tax_app.importers.common import (
    MAX_REPORTED_ERRORS,
    ImportFailed,
    ParsedTable,
    checksum,
    day_after,
    decode,
    parse_date,
    parse_rate,
    reader,
)

HEADER = ["ZIP", "PLUS4_LOW", "PLUS4_HIGH", "CODE", "STATE", "LOCAL", "TOT_RATE", "EFF_START", "EFF_END"]
STATE = "WA"


def parse(content: bytes | str, *, name: str) -> list[ParsedTable]:
    text = decode(content)
    rows = reader(text)
    if [h.strip() for h in rows.fieldnames or []] != HEADER:
        raise ImportFailed(f"{name}: not a WA DOR ZIP+4 table (header {rows.fieldnames!r})")
    digest = checksum(content)
    groups: dict[tuple[date, date | None], ParsedTable] = {}
    seen: dict[date, set[tuple[str, str, str]]] = defaultdict(set)
    errors: list[str] = []
    for number, raw in enumerate(rows, start=2):
        where = f"{name} line {number}"
        try:
            zip5 = (raw["ZIP"] or "").strip()
            if not zip5.isdigit() or len(zip5) > 5:
                raise ValueError(f"{where}: bad ZIP {raw['ZIP']!r}")
            zip5 = zip5.zfill(5)
            low, high = (raw["PLUS4_LOW"] or "").strip(), (raw["PLUS4_HIGH"] or "").strip()
            if (low or high) and not (low.isdigit() and high.isdigit() and low.zfill(4) <= high.zfill(4)):
                raise ValueError(f"{where}: bad ZIP+4 range {low!r}-{high!r}")
            code = (raw["CODE"] or "").strip()
            if not code:
                raise ValueError(f"{where}: missing location code")
            state_rate = parse_rate(raw["STATE"], where=where)
            local_rate = parse_rate(raw["LOCAL"], where=where)
            total = parse_rate(raw["TOT_RATE"], where=where)
            if state_rate + local_rate != total:
                raise ValueError(f"{where}: STATE + LOCAL = {state_rate + local_rate}, TOT_RATE says {total}")
            start = parse_date(raw["EFF_START"], where=where)
            end = parse_date(raw["EFF_END"], where=where) if (raw["EFF_END"] or "").strip() else None
            if end is not None and end < start:
                raise ValueError(f"{where}: EFF_END before EFF_START")
            key = (zip5, low.zfill(4) if low else "", high.zfill(4) if high else "")
            if key in seen[start]:
                raise ValueError(f"{where}: ZIP {zip5} {low}-{high} listed twice for {start}")
            seen[start].add(key)
        except (ValueError, KeyError, AttributeError) as exc:
            errors.append(str(exc))
            if len(errors) >= MAX_REPORTED_ERRORS:
                break
            continue
        expires = day_after(end) if end else None
        table = groups.get((start, expires))
        if table is None:
            table = groups[(start, expires)] = ParsedTable(source="wa_dor", scope=f"US-{STATE}", name=name,
                                                           checksum=digest, effective_from=start, expires_on=expires)
            table.jurisdictions[f"US-{STATE}"] = ("state", STATE)
        table.rows.append({"country": "US", "state": STATE, "zip": zip5, "plus4_low": key[1], "plus4_high": key[2],
                           "jurisdiction_code": code, "region_name": f"location {code}", "city_name": f"WA location {code}",
                           "state_rate": state_rate, "city_rate": local_rate, "county_rate": Decimal(0),
                           "special_rate": Decimal(0)})
        if local_rate:
            table.jurisdictions[f"US-{STATE}:{code}:city"] = ("city", f"WA location {code}")
    if errors:
        raise ImportFailed(f"{name}: {len(errors)} bad row(s), nothing imported", errors)
    if not groups:
        raise ImportFailed(f"{name}: no rows")
    starts = [start for start, _ in groups]
    if len(starts) != len(set(starts)):
        raise ImportFailed(f"{name}: rows with the same EFF_START disagree on EFF_END")
    return list(groups.values())
