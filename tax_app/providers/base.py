"""The one interface every tax provider implements, and the value types that cross it.

A provider answers *rates and taxability* per line and per jurisdiction (``ProviderAnswer``); it never
rounds money. The engine turns answers into amounts with one rounding rule for every provider, so a
fallback from a remote provider to the local tables changes where the rates came from, not how the
cents are computed.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from datetime import date
from decimal import Decimal
from typing import TYPE_CHECKING, Protocol

from hub.errors import DomainError

if TYPE_CHECKING:
    from tax_app.models import TaxCode


@dataclass(frozen=True)
class Address:
    country: str
    state: str = ""
    zip: str = ""
    city: str = ""
    street: str = ""

    @property
    def zip5(self) -> str:
        return self.zip.split("-")[0].strip()[:5] if self.country == "US" else self.zip.strip().upper()

    @property
    def plus4(self) -> str:
        parts = self.zip.split("-")
        return parts[1].strip()[:4] if self.country == "US" and len(parts) == 2 else ""

    def as_dict(self) -> dict:
        return {"country": self.country, "state": self.state, "zip": self.zip, "city": self.city, "street": self.street}


@dataclass(frozen=True)
class LineItem:
    id: str
    quantity: Decimal
    unit_price: Decimal
    discount: Decimal = Decimal("0")
    sku: str = ""
    tax_code: str = ""


@dataclass(frozen=True)
class TaxRequest:
    currency: str
    ship_to: Address
    lines: tuple[LineItem, ...]
    ship_from: Address | None = None
    shipping: Decimal = Decimal("0")
    customer_exemption: str = ""


@dataclass(frozen=True)
class JurisdictionRate:
    kind: str
    code: str
    name: str
    rate: Decimal
    # None: the whole line amount is taxable here; Decimal("0"): exempt here; a provider may also say less.
    taxable_amount: Decimal | None = None

    def as_dict(self) -> dict:
        return {"kind": self.kind, "code": self.code, "name": self.name, "rate": str(self.rate),
                "taxable_amount": None if self.taxable_amount is None else str(self.taxable_amount)}

    @classmethod
    def from_dict(cls, data: dict) -> JurisdictionRate:
        # Only ever reads what as_dict wrote (Decimal text), so no float can arrive here.
        taxable = data.get("taxable_amount")
        return cls(kind=data["kind"], code=data["code"], name=data["name"], rate=Decimal(data["rate"]),
                   taxable_amount=None if taxable is None else Decimal(taxable))


@dataclass
class ProviderAnswer:
    provider: str
    lines: dict[str, list[JurisdictionRate]] = field(default_factory=dict)
    shipping: list[JurisdictionRate] = field(default_factory=list)
    tax_codes: dict[str, str] = field(default_factory=dict)
    nexus: bool = True
    exemption_applied: bool = False

    def as_dict(self) -> dict:
        return {
            "provider": self.provider,
            "lines": {k: [j.as_dict() for j in v] for k, v in self.lines.items()},
            "shipping": [j.as_dict() for j in self.shipping],
            "tax_codes": self.tax_codes,
            "nexus": self.nexus,
            "exemption_applied": self.exemption_applied,
        }

    @classmethod
    def from_dict(cls, data: dict) -> ProviderAnswer:
        return cls(
            provider=data["provider"],
            lines={k: [JurisdictionRate.from_dict(j) for j in v] for k, v in data["lines"].items()},
            shipping=[JurisdictionRate.from_dict(j) for j in data["shipping"]],
            tax_codes=data.get("tax_codes", {}),
            nexus=data.get("nexus", True),
            exemption_applied=data.get("exemption_applied", False),
        )


class TaxError(DomainError):
    """A calculation that cannot be answered; ``code`` and ``http_status`` go to the API caller."""

    code = "tax_error"


class NoRates(TaxError):
    code = "no_rates_for_address"
    http_status = 422


class UnknownTaxCode(TaxError):
    code = "unknown_tax_code"
    http_status = 400


class ProviderUnavailable(Exception):
    """5xx, timeout or connection failure: counts against the circuit breaker."""


class ProviderRejected(Exception):
    """4xx: our request or credentials were refused. Falls back, but never opens the breaker."""


class TaxProvider(Protocol):
    name: str
    remote: bool

    def quote(self, *, request: TaxRequest, on_date: date, tax_codes: dict[str, TaxCode]) -> ProviderAnswer:
        """Rates and taxability for every line (by id) and for shipping.

        ``tax_codes`` maps line id to the resolved ``TaxCode``. Raises ``ProviderUnavailable`` or
        ``ProviderRejected`` (remote) or ``NoRates``.
        """
        ...
