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

from celery.signals import task_postrun, task_prerun, worker_init, worker_process_init, worker_ready  # noqa: E402

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


@worker_process_init.connect(weak=False)
def warm_up_pool_process(**_) -> None:
    """In each prefork pool process, after the fork: the tasks' modules are loaded by then (see
    ``hub.startup.warm_up`` for why the heap is frozen)."""
    from hub.startup import warm_up

    warm_up(web=False)


@worker_ready.connect(weak=False)
def warm_up_worker(**_) -> None:
    """In the worker's main process once it is ready: where a threads or solo pool (the push workers) runs its
    tasks. Under prefork the pool processes have done their own (above); freezing the parent is harmless."""
    from hub.startup import warm_up

    warm_up(web=False)


@worker_init.connect(weak=False)
def lower_cpu_priority(**_) -> None:
    """Give way to the web processes on a shared host (``TALLY_WORKER_NICE``). Set in the worker's main
    thread before its pool starts: pool processes and threads inherit it."""
    from django.conf import settings

    target = settings.TALLY_WORKER_NICE
    current = os.getpriority(os.PRIO_PROCESS, 0)
    if target > current:  # raising niceness needs no privilege; never lower one an operator set
        os.setpriority(os.PRIO_PROCESS, 0, target)
    lower_session_priority(target)


AUTOGROUP = "/proc/self/autogroup"


def lower_session_priority(target: int) -> None:
    """With the kernel's autogroup scheduling (the default on most distributions), CPU time is shared
    between sessions first, and a process's niceness only counts against others in its own session.
    A worker started as a service or with ``setsid`` is alone in its session, so its niceness alone
    would change nothing against gunicorn in another: measured, two sessions at nice 0 and 10 split
    the CPU evenly. A session leader's group is its own, so it is lowered too; a worker that shares a
    session (started from a shell beside the web processes) leaves the group alone, where its own
    niceness already counts."""
    if os.getsid(0) != os.getpid():
        return
    try:
        with open(AUTOGROUP) as f:
            current = int(f.read().split("nice")[1])
        if target > current:
            with open(AUTOGROUP, "w") as f:
                f.write(str(target))
    except (OSError, IndexError, ValueError):
        pass  # no autogroup in this kernel (or it is off): niceness alone does the job
