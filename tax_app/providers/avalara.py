"""Avalara-compatible provider: ``POST /api/v2/transactions/create`` with a SalesOrder (nothing is committed)."""

from __future__ import annotations

import base64
from datetime import date

from tax_app.models import TaxCode
from tax_app.providers.base import Address, JurisdictionRate, ProviderAnswer, ProviderUnavailable, TaxRequest
from tax_app.providers.http import HttpProvider, as_decimal

JURIS_TYPES = {"CNT": "country", "STA": "state", "CTY": "county", "CIT": "city", "STJ": "special"}
SHIPPING_LINE = "__shipping__"
FREIGHT_TAX_CODE = "FR020100"


def _address(address: Address) -> dict:
    return {"line1": address.street, "city": address.city, "region": address.state, "country": address.country,
            "postalCode": address.zip}


class AvalaraProvider(HttpProvider):
    def headers(self) -> dict[str, str]:
        token = base64.b64encode(f"{self.config.account_id}:{self.api_key()}".encode()).decode()
        return {"Authorization": f"Basic {token}"}

    def payload(self, *, request: TaxRequest, on_date: date, tax_codes: dict[str, TaxCode]) -> dict:
        addresses = {"shipTo": _address(request.ship_to)}
        if request.ship_from is not None:
            addresses["shipFrom"] = _address(request.ship_from)
        lines = [
            {"number": line.id, "quantity": line.quantity, "amount": line.quantity * line.unit_price - line.discount,
             "taxCode": tax_codes[line.id].avalara_code or tax_codes[line.id].code, "itemCode": line.sku}
            for line in request.lines
        ]
        if request.shipping:
            lines.append({"number": SHIPPING_LINE, "quantity": 1, "amount": request.shipping, "taxCode": FREIGHT_TAX_CODE})
        return {"type": "SalesOrder", "companyCode": self.config.company_code or "DEFAULT", "date": on_date.isoformat(),
                "customerCode": request.customer_exemption or "checkout", "currencyCode": request.currency,
                "addresses": addresses, "lines": lines, "commit": False}

    def quote(self, *, request: TaxRequest, on_date: date, tax_codes: dict[str, TaxCode]) -> ProviderAnswer:
        data = self.call("POST", "/api/v2/transactions/create",
                         self.payload(request=request, on_date=on_date, tax_codes=tax_codes))
        try:
            answer = ProviderAnswer(provider=self.name, tax_codes={k: v.code for k, v in tax_codes.items()})
            by_number = {str(line["lineNumber"]): line for line in data["lines"]}
            for line in request.lines:
                answer.lines[line.id] = self._details(by_number.get(line.id, {}))
            if request.shipping:
                answer.shipping = self._details(by_number.get(SHIPPING_LINE, {}))
        except (KeyError, TypeError, AttributeError) as exc:
            raise ProviderUnavailable(f"{self.name}: unexpected response shape") from exc
        return answer

    @staticmethod
    def _details(line: dict) -> list[JurisdictionRate]:
        out = []
        for detail in line.get("details") or []:
            rate = as_decimal(detail.get("rate"))
            if not rate:
                continue
            kind = JURIS_TYPES.get(str(detail.get("jurisType")), "special")
            out.append(JurisdictionRate(kind=kind, code=str(detail.get("jurisCode") or detail.get("jurisName")),
                                        name=str(detail.get("jurisName") or ""), rate=rate,
                                        taxable_amount=as_decimal(detail.get("taxableAmount"))))
        return out
