"""The one tax calculation entry point: ``calculate(request=..., on_date=..., now=...)``.

Where the rates come from
    Collect only where the merchant has nexus (``Nexus``) and never for a customer with a valid exemption
    certificate for the destination; both answer zero tax without asking a provider. Otherwise the active
    remote provider (``ProviderConfig``) is asked, behind a Redis circuit breaker; when it is down, refuses
    the request, or its breaker is open, the local rate tables answer and the result says ``fallback``.
    Answers that did not come from a fallback are cached in Redis under a key built from the normalised
    request, the calculation date, the provider and a version number bumped on every rate or rule change.

The rounding rule (the same for every provider)
    * Money is ``Decimal`` throughout; nothing is ever a float.
    * A line's amount is ``quantity * unit_price - discount``, rounded half-up to the currency's minor unit.
    * For each line and each jurisdiction (country VAT, state, county, city, special district):
      ``tax = round_half_up(taxable_amount * rate)`` to the minor unit. The taxable amount is the line amount,
      or zero where the line's tax code is exempt in that jurisdiction (or what a remote provider says is
      taxable there, capped at the line amount).
    * A line's tax is the sum of its rounded jurisdiction taxes; shipping is one more line.
    * The order's total tax is the sum of the line taxes plus the shipping tax, which is exactly the sum of the
      per-jurisdiction breakdown (by construction, not by adjustment).
    * So each line-jurisdiction amount is within half a minor unit of the exact product, and the total may
      differ from ``round(sum of amounts * combined rate)`` by up to half a minor unit per line-jurisdiction;
      10.05 x 3 at 10% is 30.15 -> 3.015 -> 3.02.
"""

from __future__ import annotations

import logging
from dataclasses import dataclass, field
from datetime import UTC, date, datetime
from decimal import Decimal

from django.utils import timezone

from tax_app import resilience, selectors
from tax_app.models import ProviderConfig
from tax_app.money import MINOR_UNITS, round_money
from tax_app.providers import LocalProvider, from_config
from tax_app.providers.base import (
    LineItem,
    ProviderAnswer,
    ProviderRejected,
    ProviderUnavailable,
    TaxError,
    TaxRequest,
)

log = logging.getLogger(__name__)
ZERO = Decimal("0")
SHIPPING_ID = "shipping"

__all__ = ["JurisdictionTax", "LineTax", "TaxResult", "calculate", "compute", "line_amount"]


@dataclass
class JurisdictionTax:
    kind: str
    code: str
    name: str
    rate: Decimal
    taxable_amount: Decimal
    tax: Decimal


@dataclass
class LineTax:
    id: str
    tax_code: str
    amount: Decimal
    taxable_amount: Decimal
    tax: Decimal
    rate: Decimal
    jurisdictions: list[JurisdictionTax] = field(default_factory=list)


@dataclass
class TaxResult:
    currency: str
    on_date: date
    total_tax: Decimal
    lines: list[LineTax]
    shipping: LineTax
    breakdown: list[JurisdictionTax]
    provider: str
    cached: bool = False
    fallback: bool = False
    fallback_reason: str = ""
    nexus: bool = True
    exemption_applied: bool = False


def line_amount(line: LineItem, currency: str) -> Decimal:
    gross = line.quantity * line.unit_price
    if line.discount > gross:
        raise TaxError(f"Line {line.id}: discount {line.discount} exceeds the line amount {gross}.", line=line.id)
    return round_money(gross - line.discount, currency)


def _line(line_id: str, tax_code: str, amount: Decimal, rates, currency: str) -> LineTax:
    jurisdictions = []
    for j in rates:
        taxable = amount if j.taxable_amount is None else min(max(round_money(j.taxable_amount, currency), ZERO), amount)
        jurisdictions.append(JurisdictionTax(kind=j.kind, code=j.code, name=j.name, rate=j.rate, taxable_amount=taxable,
                                             tax=round_money(taxable * j.rate, currency)))
    taxed = [j for j in jurisdictions if j.taxable_amount > 0]
    return LineTax(
        id=line_id, tax_code=tax_code, amount=amount,
        taxable_amount=max((j.taxable_amount for j in taxed), default=ZERO),
        tax=sum((j.tax for j in jurisdictions), ZERO),
        rate=sum((j.rate for j in taxed), ZERO),
        jurisdictions=jurisdictions,
    )


def compute(*, request: TaxRequest, answer: ProviderAnswer, on_date: date) -> TaxResult:
    """Pure money arithmetic: the provider's rates applied under the rounding rule in this module's docstring."""
    currency = request.currency
    lines = [_line(line.id, answer.tax_codes.get(line.id, line.tax_code), line_amount(line, currency),
                   answer.lines.get(line.id, []), currency) for line in request.lines]
    shipping = _line(SHIPPING_ID, "", round_money(request.shipping, currency), answer.shipping, currency)
    totals: dict[tuple, JurisdictionTax] = {}
    for item in [*lines, shipping]:
        for j in item.jurisdictions:
            key = (j.kind, j.code, j.name, j.rate)
            if key not in totals:
                totals[key] = JurisdictionTax(kind=j.kind, code=j.code, name=j.name, rate=j.rate,
                                              taxable_amount=ZERO, tax=ZERO)
            totals[key].taxable_amount += j.taxable_amount
            totals[key].tax += j.tax
    return TaxResult(
        currency=currency, on_date=on_date,
        total_tax=sum((item.tax for item in lines), ZERO) + shipping.tax,
        lines=lines, shipping=shipping, breakdown=list(totals.values()), provider=answer.provider,
        nexus=answer.nexus, exemption_applied=answer.exemption_applied,
    )


def _normalised(request: TaxRequest, *, on_date: date, provider: str) -> dict:
    def address(a):
        if a is None:
            return None
        return [a.country, a.state.upper(), a.zip5, a.plus4, a.city.strip().upper(), " ".join(a.street.upper().split())]

    return {
        "p": provider, "d": on_date.isoformat(), "cur": request.currency,
        "to": address(request.ship_to), "from": address(request.ship_from),
        "lines": [[li.id, li.sku, li.tax_code, str(li.quantity.normalize()), str(li.unit_price.normalize()),
                   str(li.discount.normalize())] for li in request.lines],
        "ship": str(request.shipping.normalize()), "cust": request.customer_exemption,
    }


# Per Redis namespace: (rules version, primary provider). Any ProviderConfig change bumps the version.
_configs: dict[str, tuple[int, ProviderConfig | None]] = {}


def _config_for(version: int) -> ProviderConfig | None:
    namespace = resilience.prefix()
    known = _configs.get(namespace)
    if version < 0:
        return selectors.primary_provider()
    if known is None or known[0] != version:
        known = _configs[namespace] = (version, selectors.primary_provider())
    return known[1]


def calculate(*, request: TaxRequest, on_date: date | None = None, now: datetime | None = None,
              use_cache: bool = True) -> TaxResult:
    """Tax for one checkout. ``now`` drives the breaker's clock; ``on_date`` (default: ``now``'s UTC date)
    picks the rates in force."""
    now = now or timezone.now()
    on_date = on_date or now.astimezone(UTC).date()
    if request.currency not in MINOR_UNITS:
        raise TaxError(f"Unsupported currency {request.currency!r}.", field="currency")
    for line in request.lines:
        line_amount(line, request.currency)

    # The cache key names the provider, which is known for sure only once the version is read; guess it from
    # the last version seen (right unless the configuration just changed) so the hit path is one round trip.
    namespace = resilience.prefix()
    if namespace not in _configs:
        _configs[namespace] = (-2, selectors.primary_provider())
    guessed = _configs[namespace][1]
    name = guessed.name if guessed else LocalProvider.name
    request_digest = resilience.digest(_normalised(request, on_date=on_date, provider=name))
    if use_cache:
        version, hit = resilience.cached_lookup(request_digest)
    else:
        version, hit = resilience.rules_version(), None
    config = _config_for(version)
    if (config.name if config else LocalProvider.name) != name:
        name = config.name if config else LocalProvider.name
        request_digest = resilience.digest(_normalised(request, on_date=on_date, provider=name))
        hit = resilience.cache_get(resilience.answer_key(version, request_digest)) if use_cache and version >= 0 else None
    if hit is not None:
        result = compute(request=request, answer=ProviderAnswer.from_dict(hit), on_date=on_date)
        result.cached = True
        return result

    rules = selectors.snapshot(version=version, namespace=namespace)
    answer, reason = _resolve(request=request, on_date=on_date, now=now, config=config, rules=rules)
    if use_cache and not reason and version >= 0:
        resilience.cache_set(resilience.answer_key(version, request_digest), answer.as_dict())
    result = compute(request=request, answer=answer, on_date=on_date)
    result.fallback, result.fallback_reason = bool(reason), reason
    return result


def _resolve(*, request: TaxRequest, on_date: date, now: datetime, config: ProviderConfig | None,
             rules: selectors.RulesSnapshot) -> tuple[ProviderAnswer, str]:
    to = request.ship_to
    tax_codes = rules.resolve_tax_codes(request.lines)
    codes = {k: v.code for k, v in tax_codes.items()}
    if not rules.has_nexus(country=to.country, state=to.state, on_date=on_date):
        return ProviderAnswer(provider="none", tax_codes=codes, nexus=False), ""
    if selectors.valid_exemption(customer_id=request.customer_exemption, country=to.country, state=to.state,
                                 on_date=on_date):
        return ProviderAnswer(provider="none", tax_codes=codes, exemption_applied=True), ""

    reason = ""
    if config is not None:
        breaker = resilience.CircuitBreaker(config.name, threshold=config.breaker_threshold,
                                            cooldown_seconds=config.breaker_cooldown_seconds)
        if breaker.allow(now=now) == "reject":
            reason = "circuit_open"
        else:
            try:
                answer = from_config(config).quote(request=request, on_date=on_date, tax_codes=tax_codes)
            except ProviderUnavailable as exc:
                breaker.record_failure(now=now)
                log.warning("tax provider unavailable, using local tables: %s", exc)
                reason = "provider_unavailable"
            except ProviderRejected as exc:
                log.warning("tax provider refused the request, using local tables: %s", exc)
                reason = "provider_rejected"
            else:
                breaker.record_success()
                return answer, ""
    return LocalProvider(rules).quote(request=request, on_date=on_date, tax_codes=tax_codes), reason
