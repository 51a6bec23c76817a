"""TaxJar-compatible provider: ``POST /v2/taxes`` for orders, ``GET /v2/rates/:zip`` for a ZIP's rates."""

from __future__ import annotations

from datetime import date
from decimal import Decimal

from tax_app.models import TaxCode
from tax_app.providers.base import JurisdictionRate, ProviderAnswer, ProviderUnavailable, TaxRequest
from tax_app.providers.http import HttpProvider, as_decimal

# (our kind, TaxJar's taxable-amount field, TaxJar's rate field)
LEVELS = [
    ("country", "country_taxable_amount", "country_tax_rate"),
    ("state", "state_taxable_amount", "state_sales_tax_rate"),
    ("county", "county_taxable_amount", "county_tax_rate"),
    ("city", "city_taxable_amount", "city_tax_rate"),
    ("special", "special_district_taxable_amount", "special_tax_rate"),
]


class TaxJarProvider(HttpProvider):
    def headers(self) -> dict[str, str]:
        return {"Authorization": f"Bearer {self.api_key()}"}

    def payload(self, *, request: TaxRequest, tax_codes: dict[str, TaxCode]) -> dict:
        to, frm = request.ship_to, request.ship_from
        body: dict = {
            "to_country": to.country, "to_zip": to.zip, "to_state": to.state, "to_city": to.city, "to_street": to.street,
            "shipping": request.shipping,
            "amount": sum((line.quantity * line.unit_price - line.discount for line in request.lines), Decimal("0")),
            "line_items": [
                {"id": line.id, "quantity": line.quantity, "unit_price": line.unit_price, "discount": line.discount,
                 "product_tax_code": tax_codes[line.id].code}
                for line in request.lines
            ],
        }
        if frm is not None:
            body.update({"from_country": frm.country, "from_zip": frm.zip, "from_state": frm.state,
                         "from_city": frm.city, "from_street": frm.street})
        return body

    def quote(self, *, request: TaxRequest, on_date: date, tax_codes: dict[str, TaxCode]) -> ProviderAnswer:
        data = self.call("POST", "/v2/taxes", self.payload(request=request, tax_codes=tax_codes))
        try:
            tax = data["tax"]
            names = tax.get("jurisdictions") or {}
            breakdown = tax.get("breakdown") or {}
            answer = ProviderAnswer(provider=self.name, tax_codes={k: v.code for k, v in tax_codes.items()})
            by_id = {str(item["id"]): item for item in breakdown.get("line_items") or []}
            for line in request.lines:
                answer.lines[line.id] = self._levels(by_id.get(line.id, {}), names, request.ship_to.country)
            if request.shipping:
                answer.shipping = self._levels(breakdown.get("shipping") or {}, names, request.ship_to.country)
        except (KeyError, TypeError, AttributeError) as exc:
            raise ProviderUnavailable(f"{self.name}: unexpected response shape") from exc
        return answer

    @staticmethod
    def _levels(item: dict, names: dict, country: str) -> list[JurisdictionRate]:
        state = str(names.get("state") or "")
        out = []
        for kind, amount_field, rate_field in LEVELS:
            rate = as_decimal(item.get(rate_field))
            if not rate:
                continue
            name = str(names.get(kind) or (country if kind == "country" else state))
            code = f"{country}-{state}" if kind == "state" else f"{country}-{state}:{name}:{kind}"
            if kind == "country":
                code = f"{country}-VAT"
            out.append(JurisdictionRate(kind=kind, code=code, name=name, rate=rate,
                                        taxable_amount=as_decimal(item.get(amount_field))))
        return out

    def rates_for_zip(self, *, zip5: str, country: str = "US") -> dict[str, Decimal | str]:
        """The ZIP's rates by level (``GET /v2/rates/:zip``), as Decimals."""
        data = self.call("GET", f"/v2/rates/{zip5}?country={country}")
        rate = data["rate"]
        return {k: (as_decimal(v) if k.endswith("_rate") else v) for k, v in rate.items()}
