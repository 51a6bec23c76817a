import os

from celery import Celery
from kombu import Queue

os.environ.setdefault("DJANGO_SETTINGS_MODULE", "hub.settings")

app = Celery("tally")
app.config_from_object("django.conf:settings", namespace="CELERY")
# Separate queues so a webhook storm cannot starve pushes, and a slow
# reconciliation cannot delay either; workers can be sized per queue.
app.conf.task_queues = (Queue("default"), Queue("inbound"), Queue("push"), Queue("batch"))
app.autodiscover_tasks()

from celery.signals import task_postrun, task_prerun, worker_init  # noqa: E402

from hub.observability import install_celery_hooks  # noqa: E402

install_celery_hooks()


@task_prerun.connect(weak=False)
@task_postrun.connect(weak=False)
def close_unusable_connections(sender=None, **_) -> None:
    """What Django does around each request: drop a connection that errored or outlived CONN_MAX_AGE
    (the fixup keeps connections open because of CELERY_DB_REUSE_MAX). Not for eager tasks: they run
    inside the caller's transaction."""
    if getattr(getattr(sender, "request", None), "is_eager", False):
        return
    from django.db import close_old_connections

    close_old_connections()


@worker_init.connect(weak=False)
def lower_cpu_priority(**_) -> None:
    """Give way to the web processes on a shared host (``TALLY_WORKER_NICE``). Set in the worker's main
    thread before its pool starts: pool processes and threads inherit it."""
    from django.conf import settings

    target = settings.TALLY_WORKER_NICE
    current = os.getpriority(os.PRIO_PROCESS, 0)
    if target > current:  # raising niceness needs no privilege; never lower one an operator set
        os.setpriority(os.PRIO_PROCESS, 0, target)
