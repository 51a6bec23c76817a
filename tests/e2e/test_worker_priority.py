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
