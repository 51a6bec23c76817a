"""Any change to rates, rules or providers bumps the cache version, so no cached answer outlives its inputs."""

from __future__ import annotations

from django.db import transaction
from django.db.models.signals import post_delete, post_save

from tax_app import resilience
from tax_app.models import (
    CustomerExemption,
    Nexus,
    ProductTaxCode,
    ProviderConfig,
    RateTable,
    ShippingRule,
    TaxCode,
    TaxCodeRule,
)

WATCHED = [CustomerExemption, Nexus, ProductTaxCode, ProviderConfig, RateTable, ShippingRule, TaxCode, TaxCodeRule]


def _changed(sender, **kwargs) -> None:
    # Now, so this process stops using old answers at once; and after commit, so another process that cached
    # an answer computed from the pre-commit state in between has it invalidated too.
    resilience.bump_rules_version()
    transaction.on_commit(resilience.bump_rules_version)


def connect() -> None:
    for model in WATCHED:
        post_save.connect(_changed, sender=model, dispatch_uid=f"tax_version_{model.__name__}_save")
        post_delete.connect(_changed, sender=model, dispatch_uid=f"tax_version_{model.__name__}_delete")
