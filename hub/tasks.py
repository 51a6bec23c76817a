"""Housekeeping jobs that span apps: the ledger audit and retention clean-up."""

from __future__ import annotations

import os
from datetime import timedelta

from celery import shared_task
from django.utils import timezone

from hub.runs import record_run


@shared_task(name="batch.audit_ledger")
def audit_ledger() -> int:
    """on_hand and reserved must equal the sums of the ledger for every stock row."""
    from inventory_app.selectors import ledger_mismatches

    with record_run("audit_ledger") as run:
        problems = ledger_mismatches()
        run.count_rejected = len(problems)
        run.details = {"mismatches": problems[:100]}
        run.ok = not problems
    return len(problems)


@shared_task(name="batch.retention")
def retention() -> dict:
    from channels_app.models import InboundEvent, InboundStatus, PushLog, SyncLagMinute, WebhookRejection
    from hub.models import DeliveryStatus, EventDelivery, JobRun
    from inventory_app.models import IdempotencyKey

    now = timezone.now()
    days = int(os.environ.get("TALLY_RETENTION_DAYS", "30"))
    with record_run("retention") as run:
        deleted = {
            "inbound_events": InboundEvent.objects.filter(
                status__in=[InboundStatus.PROCESSED, InboundStatus.IGNORED], received_at__lt=now - timedelta(days=days)
            ).delete()[0],
            "push_logs": PushLog.objects.filter(created_at__lt=now - timedelta(days=min(days, 14))).delete()[0],
            "sync_lag_minutes": SyncLagMinute.objects.filter(
                minute__lt=now - timedelta(days=int(os.environ.get("TALLY_LAG_ROLLUP_DAYS", "400")))).delete()[0],
            "rejections": WebhookRejection.objects.filter(received_at__lt=now - timedelta(days=days)).delete()[0],
            "idempotency_keys": IdempotencyKey.objects.filter(created_at__lt=now - timedelta(days=1)).delete()[0],
            "job_runs": JobRun.objects.filter(started_at__lt=now - timedelta(days=90)).delete()[0],
            # Ended ones only (their attempts go with them): one row per subscriber per stock change grew for ever.
            "event_deliveries": EventDelivery.objects.filter(
                status__in=[DeliveryStatus.DELIVERED, DeliveryStatus.DEAD], created_at__lt=now - timedelta(days=days)
            ).delete()[0],
        }
        run.count_out = sum(deleted.values())
        run.details = deleted
    return deleted


@shared_task(name="batch.deliver_event")
def deliver_event(delivery_id: int) -> str:
    from hub import events

    return events.deliver(delivery_id)


@shared_task(name="batch.sweep_events")
def sweep_events() -> int:
    from hub import events

    return events.sweep()
