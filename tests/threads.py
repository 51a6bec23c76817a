"""Run code in real threads against the database, the way concurrency tests need it."""

from __future__ import annotations

import threading
from collections.abc import Callable

from django.db import connection


def run_together(*targets: Callable[[], object], timeout: float = 60) -> list[BaseException]:
    """Start each target in a thread of its own, wait for all, and return what they raised. Each thread closes
    its database connection when done (Django opens one per thread)."""
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
    for thread in threads:
        thread.join(timeout)
    assert not any(thread.is_alive() for thread in threads), "a thread is still running"
    return errors
