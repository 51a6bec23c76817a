"""Hand-computed calculations, to the cent, through the local rate tables."""

from __future__ import annotations

from datetime import date
from decimal import Decimal

import pytest

from tax_app import engine, services
from tax_app.models import CustomerExemption, Nexus
from tests.tax.conftest import NOW, req

D = Decimal
ON = date(2025, 7, 1)

CASES = [
    # (name, request kwargs, expected total tax, expected per-line taxes)
    ("10.05 x 3 at 10% is 3.02, not float's 3.01", dict(lines=[("3", "10.05")]), "3.02", ["3.02"]),
    # 30.15 x (0.06, 0.01, 0.02, 0.01) = 1.809, 0.3015, 0.603, 0.3015 -> 1.81 + 0.30 + 0.60 + 0.30
    ("same 10% split over four jurisdictions rounds each", dict(lines=[("3", "10.05")], state="ZY", zip_code="00002"),
     "3.01", ["3.01"]),
    # 30.15 x 0.065 = 1.95975 -> 1.96; x 0.0375 = 1.130625 -> 1.13
    ("Seattle 10.25%", dict(lines=[("3", "10.05")], state="WA", zip_code="98101"), "3.09", ["3.09"]),
    # each 0.15 x 10% = 0.015 -> 0.02; the unrounded total 0.045 would round to 0.05
    ("small lines round up one by one", dict(lines=[("1", "0.15")] * 3), "0.06", ["0.02", "0.02", "0.02"]),
    ("ten 5-cent lines", dict(lines=[("1", "0.05")] * 10), "0.10", ["0.01"] * 10),
    # 2 x 19.99 - 5.00 = 34.98 -> 3.498 -> 3.50
    ("discount before tax", dict(lines=[("2", "19.99", "5.00")]), "3.50", ["3.50"]),
    ("fully discounted line", dict(lines=[("1", "9.99", "9.99")]), "0.00", ["0.00"]),
    # clothing exempt in ZZ; the general line pays 10%
    ("exempt clothing line", dict(lines=[("1", "49.99", "0", "20010"), ("1", "10.00")]), "1.00", ["0.00", "1.00"]),
    ("other-exempt code", dict(lines=[("1", "10.00", "0", "99999")]), "0.00", ["0.00"]),
    # WA: clothing under 110 exempt at state level only: 50 x 0.0375 = 1.875 -> 1.88; a 200 coat pays 13.00 + 7.50
    ("threshold exemption", dict(lines=[("1", "50.00", "0", "20010"), ("1", "200.00", "0", "20010")], state="WA",
                                 zip_code="98101"), "22.38", ["1.88", "20.50"]),
    ("shipping not taxable in ZZ", dict(lines=[("1", "10.00")], shipping="7.95"), "1.00", ["1.00"]),
    # WA taxes shipping: 7.95 x 0.065 = 0.51675 -> 0.52; x 0.0375 = 0.298125 -> 0.30
    ("shipping taxable in WA", dict(lines=[("1", "10.00")], shipping="7.95", state="WA", zip_code="98101"), "1.85",
     ["1.03"]),
    ("ZIP+4 uses the ZIP5 row", dict(lines=[("1", "100")], state="WA", zip_code="98101-1234"), "10.25", ["10.25"]),
    # 999 JPY x 10% = 99.9 -> 100 (no minor unit)
    ("yen has no minor unit", dict(lines=[("3", "333")], currency="JPY"), "100", ["100"]),
    # 3 x 3.335 = 10.005 -> 10.01 line amount, then 1.001 -> 1.00
    ("line amount rounded before tax", dict(lines=[("3", "3.335")]), "1.00", ["1.00"]),
    # 0.5 kg x 4.99 = 2.495 -> 2.50 -> 0.25
    ("fractional quantity", dict(lines=[("0.5", "4.99")]), "0.25", ["0.25"]),
]


@pytest.mark.parametrize(("name", "kwargs", "total", "line_taxes"), CASES, ids=[c[0] for c in CASES])
def test_hand_computed(us_rates, name, kwargs, total, line_taxes):
    result = engine.calculate(request=req(*kwargs.pop("lines"), **kwargs), on_date=ON, now=NOW)
    assert result.total_tax == D(total)
    assert [line.tax for line in result.lines] == [D(t) for t in line_taxes]
    assert result.total_tax == sum((j.tax for j in result.breakdown), D(0))
    assert result.provider == "local" and not result.fallback


def test_breakdown_names_each_jurisdiction(us_rates):
    result = engine.calculate(request=req(("3", "10.05"), state="ZY", zip_code="00002"), on_date=ON, now=NOW)
    line = result.lines[0]
    assert [(j.kind, j.rate, j.taxable_amount, j.tax) for j in line.jurisdictions] == [
        ("state", D("0.06"), D("30.15"), D("1.81")),
        ("county", D("0.01"), D("30.15"), D("0.30")),
        ("city", D("0.02"), D("30.15"), D("0.60")),
        ("special", D("0.01"), D("30.15"), D("0.30")),
    ]
    assert line.rate == D("0.10") and line.taxable_amount == D("30.15")


def test_threshold_line_reports_partial_taxability(us_rates):
    result = engine.calculate(request=req(("1", "50.00", "0", "20010"), state="WA", zip_code="98101"), on_date=ON, now=NOW)
    state, city = result.lines[0].jurisdictions
    assert (state.taxable_amount, state.tax) == (D("0.00"), D("0.00"))
    assert (city.taxable_amount, city.tax) == (D("50.00"), D("1.88"))
    assert result.lines[0].rate == D("0.0375")


def test_no_nexus_collects_nothing(us_rates):
    nexus = Nexus.objects.get(state="ZZ")
    nexus.until = date(2025, 6, 1)
    nexus.save()
    result = engine.calculate(request=req(("1", "100")), on_date=ON, now=NOW)
    assert (result.total_tax, result.nexus, result.provider) == (D("0"), False, "none")
    before = engine.calculate(request=req(("1", "100")), on_date=date(2025, 5, 31), now=NOW)
    assert before.total_tax == D("10.00") and before.nexus


def test_exempt_customer_only_where_certificate_is_valid(us_rates):
    CustomerExemption.objects.create(customer_id="C-42", country="US", state="ZZ", valid_from=date(2025, 1, 1),
                                     valid_to=date(2025, 12, 31))
    exempt = engine.calculate(request=req(("1", "100"), customer="C-42"), on_date=ON, now=NOW)
    assert exempt.total_tax == D("0") and exempt.exemption_applied
    elsewhere = engine.calculate(request=req(("1", "100"), state="WA", zip_code="98101", customer="C-42"), on_date=ON,
                                 now=NOW)
    assert elsewhere.total_tax == D("10.25") and not elsewhere.exemption_applied
    expired = engine.calculate(request=req(("1", "100"), customer="C-42"), on_date=date(2026, 1, 1), now=NOW)
    assert expired.total_tax == D("10.00")


def test_unknown_zip_is_an_error_not_zero(us_rates):
    from tax_app.providers.base import NoRates

    with pytest.raises(NoRates):
        engine.calculate(request=req(("1", "10"), state="WA", zip_code="98999"), on_date=ON, now=NOW)


def test_eu_vat_from_the_package(db):
    services.import_eu_vat(now=NOW, effective_from=date(2025, 1, 1))
    Nexus.objects.create(country="EU", since=date(2024, 1, 1))
    # DE: 19% standard, 7% reduced. 3 x 10.05 = 30.15 -> 5.7285 -> 5.73; food 12.99 x 7% = 0.9093 -> 0.91;
    # shipping 4.99 at the standard rate (default for VAT) -> 0.9481 -> 0.95
    result = engine.calculate(request=req(("3", "10.05"), ("1", "12.99", "0", "40030"), country="DE", state="",
                                          zip_code="10115", currency="EUR", shipping="4.99"), on_date=ON, now=NOW)
    assert [line.tax for line in result.lines] == [D("5.73"), D("0.91")]
    assert result.shipping.tax == D("0.95")
    assert result.total_tax == D("7.59")
    assert {(j.code, j.rate) for j in result.breakdown} == {("DE-VAT", D("0.19")), ("DE-VAT", D("0.07"))}

