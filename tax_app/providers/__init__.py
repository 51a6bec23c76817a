"""Tax providers behind one interface (``base.TaxProvider``): local tables, TaxJar- and Avalara-compatible APIs."""

from __future__ import annotations

from tax_app.models import ProviderConfig, ProviderKind
from tax_app.providers.avalara import AvalaraProvider
from tax_app.providers.base import TaxProvider
from tax_app.providers.local import LocalProvider
from tax_app.providers.taxjar import TaxJarProvider


def from_config(config: ProviderConfig) -> TaxProvider:
    if config.kind == ProviderKind.AVALARA:
        return AvalaraProvider(config)
    return TaxJarProvider(config)


__all__ = ["AvalaraProvider", "LocalProvider", "TaxJarProvider", "TaxProvider", "from_config"]
