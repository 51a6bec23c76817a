"""Fixtures for the sandbox servers: in-process sandboxes on free ports and a webhook receiver.

These tests need no database: the session-wide PostgreSQL check of ``tests/conftest.py`` is replaced by a
no-op here, so ``pytest tests/sandbox`` runs anywhere.
"""

from __future__ import annotations

import json
import threading
import time
from dataclasses import dataclass
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer

import pytest

from channels_app.sandbox import start_sandbox


@pytest.fixture(autouse=True, scope="session")
def _require_postgresql():
    """Shadows the suite-wide database check: the sandbox servers are plain HTTP."""


@dataclass
class Received:
    path: str
    headers: dict[str, str]
    body: bytes

    def json(self):
        return json.loads(self.body)


class Receiver:
    """A stand-in hub: records every POST and answers ``status`` (200 unless told otherwise)."""

    def __init__(self):
        self.calls: list[Received] = []
        self.status = 200
        self._cond = threading.Condition()
        receiver = self

        class Handler(BaseHTTPRequestHandler):
            protocol_version = "HTTP/1.1"

            def log_message(self, *args):
                pass

            def do_POST(self):
                body = self.rfile.read(int(self.headers.get("Content-Length") or 0))
                with receiver._cond:
                    receiver.calls.append(Received(self.path, dict(self.headers.items()), body))
                    receiver._cond.notify_all()
                self.send_response(receiver.status)
                self.send_header("Content-Length", "0")
                self.end_headers()

        self.server = ThreadingHTTPServer(("127.0.0.1", 0), Handler)
        self.server.daemon_threads = True
        self.url = f"http://127.0.0.1:{self.server.server_address[1]}"
        self._thread = threading.Thread(target=self.server.serve_forever, kwargs={"poll_interval": 0.05}, daemon=True)
        self._thread.start()

    def wait_for(self, count: int, timeout: float = 5.0) -> list[Received]:
        deadline = time.monotonic() + timeout
        with self._cond:
            while len(self.calls) < count:
                left = deadline - time.monotonic()
                if left <= 0:
                    raise AssertionError(f"expected {count} webhook deliveries, got {len(self.calls)}")
                self._cond.wait(left)
            return list(self.calls)

    def stop(self):
        self.server.shutdown()
        self.server.server_close()


@pytest.fixture
def receiver():
    hub = Receiver()
    yield hub
    hub.stop()


@pytest.fixture
def sandbox():
    """``sandbox(kind, **kwargs)`` starts one sandbox that is stopped after the test."""
    started = []

    def start(kind, **kwargs):
        box = start_sandbox(kind, **kwargs)
        started.append(box)
        return box

    yield start
    for box in started:
        box.stop()
