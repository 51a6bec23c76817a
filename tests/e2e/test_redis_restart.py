"""Redis (broker, wake flags, buckets, beat lock) restarts empty: beat keeps scheduling, and the sweepers it drives
bring back what the restart lost. Found by bench/chaos.py: beat died on the first refused connection."""

from __future__ import annotations

import signal
import socket
import subprocess
import time
from pathlib import Path

import pytest
import redis as redis_lib

from tests.e2e.stack import LOG_DIR, Beat, wait_until

pytestmark = pytest.mark.django_db(transaction=True)


def free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return sock.getsockname()[1]


class PrivateRedis:
    """A redis-server of this test alone, which it can kill and bring back empty on the same port."""

    def __init__(self):
        self.port = free_port()
        self.dir = LOG_DIR / f"redis-{self.port}"
        self.dir.mkdir(parents=True, exist_ok=True)
        self.proc: subprocess.Popen | None = None

    def start(self) -> PrivateRedis:
        self.proc = subprocess.Popen(["redis-server", "--bind", "127.0.0.1", "--port", str(self.port), "--save", "",
                                      "--appendonly", "no", "--dir", str(self.dir)],
                                     stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
        wait_until(lambda: self.client().ping(), timeout=20, message="private redis-server to answer")
        return self

    def client(self) -> redis_lib.Redis:
        return redis_lib.Redis(port=self.port, socket_timeout=1)

    def kill(self) -> None:
        self.proc.send_signal(signal.SIGKILL)
        self.proc.wait(timeout=10)

    def url(self) -> str:
        return f"redis://127.0.0.1:{self.port}/0"


def alive_and_ready(client: redis_lib.Redis) -> bool:
    try:
        return client.ping()
    except redis_lib.RedisError:
        return False


def test_beat_survives_a_redis_restart_and_schedules_again():
    from hub.beat import LOCK_KEY

    server = PrivateRedis().start()
    beat = Beat("beat-redis-restart", REDIS_URL=server.url(), CELERY_BROKER_URL=server.url())
    log: Path = beat.log_path
    try:
        # The lock, then the 1-second reservation expiry landing in the private broker's batch queue.
        wait_until(lambda: server.client().get(LOCK_KEY) is not None, timeout=60, message="beat to take its lock")
        wait_until(lambda: server.client().llen("batch") > 0, timeout=30, message="beat to send a task")
        server.kill()
        time.sleep(3)
        assert beat.proc.poll() is None, log.read_text()[-3000:]
        server.start()  # same port, empty: no lock, no queues
        wait_until(lambda: alive_and_ready(server.client()) and server.client().get(LOCK_KEY) is not None,
                   timeout=30, message="beat to take its lock back")
        wait_until(lambda: server.client().llen("batch") > 0, timeout=30, message="beat to send tasks again")
        assert beat.proc.poll() is None
        assert "Redis unreachable" in log.read_text()
    finally:
        beat.stop()
        if server.proc and server.proc.poll() is None:
            server.kill()
