"""Hypothesis properties of the money arithmetic (pure, no database) and of the local tables end to end."""

from __future__ import annotations

from decimal import ROUND_DOWN, ROUND_HALF_UP, Decimal

from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from tax_app import engine
from tax_app.money import MINOR_UNITS, minor_unit
from tax_app.providers.base import Address, JurisdictionRate, LineItem, ProviderAnswer, TaxRequest

D = Decimal
KINDS = ["state", "county", "city", "special"]

# Integers scaled into Decimals: exact, and much faster to generate than st.decimals.
money = st.integers(0, 500_000).map(lambda cents: D(cents).scaleb(-2))
rates = st.integers(0, 150_000).map(lambda millionths: D(millionths).scaleb(-6))
quantities = st.one_of(st.integers(1, 50).map(D), st.integers(1, 20_000).map(lambda n: D(n).scaleb(-3)))


@st.composite
def orders(draw):
    currency = draw(st.sampled_from(["USD", "EUR", "JPY", "KWD"]))
    jurisdictions = [(kind, draw(rates)) for kind in draw(st.lists(st.sampled_from(KINDS), min_size=1, max_size=4,
                                                                   unique=True))]
    lines, answer_lines = [], {}
    for n in range(draw(st.integers(1, 12))):
        quantity, price = draw(quantities), draw(money)
        discount = (quantity * price * draw(st.integers(0, 100)) / 100).quantize(D("0.01"), rounding=ROUND_DOWN)
        line = LineItem(id=f"L{n}", quantity=quantity, unit_price=price, discount=discount, sku=f"S{n}")
        lines.append(line)
        exempt = draw(st.sets(st.sampled_from([k for k, _ in jurisdictions])))
        answer_lines[line.id] = [JurisdictionRate(kind=k, code=f"X-{k}", name=k, rate=r,
                                                  taxable_amount=D("0") if k in exempt else None)
                                 for k, r in jurisdictions]
    shipping = draw(money)
    answer = ProviderAnswer(provider="test", lines=answer_lines,
                            shipping=[JurisdictionRate(kind=k, code=f"X-{k}", name=k, rate=r) for k, r in jurisdictions])
    request = TaxRequest(currency=currency, ship_to=Address(country="US", state="ZZ", zip="00001"), lines=tuple(lines),
                         shipping=shipping)
    return request, answer


@settings(max_examples=100, deadline=None)
@given(orders())
def test_total_is_the_sum_of_line_jurisdiction_amounts(order):
    request, answer = order
    result = engine.compute(request=request, answer=answer, on_date=None)
    every = [j for item in [*result.lines, result.shipping] for j in item.jurisdictions]
    assert result.total_tax == sum((j.tax for j in every), D(0))
    assert result.total_tax == sum((j.tax for j in result.breakdown), D(0))
    assert sum((j.taxable_amount for j in result.breakdown), D(0)) == sum((j.taxable_amount for j in every), D(0))
    for item in [*result.lines, result.shipping]:
        assert item.tax == sum((j.tax for j in item.jurisdictions), D(0))


@settings(max_examples=100, deadline=None)
@given(orders())
def test_each_amount_is_within_half_a_minor_unit(order):
    request, answer = order
    result = engine.compute(request=request, answer=answer, on_date=None)
    unit = minor_unit(request.currency)
    for item, line in zip(result.lines, request.lines, strict=True):
        exact_amount = line.quantity * line.unit_price - line.discount
        assert abs(item.amount - exact_amount) <= unit / 2
        assert item.amount == item.amount.quantize(unit)
        for j in item.jurisdictions:
            assert abs(j.tax - j.taxable_amount * j.rate) <= unit / 2
            assert j.tax == j.tax.quantize(unit) and j.tax >= 0
            assert j.taxable_amount in (D(0), item.amount)
    # and so the total is off from the exact sum by at most half a unit per line-jurisdiction
    pairs = sum(len(item.jurisdictions) for item in [*result.lines, result.shipping])
    exact = sum((j.taxable_amount * j.rate for item in [*result.lines, result.shipping] for j in item.jurisdictions), D(0))
    assert abs(result.total_tax - exact) <= unit / 2 * pairs


@settings(max_examples=200, deadline=None)
@given(st.sampled_from(sorted(MINOR_UNITS)), st.integers(0, 10**9), st.integers(0, 10**6))
def test_half_up_matches_integer_arithmetic(currency, cents_times_1000, rate_millionths):
    """Independent oracle: the same rounding done in integers only."""
    digits = MINOR_UNITS[currency]
    amount = D(cents_times_1000).scaleb(-3 - digits)
    rate = D(rate_millionths).scaleb(-6)
    request = TaxRequest(currency=currency, ship_to=Address(country="US"),
                         lines=(LineItem(id="a", quantity=D(1), unit_price=amount.quantize(D(1).scaleb(-digits),
                                                                                     rounding=ROUND_HALF_UP)),))
    answer = ProviderAnswer(provider="t", lines={"a": [JurisdictionRate(kind="state", code="s", name="s", rate=rate)]})
    result = engine.compute(request=request, answer=answer, on_date=None)
    line_minor = int(result.lines[0].amount.scaleb(digits))
    product = line_minor * rate_millionths  # in (minor units x 10^-6)
    expected = (product + 500_000) // 1_000_000
    assert result.total_tax == D(expected).scaleb(-digits)


@settings(max_examples=25, deadline=None, suppress_health_check=[HealthCheck.function_scoped_fixture])
@given(st.lists(st.tuples(st.integers(1, 9), st.decimals(min_value=D("0.01"), max_value=D("300"), places=2)),
                min_size=1, max_size=15))
def test_local_tables_end_to_end(us_rates, items):
    """Through the database: Seattle's two jurisdictions, each line rounded on its own."""
    lines = tuple(LineItem(id=str(n), quantity=D(q), unit_price=p, sku=f"S{n}") for n, (q, p) in enumerate(items))
    request = TaxRequest(currency="USD", ship_to=Address(country="US", state="WA", zip="98101"), lines=lines)
    result = engine.calculate(request=request, use_cache=False)
    expected = sum(((q * p * D("0.065")).quantize(D("0.01"), rounding=ROUND_HALF_UP)
                    + (q * p * D("0.0375")).quantize(D("0.01"), rounding=ROUND_HALF_UP) for q, p in items), D(0))
    assert result.total_tax == expected
