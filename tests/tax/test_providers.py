"""Remote providers against the real sandbox HTTP server: answers, cache, fallback, circuit breaker."""

from __future__ import annotations

from datetime import date, timedelta
from decimal import Decimal

import pytest

from tax_app import engine, resilience
from tax_app.providers import TaxJarProvider
from tests.tax.conftest import NOW, SANDBOX_RATES, control, provider, req

D = Decimal
ON = date(2025, 7, 1)
SEATTLE = {"state": "WA", "zip_code": "98101"}


@pytest.fixture
def live(sandbox, us_rates):
    control(sandbox, rates=SANDBOX_RATES, api_key="sk-test", exempt={"ZZ": ["20010"]})
    return sandbox


def calls(server) -> int:
    return server.state.snapshot()["calls"]


@pytest.mark.parametrize("kind", ["taxjar", "avalara"])
def test_provider_answers_and_is_cached(live, kind):
    config = provider(live, kind)
    request = req(("3", "10.05"), ("1", "49.99", "0", "20010"), shipping="7.95", **SEATTLE)
    first = engine.calculate(request=request, on_date=ON, now=NOW)
    assert (first.provider, first.cached, first.fallback) == (config.name, False, False)
    # 30.15 -> 1.96 + 1.13; 49.99 -> 3.24935 -> 3.25 and 1.874625 -> 1.87; shipping 0.52 + 0.30
    assert [line.tax for line in first.lines] == [D("3.09"), D("5.12")]
    assert first.shipping.tax == D("0.82")
    assert first.total_tax == D("9.03") == sum((j.tax for j in first.breakdown), D(0))
    assert {j.kind for j in first.breakdown} == {"state", "city"}
    seen = calls(live)
    again = engine.calculate(request=request, on_date=ON, now=NOW)
    assert again.cached and again.total_tax == first.total_tax and calls(live) == seen


def test_provider_exemptions_come_through(live):
    provider(live, "taxjar")
    result = engine.calculate(request=req(("1", "49.99", "0", "20010"), ("1", "10.00")), on_date=ON, now=NOW)
    assert [line.tax for line in result.lines] == [D("0.00"), D("1.00")]
    assert result.provider == "sandbox-taxjar"


def test_rates_endpoint(live):
    rates = TaxJarProvider(provider(live, "taxjar")).rates_for_zip(zip5="98101")
    assert rates["combined_rate"] == D("0.1025") and rates["city"] == "SEATTLE"


def test_cache_is_invalidated_by_a_rule_change(live):
    from tax_app.models import ShippingRule

    provider(live, "taxjar", is_active=False)
    request = req(("1", "10.00"), shipping="10.00")
    assert engine.calculate(request=request, on_date=ON, now=NOW).shipping.tax == D("0.00")
    assert engine.calculate(request=request, on_date=ON, now=NOW).cached
    ShippingRule.objects.create(country="US", state="ZZ", taxable=True)
    after = engine.calculate(request=request, on_date=ON, now=NOW)
    assert not after.cached and after.shipping.tax == D("1.00")


@pytest.mark.parametrize("mode", ["down", "error", "timeout"])
def test_provider_down_every_calculation_falls_back(live, mode):
    provider(live, "taxjar", timeout_ms=100)
    control(live, mode=mode, hang_ms=1000)
    reasons = []
    for n in range(6):
        result = engine.calculate(request=req(("3", "10.05"), ("1", str(n))), on_date=ON, now=NOW + timedelta(seconds=n))
        assert result.fallback and result.provider == "local" and not result.cached
        assert result.lines[0].tax == D("3.02")
        reasons.append(result.fallback_reason)
    # threshold 3: three failed calls (two attempts each), then the breaker stops the calls
    assert reasons == ["provider_unavailable"] * 3 + ["circuit_open"] * 3
    assert calls(live) == 6
    assert resilience.CircuitBreaker("sandbox-taxjar").state()["state"] == "open"


def test_breaker_half_open_probe_closes_it(live):
    config = provider(live, "taxjar", attempts=1)
    control(live, mode="error", error_status=502)
    for n in range(3):
        engine.calculate(request=req(("1", "10"), ("1", str(n))), on_date=ON, now=NOW)
    breaker = resilience.CircuitBreaker(config.name)
    assert breaker.state()["state"] == "open"
    # Still inside the cooldown: no call reaches the provider, even though it has recovered.
    control(live, mode="ok")
    before = calls(live)
    early = engine.calculate(request=req(("1", "11")), on_date=ON, now=NOW + timedelta(seconds=29))
    assert early.fallback_reason == "circuit_open" and calls(live) == before
    # After the cooldown one probe goes through; it succeeds and closes the breaker.
    probe = engine.calculate(request=req(("1", "12")), on_date=ON, now=NOW + timedelta(seconds=31))
    assert (probe.provider, probe.fallback) == (config.name, False)
    assert breaker.state()["state"] == "closed" and calls(live) == before + 1
    assert engine.calculate(request=req(("1", "13")), on_date=ON, now=NOW + timedelta(seconds=32)).provider == config.name


def test_failed_probe_reopens_and_others_wait(live):
    config = provider(live, "taxjar", attempts=1)
    breaker = resilience.CircuitBreaker(config.name, threshold=3, cooldown_seconds=30)
    for _ in range(3):
        breaker.record_failure(now=NOW)
    later = NOW + timedelta(seconds=30)
    assert breaker.allow(now=later) == "probe"
    assert breaker.allow(now=later) == "reject"  # one probe at a time
    assert breaker.record_failure(now=later) == "open"
    assert breaker.allow(now=later + timedelta(seconds=29)) == "reject"
    assert breaker.allow(now=later + timedelta(seconds=30)) == "probe"
    breaker.record_success()
    assert breaker.allow(now=later + timedelta(seconds=30)) == "closed"


def test_4xx_falls_back_but_never_opens_the_breaker(live):
    config = provider(live, "taxjar", api_key="wrong-key")
    for n in range(6):
        result = engine.calculate(request=req(("1", "10"), ("1", str(n))), on_date=ON, now=NOW)
        assert (result.fallback, result.fallback_reason, result.total_tax) == (True, "provider_rejected", D(n) / 10 + 1)
    assert resilience.CircuitBreaker(config.name).state()["state"] == "closed"
    assert calls(live) == 6  # one attempt each: a refusal is not retried


def test_fallback_answers_are_not_cached(live):
    provider(live, "taxjar")
    control(live, mode="error")
    request = req(("1", "10"))
    assert engine.calculate(request=request, on_date=ON, now=NOW).fallback
    control(live, mode="ok")
    result = engine.calculate(request=request, on_date=ON, now=NOW)
    assert (result.fallback, result.cached, result.provider) == (False, False, "sandbox-taxjar")


def test_flaky_provider_always_answers_with_the_same_tax(live):
    provider(live, "avalara", breaker_threshold=1000)
    control(live, error_rate_pct=50, seed=7)
    sources = set()
    for n in range(12):
        result = engine.calculate(request=req(("3", "10.05"), ("1", f"{n}.99")), on_date=ON, now=NOW)
        sources.add(result.provider)
        assert result.total_tax == D("3.02") + (D(f"{n}.99") * D("0.1")).quantize(D("0.01"), rounding="ROUND_HALF_UP")
    assert sources == {"sandbox-avalara", "local"}


def test_redis_down_still_answers_uncached(us_rates, settings):
    settings.REDIS_URL = "redis://127.0.0.1:1/0"  # nothing listens on port 1
    for _ in range(2):
        result = engine.calculate(request=req(("3", "10.05")), on_date=ON, now=NOW)
        assert (result.total_tax, result.cached, result.fallback) == (D("3.02"), False, False)
