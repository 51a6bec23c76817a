"""Run code in real threads against the database, the way concurrency tests need it."""

from __future__ import annotations

import contextlib
import threading
from collections.abc import Callable, Iterator

from django.db import connection


def run_together(*targets: Callable[[], object], timeout: float = 60) -> list[BaseException]:
    """Start each target in a thread of its own, wait for all, and return what they raised. Each thread closes
    its database connection when done (Django opens one per thread)."""
    threads, errors = _start(targets)
    _join(threads, timeout)
    return errors


@contextlib.contextmanager
def running(*loops: Callable[[], object], timeout: float = 60) -> Iterator[None]:
    """Each of ``loops`` called over and over, each in a thread of its own, while the block runs (pushers, a shop
    selling beside them); what a thread raised fails the test when the block ends."""
    stop = threading.Event()

    def until_stopped(loop: Callable[[], object]) -> Callable[[], None]:
        def repeat() -> None:
            while not stop.is_set():
                loop()
        return repeat

    threads, errors = _start([until_stopped(loop) for loop in loops])
    try:
        yield
    finally:
        stop.set()
        _join(threads, timeout)
    assert errors == []


def _start(targets) -> tuple[list[threading.Thread], list[BaseException]]:
    errors: list[BaseException] = []

    def guarded(target: Callable[[], object]) -> None:
        try:
            target()
        except BaseException as exc:  # noqa: BLE001 - returned to the test, which asserts on it
            errors.append(exc)
        finally:
            connection.close()

    threads = [threading.Thread(target=guarded, args=(target,)) for target in targets]
    for thread in threads:
        thread.start()
    return threads, errors


def _join(threads: list[threading.Thread], timeout: float) -> None:
    for thread in threads:
        thread.join(timeout)
    assert not any(thread.is_alive() for thread in threads), "a thread is still running"
