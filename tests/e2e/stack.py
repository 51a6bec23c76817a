"""Real processes for end-to-end tests: Celery workers (and beat-like sweeps) against the test database."""

from __future__ import annotations

import os
import signal
import subprocess
import sys
import time
from pathlib import Path

from django.conf import settings
from django.db import connection

ROOT = Path(__file__).resolve().parents[2]
LOG_DIR = ROOT / "tests" / "artifacts"


def process_env(**extra: str) -> dict[str, str]:
    db = connection.settings_dict
    url = f"postgres://{db['USER']}:{db['PASSWORD'] or ''}@{db['HOST'] or '127.0.0.1'}:{db['PORT'] or 5432}/{db['NAME']}"
    env = {**os.environ, "DATABASE_URL": url, "REDIS_URL": settings.REDIS_URL,
           "CELERY_BROKER_URL": settings.CELERY_BROKER_URL, "DJANGO_SETTINGS_MODULE": "hub.settings",
           "PYTHONUNBUFFERED": "1", "DB_CONN_MAX_AGE": "0"}
    env.update(extra)
    return env


def purge_queues() -> None:
    """Drop queued messages, and the wake flags that say a drain or a push is queued: with the flag standing
    and its message gone, nothing would be published until the flag expired."""
    from channels_app.inbound import DRAIN_WAKE_KEY
    from hub.celery import app
    from hub.redis import get_redis

    with app.connection_for_write() as conn:
        for queue in ("default", "inbound", "push", "batch"):
            try:
                conn.default_channel.queue_purge(queue)
            except Exception:  # noqa: BLE001 - a queue that does not exist yet has nothing to purge
                pass
    redis = get_redis()
    redis.delete(DRAIN_WAKE_KEY, *redis.scan_iter("tally:push:wake:*"))


class Worker:
    """A real ``celery worker`` process (prefork pool) consuming the test broker."""

    def __init__(self, name: str = "w1", concurrency: int = 2, queues: str = "default,inbound,push,batch",
                 own_session: bool = True, **env):
        LOG_DIR.mkdir(parents=True, exist_ok=True)
        self.log_path = LOG_DIR / f"worker-{name}.log"
        self.log = open(self.log_path, "ab")  # noqa: SIM115 - closed in stop()
        self.proc = subprocess.Popen(
            [sys.executable, "-m", "celery", "-A", "hub", "worker", "-Q", queues, "-c", str(concurrency),
             "-n", f"{name}@%h", "--without-gossip", "--without-mingle", "--without-heartbeat", "-l", "INFO"],
            cwd=ROOT, env=process_env(**env), stdout=self.log, stderr=subprocess.STDOUT,
            # without a session of its own it still gets its own process group, so stop() and kill() reach it
            start_new_session=own_session, process_group=None if own_session else 0)
        self._wait_ready()

    def _wait_ready(self, timeout: float = 60) -> None:
        deadline = time.monotonic() + timeout
        while time.monotonic() < deadline:
            if self.proc.poll() is not None:
                raise RuntimeError(f"worker exited: {self.log_path.read_text()[-2000:]}")
            if b"ready." in self.log_path.read_bytes():
                return
            time.sleep(0.2)
        raise RuntimeError(f"worker not ready: {self.log_path.read_text()[-2000:]}")

    def children(self) -> list[int]:
        try:
            text = Path(f"/proc/{self.proc.pid}/task/{self.proc.pid}/children").read_text()
        except OSError:
            return []
        return [int(pid) for pid in text.split()]

    def kill_children(self) -> list[int]:
        """SIGKILL the pool processes (what the kernel's OOM killer or a crash does to a task)."""
        pids = self.children()
        for pid in pids:
            os.kill(pid, signal.SIGKILL)
        return pids

    def kill(self) -> None:
        """SIGKILL the whole worker, parent and children, with no chance to clean up."""
        try:
            os.killpg(self.proc.pid, signal.SIGKILL)
        except ProcessLookupError:
            pass
        self.proc.wait(timeout=10)
        self.log.close()

    def stop(self) -> None:
        if self.proc.poll() is None:
            os.killpg(self.proc.pid, signal.SIGTERM)
            try:
                self.proc.wait(timeout=15)
            except subprocess.TimeoutExpired:
                self.kill()
                return
        self.log.close()


def wait_until(predicate, timeout: float = 30, interval: float = 0.1, message: str = "condition"):
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        value = predicate()
        if value:
            return value
        time.sleep(interval)
    raise AssertionError(f"timed out after {timeout}s waiting for {message}")


class Beat:
    """A real ``celery beat`` with the database scheduler and the single-beat guard."""

    def __init__(self, name: str = "beat", **env):
        from hub.beat import LOCK_KEY
        from hub.redis import get_redis
        from hub.schedules import sync_schedules

        sync_schedules()
        get_redis().delete(LOCK_KEY)  # a beat killed by an earlier test leaves its lock behind
        LOG_DIR.mkdir(parents=True, exist_ok=True)
        self.log_path = LOG_DIR / f"{name}.log"
        self.log = open(self.log_path, "ab")  # noqa: SIM115 - closed in stop()
        self.proc = subprocess.Popen(
            [sys.executable, "-m", "celery", "-A", "hub", "beat", "-l", "INFO", "--pidfile="],
            cwd=ROOT, env=process_env(**env), stdout=self.log, stderr=subprocess.STDOUT, start_new_session=True)

    def stop(self) -> None:
        if self.proc.poll() is None:
            os.killpg(self.proc.pid, signal.SIGTERM)
            try:
                self.proc.wait(timeout=15)
            except subprocess.TimeoutExpired:
                os.killpg(self.proc.pid, signal.SIGKILL)
                self.proc.wait(timeout=5)
        self.log.close()
