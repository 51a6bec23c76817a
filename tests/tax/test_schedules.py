from __future__ import annotations

from django_celery_beat.models import PeriodicTask

from tax_app.schedules import REFRESH_NAME, REFRESH_TASK, ensure_schedules


def test_ensure_schedules_is_idempotent_and_repairs(db):
    first = ensure_schedules()
    PeriodicTask.objects.filter(pk=first.pk).update(enabled=False, task="something.else")
    second = ensure_schedules()
    assert PeriodicTask.objects.filter(name=REFRESH_NAME).count() == 1
    task = PeriodicTask.objects.get(name=REFRESH_NAME)
    assert (task.pk, task.task, task.enabled, task.queue) == (first.pk, REFRESH_TASK, True, "batch")
    assert (task.crontab.minute, task.crontab.hour) == ("5", "0,12")
    assert second.crontab_id == first.crontab_id


def test_task_is_registered_under_its_name():
    from celery import current_app

    import tax_app.tasks  # noqa: F401

    assert REFRESH_TASK in current_app.tasks
