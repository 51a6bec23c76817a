"""``record_run``: wrap a scheduled job so it always leaves a run record, even when it fails."""

from __future__ import annotations

import contextlib
import traceback

from django.utils import timezone

from hub.models import JobRun


@contextlib.contextmanager
def record_run(job: str, *, channel=None):
    run = JobRun.objects.create(job=job, channel=channel)
    try:
        yield run
    except BaseException as exc:
        run.ok = False
        run.error = "".join(traceback.format_exception_only(type(exc), exc))[-2000:]
        raise
    else:
        if run.ok is None:
            run.ok = run.count_rejected == 0
    finally:
        run.finished_at = timezone.now()
        run.save()
