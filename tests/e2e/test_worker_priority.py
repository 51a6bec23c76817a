"""Workers give way to the web processes on a shared host: they run at ``TALLY_WORKER_NICE``, pool included."""

from __future__ import annotations

import os
import uuid

import pytest

from tests.e2e.stack import Worker, wait_until

pytestmark = pytest.mark.slow


def niceness(pid: int) -> int:
    return os.getpriority(os.PRIO_PROCESS, pid)


@pytest.mark.parametrize(("setting", "expected"), [(None, 10), ("3", 3), ("0", 0), ("40", 19)])
def test_worker_and_its_pool_run_at_the_configured_niceness(setting, expected):
    env = {} if setting is None else {"TALLY_WORKER_NICE": setting}
    worker = Worker(f"nice-{uuid.uuid4().hex[:8]}", concurrency=2, **env)
    try:
        wait_until(lambda: len(worker.children()) == 2, message="the pool processes")
        pids = [worker.proc.pid, *worker.children()]
        assert [niceness(pid) for pid in pids] == [expected] * 3
    finally:
        worker.stop()


def autogroup_niceness(pid: int | str) -> int | None:
    """None for the boot-time default group: the kernel prints nothing for it (it is the root task
    group, which cannot be reniced), and a CI runner's processes may all sit in it."""
    text = open(f"/proc/{pid}/autogroup").read()
    return int(text.split("nice")[1]) if text.strip() else None


needs_autogroup = pytest.mark.skipif(not os.path.exists("/proc/self/autogroup"), reason="kernel without autogroup")


@needs_autogroup
def test_a_worker_in_a_session_of_its_own_lowers_its_session_too():
    """Under autogroup scheduling, sessions share the CPU first: a niced worker in its own session (a
    service, ``setsid``) took as much CPU as gunicorn in another until its session's group was lowered."""
    worker = Worker(f"nice-{uuid.uuid4().hex[:8]}", concurrency=2, TALLY_WORKER_NICE="7")
    try:
        wait_until(lambda: len(worker.children()) == 2, message="the pool processes")
        assert os.getsid(worker.proc.pid) == worker.proc.pid
        assert [autogroup_niceness(pid) for pid in [worker.proc.pid, *worker.children()]] == [7] * 3
    finally:
        worker.stop()


@needs_autogroup
def test_a_worker_sharing_a_session_leaves_the_session_alone():
    """Whatever else runs in the session (the web processes, under one shell) must not be slowed down."""
    before = autogroup_niceness("self")
    worker = Worker(f"nice-{uuid.uuid4().hex[:8]}", concurrency=2, own_session=False, TALLY_WORKER_NICE="7")
    try:
        wait_until(lambda: len(worker.children()) == 2, message="the pool processes")
        assert os.getsid(worker.proc.pid) == os.getsid(0)
        assert niceness(worker.proc.pid) == 7
        assert autogroup_niceness(worker.proc.pid) == before == autogroup_niceness("self")
    finally:
        worker.stop()
