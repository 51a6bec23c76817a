"""Celery tasks: thin wrappers around ``tax_app.services``."""

from __future__ import annotations

from celery import shared_task
from django.utils import timezone

from tax_app import services


@shared_task(name="batch.tax_refresh_rates")
def tax_refresh_rates() -> dict:
    """Import new rate tables (``TAX_RATES_DIR`` / ``TAX_RATES_URL``) and activate those due today."""
    return services.refresh_rates(now=timezone.now()).as_dict()
