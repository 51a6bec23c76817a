"""Workers give way to the web processes on a shared host: they run at ``TALLY_WORKER_NICE``, pool included."""

from __future__ import annotations

import os

import pytest

from tests.e2e.stack import Worker

pytestmark = pytest.mark.slow


def niceness(pid: int) -> int:
    return os.getpriority(os.PRIO_PROCESS, pid)


@pytest.mark.parametrize(("setting", "expected"), [(None, 10), ("3", 3), ("0", 0), ("40", 19)])
def test_worker_and_its_pool_run_at_the_configured_niceness(setting, expected):
    env = {} if setting is None else {"TALLY_WORKER_NICE": setting}
    worker = Worker(f"nice{setting}", concurrency=2, **env)
    try:
        pids = [worker.proc.pid, *worker.children()]
        assert len(pids) == 3
        assert [niceness(pid) for pid in pids] == [expected] * 3
    finally:
        worker.stop()
