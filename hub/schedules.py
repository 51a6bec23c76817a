"""Every schedule Tally runs, kept in django-celery-beat (visible and editable in the admin).

``sync_schedules()`` is idempotent: it creates missing schedules and updates intervals of those
derived from channel settings, and leaves an operator's enabled/disabled choice alone. It runs
at start-up (``manage.py sync_schedules``) and whenever a channel's settings change.
"""

from __future__ import annotations

import json

from django.db import transaction
from django_celery_beat.models import IntervalSchedule, PeriodicTask

GLOBAL = [
    # (name, task, every seconds, queue)
    ("Expire due reservations", "batch.expire_reservations", 1, "batch"),
    ("Sweep the inbox (lost or due events)", "inbound.sweep", 5, "inbound"),
    ("Sweep pushes (lost wake-ups, due retries)", "push.sweep", 2, "push"),
    ("Sweep outgoing event deliveries", "batch.sweep_events", 5, "batch"),
    ("Audit the ledger against stock", "batch.audit_ledger", 3600, "batch"),
    ("Retention clean-up", "batch.retention", 24 * 3600, "batch"),
    ("Roll up sync lag per channel and minute", "batch.roll_up_sync_lag", 60, "batch"),
]


def _interval(seconds: int) -> IntervalSchedule:
    schedule, _ = IntervalSchedule.objects.get_or_create(every=seconds, period=IntervalSchedule.SECONDS)
    return schedule


def _ensure(name: str, task: str, seconds: int, queue: str, kwargs: dict | None = None) -> PeriodicTask:
    defaults = {"task": task, "interval": _interval(seconds), "queue": queue, "kwargs": json.dumps(kwargs or {})}
    periodic, created = PeriodicTask.objects.get_or_create(name=name, defaults=defaults)
    if not created:
        changed = [f for f, v in defaults.items() if getattr(periodic, f) != v]
        if changed:
            for field in changed:
                setattr(periodic, field, defaults[field])
            periodic.save()
    return periodic


@transaction.atomic
def sync_schedules() -> list[str]:
    from channels_app.models import Channel

    names = []
    for name, task, seconds, queue in GLOBAL:
        names.append(_ensure(name, task, seconds, queue).name)
    for channel in Channel.objects.all():
        names += sync_channel_schedules(channel)
    try:
        from tax_app.schedules import ensure_schedules as ensure_tax_schedules

        ensure_tax_schedules()
    except ImportError:
        pass
    return names


def sync_channel_schedules(channel) -> list[str]:
    names = []
    for job, task, seconds in (("reconcile", "batch.reconcile_channel", channel.reconcile_interval_seconds),
                               ("publish catalog and prices", "batch.publish_catalog", channel.catalog_interval_seconds)):
        name = f"{channel.slug}: {job}"
        periodic = _ensure(name, task, max(int(seconds), 10), "batch", {"channel_id": channel.pk})
        if periodic.enabled != channel.enabled:
            PeriodicTask.objects.filter(pk=periodic.pk).update(enabled=channel.enabled)
        names.append(name)
    return names
