"""Celery tasks: thin, idempotent wrappers around ``inventory_app.stock``."""

from __future__ import annotations

from celery import shared_task

from inventory_app import stock


@shared_task(name="batch.expire_reservations")
def expire_reservations(limit: int = 500) -> int:
    """Release reservations past ``expires_at``; loops until none are due so a backlog drains in one run."""
    total = 0
    while True:
        expired = stock.expire_due(limit=limit)
        total += expired
        if expired < limit:
            return total
