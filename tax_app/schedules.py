"""Beat schedule for the tax app; ``ensure_schedules()`` is called by the project's schedule sync."""

from __future__ import annotations

from django_celery_beat.models import CrontabSchedule, PeriodicTask

REFRESH_TASK = "batch.tax_refresh_rates"
REFRESH_NAME = "tax: refresh rate tables"


def ensure_schedules() -> PeriodicTask:
    """Create or update the refresh schedule; safe to call on every deploy.

    Runs five minutes past midnight UTC so a table dated today is active before the day's first checkout
    (calculations already pick tables by date; activation keeps statuses and vanished-jurisdiction alerts
    current), and again at noon to pick up files dropped during the day.
    """
    crontab, _ = CrontabSchedule.objects.get_or_create(
        minute="5", hour="0,12", day_of_week="*", day_of_month="*", month_of_year="*", timezone="UTC",
    )
    task, _ = PeriodicTask.objects.update_or_create(
        name=REFRESH_NAME,
        defaults={"task": REFRESH_TASK, "crontab": crontab, "interval": None, "queue": "batch", "enabled": True,
                  "description": "Import new tax rate tables and activate them on their effective date."},
    )
    return task
