"""EU VAT standard and reduced rates from the maintained ``eu-vat-rates-data`` package (European Commission
TEDB, checked daily upstream, MIT). Read as JSON with ``parse_float=Decimal`` so no rate passes through float.

Categories stored per member state: ``standard``, ``reduced`` (the highest reduced rate, the usual
"intermediate" rate), ``reduced_low`` (the lowest reduced rate of at least 5%, below which the package also
lists regional/special rates) and ``super_reduced``.
"""

from __future__ import annotations

import json
from datetime import date
from decimal import Decimal
from importlib.resources import files

from tax_app.importers.common import ImportFailed, ParsedTable, checksum
from tax_app.money import percent_to_rate

PACKAGE = "eu_vat_rates_data"
FIVE = Decimal("5")


def load_package() -> tuple[bytes, dict]:
    try:
        raw = files(PACKAGE).joinpath("eu_vat_rates_data.json").read_bytes()
    except (ModuleNotFoundError, FileNotFoundError) as exc:
        raise ImportFailed("eu-vat-rates-data is not installed") from exc
    return raw, json.loads(raw, parse_float=Decimal)


def parse(*, effective_from: date | None = None, content: bytes | None = None) -> ParsedTable:
    raw, data = (content, json.loads(content, parse_float=Decimal)) if content is not None else load_package()
    version = date.fromisoformat(data["version"])
    table = ParsedTable(source="eu_vat", scope="EU-VAT", name=f"{PACKAGE} {data['version']}", checksum=checksum(raw),
                        effective_from=effective_from or version)
    for country, info in sorted(data["rates"].items()):
        if not info.get("eu_member"):
            continue
        reduced = sorted(Decimal(str(r)) for r in info.get("reduced") or [])
        categories = {"standard": Decimal(str(info["standard"]))}
        if reduced:
            categories["reduced"] = reduced[-1]
            categories["reduced_low"] = next((r for r in reduced if r >= FIVE), reduced[-1])
        if info.get("super_reduced") is not None:
            categories["super_reduced"] = Decimal(str(info["super_reduced"]))
        for category, percent in categories.items():
            table.rows.append({"country": country, "state": "", "zip": "", "category": category,
                               "jurisdiction_code": f"{country}-VAT", "region_name": info["country"],
                               "country_rate": percent_to_rate(percent)})
        table.jurisdictions[f"{country}-VAT"] = ("country", f"{info['country']} VAT")
    if not table.rows:
        raise ImportFailed("eu-vat-rates-data holds no EU member rates")
    return table
