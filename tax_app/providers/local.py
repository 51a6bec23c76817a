"""The local provider: rate tables in PostgreSQL plus the taxability rules. Also the fallback for remote ones."""

from __future__ import annotations

from datetime import date
from decimal import Decimal

from tax_app import selectors
from tax_app.models import JurisdictionKind, RateEntry, TaxCode, VatCategory
from tax_app.providers.base import JurisdictionRate, NoRates, ProviderAnswer, TaxRequest

ZERO = Decimal("0")
# Which VAT table rows a category may use, best first; a country without a reduced rate charges standard.
VAT_FALLBACKS = {
    VatCategory.STANDARD: ["standard"],
    VatCategory.REDUCED: ["reduced", "standard"],
    VatCategory.REDUCED_LOW: ["reduced_low", "reduced", "standard"],
    VatCategory.SUPER_REDUCED: ["super_reduced", "reduced_low", "reduced", "standard"],
}


def us_jurisdictions(entry: RateEntry) -> list[tuple[str, str, str, Decimal]]:
    """(kind, code, name, rate) for each level with a non-zero rate."""
    st, jc, region = entry.state, entry.jurisdiction_code, entry.region_name or entry.jurisdiction_code
    levels = [
        (JurisdictionKind.STATE, f"US-{st}", st, entry.state_rate),
        (JurisdictionKind.COUNTY, f"US-{st}:{jc}:county", entry.county_name or f"{region} county", entry.county_rate),
        (JurisdictionKind.CITY, f"US-{st}:{jc}:city", entry.city_name or f"{region} city", entry.city_rate),
        (JurisdictionKind.SPECIAL, f"US-{st}:{jc}:special", f"{region} special districts", entry.special_rate),
    ]
    return [(str(kind), code, name, rate) for kind, code, name, rate in levels if rate]


class LocalProvider:
    name = "local"
    remote = False

    def __init__(self, snapshot: selectors.RulesSnapshot | None = None):
        self.snapshot = snapshot or selectors.snapshot(version=-1)

    def quote(self, *, request: TaxRequest, on_date: date, tax_codes: dict[str, TaxCode]) -> ProviderAnswer:
        to = request.ship_to
        if to.country == "US":
            return self._us(request=request, on_date=on_date, tax_codes=tax_codes)
        if to.country in selectors.EU_MEMBERS:
            return self._vat(request=request, on_date=on_date, tax_codes=tax_codes)
        raise NoRates(f"No local rate tables for country {to.country!r}.", country=to.country)

    def _us(self, *, request: TaxRequest, on_date: date, tax_codes: dict[str, TaxCode]) -> ProviderAnswer:
        to = request.ship_to
        table = self.snapshot.table_on(scope=f"US-{to.state}", on_date=on_date)
        entry = table and selectors.us_rate_entry(state=to.state, zip5=to.zip5, plus4=to.plus4, on_date=on_date, table=table)
        if entry is None:
            raise NoRates(f"No rate in force for US-{to.state} {to.zip5} on {on_date}.", state=to.state, zip=to.zip5)
        levels = us_jurisdictions(entry)
        rules = self.snapshot.code_rules(tax_codes=tax_codes.values(), country="US", state=to.state)
        answer = ProviderAnswer(provider=self.name, tax_codes={k: v.code for k, v in tax_codes.items()})
        for line in request.lines:
            code = tax_codes[line.id]
            answer.lines[line.id] = [
                JurisdictionRate(kind=kind, code=jcode, name=name, rate=rate,
                                 taxable_amount=None if selectors.taxable_in(
                                     tax_code=code, rules=rules, state=to.state, kind=kind, unit_price=line.unit_price)
                                 else ZERO)
                for kind, jcode, name, rate in levels
            ]
        if request.shipping:
            taxable = self.snapshot.shipping_taxable(country="US", state=to.state, default=False)
            answer.shipping = [JurisdictionRate(kind=kind, code=jcode, name=name, rate=rate,
                                                taxable_amount=None if taxable else ZERO)
                               for kind, jcode, name, rate in levels]
        return answer

    def _vat(self, *, request: TaxRequest, on_date: date, tax_codes: dict[str, TaxCode]) -> ProviderAnswer:
        country = request.ship_to.country
        table = self.snapshot.table_on(scope="EU-VAT", on_date=on_date)
        entries = selectors.vat_entries(country=country, on_date=on_date, table=table) if table else {}
        if "standard" not in entries:
            raise NoRates(f"No VAT rates in force for {country} on {on_date}.", country=country)
        rules = self.snapshot.code_rules(tax_codes=tax_codes.values(), country=country, state="")
        answer = ProviderAnswer(provider=self.name, tax_codes={k: v.code for k, v in tax_codes.items()})

        def vat(category: str, taxable: bool) -> JurisdictionRate:
            if category in (VatCategory.ZERO, VatCategory.EXEMPT):
                return JurisdictionRate(kind=JurisdictionKind.COUNTRY.value, code=f"{country}-VAT",
                                        name=f"{country} VAT ({category})", rate=ZERO,
                                        taxable_amount=ZERO if category == VatCategory.EXEMPT else None)
            row = next(entries[c] for c in VAT_FALLBACKS[category] if c in entries)
            return JurisdictionRate(kind=JurisdictionKind.COUNTRY.value, code=f"{country}-VAT",
                                    name=f"{country} VAT ({row.category})", rate=row.country_rate,
                                    taxable_amount=None if taxable else ZERO)

        for line in request.lines:
            code = tax_codes[line.id]
            taxable = selectors.taxable_in(tax_code=code, rules=rules, state="", kind=JurisdictionKind.COUNTRY,
                                           unit_price=line.unit_price)
            answer.lines[line.id] = [vat(code.vat_category, taxable)]
        if request.shipping:
            # Delivery follows the standard rate unless a rule says otherwise.
            taxable = self.snapshot.shipping_taxable(country=country, state="", default=True)
            answer.shipping = [vat(VatCategory.STANDARD, taxable)]
        return answer
