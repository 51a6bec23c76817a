from __future__ import annotations

import uuid
from datetime import UTC, date, datetime
from decimal import Decimal

import pytest
import requests

from tax_app import resilience, services
from tax_app.models import Nexus, ProviderConfig, ShippingRule, TaxCode, TaxCodeRule
from tax_app.providers.base import Address, LineItem, TaxRequest
from tax_app.sandbox import SandboxServer

NOW = datetime(2025, 7, 1, 12, 0, tzinfo=UTC)

AVALARA_HEADER = ("State,ZipCode,TaxRegionName,StateRate,EstimatedCombinedRate,EstimatedCountyRate,EstimatedCityRate,"
                  "EstimatedSpecialRate,RiskLevel")
# Real-looking WA rows plus two synthetic states: ZZ taxes a flat 10% at state level only, ZY splits 10% four ways.
WA_2025_01 = "\n".join([
    AVALARA_HEADER,
    "WA,98101,SEATTLE,0.065000,0.102500,0.000000,0.037500,0.000000,1",
    "WA,98001,AUBURN,0.065000,0.101000,0.000000,0.036000,0.000000,1",
    "WA,98501,OLYMPIA,0.065000,0.098000,0.000000,0.033000,0.000000,1",
]) + "\n"
SYNTHETIC = "\n".join([
    AVALARA_HEADER,
    "ZZ,00001,FLATVILLE,0.100000,0.100000,0.000000,0.000000,0.000000,1",
    "ZY,00002,SPLITTON,0.060000,0.100000,0.010000,0.020000,0.010000,1",
]) + "\n"


@pytest.fixture(autouse=True)
def redis_namespace(monkeypatch):
    """Each test gets its own key prefix (cache, version, breakers) and removes its keys afterwards."""
    prefix = f"tally:tax:test:{uuid.uuid4().hex[:12]}:"
    monkeypatch.setenv("TAX_REDIS_PREFIX", prefix)
    yield prefix
    client = resilience.client()
    keys = list(client.scan_iter(match=prefix + "*", count=500))
    if keys:
        client.delete(*keys)


@pytest.fixture
def sandbox():
    server = SandboxServer().start()
    yield server
    server.stop()


def control(server: SandboxServer, **knobs) -> dict:
    response = requests.post(server.url + "/_sandbox/", json=knobs, timeout=2)
    response.raise_for_status()
    return response.json()


SANDBOX_RATES = {
    "98101": {"state": "WA", "county": "KING", "city": "SEATTLE", "state_rate": "0.065", "county_rate": "0",
              "city_rate": "0.0375", "special_rate": "0", "freight_taxable": True},
    "00001": {"state": "ZZ", "county": "", "city": "FLATVILLE", "state_rate": "0.10", "county_rate": "0",
              "city_rate": "0", "special_rate": "0", "freight_taxable": False},
}


@pytest.fixture
def us_rates(db):
    """WA (Jan 2025) and the synthetic states, with nexus in all three; shipping taxable in WA only."""
    services.import_file(content=WA_2025_01, name="TAXRATES_ZIP5_WA202501.csv", now=NOW)
    services.import_file(content=SYNTHETIC, name="synthetic.csv", now=NOW, effective_from=date(2025, 1, 1))
    for state in ("WA", "ZZ", "ZY"):
        Nexus.objects.create(country="US", state=state, since=date(2024, 1, 1))
    ShippingRule.objects.create(country="US", state="WA", taxable=True)
    clothing = TaxCode.objects.get(code="20010")
    TaxCodeRule.objects.create(tax_code=clothing, country="US", state="ZZ", taxable=False, note="clothing exempt")
    # New York style: clothing under 110.00 a piece is exempt from the state's tax only.
    TaxCodeRule.objects.create(tax_code=clothing, country="US", state="WA", kind="state", taxable=False,
                               below_unit_price=Decimal("110.00"))


def provider(server: SandboxServer, kind: str = "taxjar", **overrides) -> ProviderConfig:
    fields = {"name": f"sandbox-{kind}", "kind": kind, "base_url": server.url, "api_key": "sk-test",
              "account_id": "1100", "timeout_ms": 300, "attempts": 2, "breaker_threshold": 3,
              "breaker_cooldown_seconds": 30, **overrides}
    return ProviderConfig.objects.create(**fields)


def req(*lines: tuple, state: str = "ZZ", zip_code: str = "00001", country: str = "US", currency: str = "USD",
        shipping: str = "0", customer: str = "") -> TaxRequest:
    """lines: (quantity, unit_price[, discount[, tax_code]]) as strings."""
    items = []
    for n, spec in enumerate(lines, start=1):
        qty, price, *rest = spec
        discount = rest[0] if rest else "0"
        code = rest[1] if len(rest) > 1 else ""
        items.append(LineItem(id=f"L{n}", quantity=Decimal(qty), unit_price=Decimal(price), discount=Decimal(discount),
                              sku="" if code else f"SKU-{n}", tax_code=code))
    return TaxRequest(currency=currency, ship_to=Address(country=country, state=state, zip=zip_code),
                      lines=tuple(items), shipping=Decimal(shipping), customer_exemption=customer)
