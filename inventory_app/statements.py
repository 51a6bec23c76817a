"""The writes of one stock operation, sent to the database together.

A reservation writes six tables (reservation, lines, stock rows, ledger, listings, the caller's key).
One statement per round trip cost more CPU in the driver and the server than the writes themselves,
so each operation collects its statements here and sends them at the end: on PostgreSQL as one
multi-statement query (psycopg's client-side binding sends it in one round trip and returns one result
per statement), on SQLite one by one. Rows read after a write must wait for ``run()``: nothing in an
operation reads a row it has written, and ``after`` callbacks (which may read) run once the batch has.
"""

from __future__ import annotations

from collections.abc import Callable, Sequence
from typing import Any

from django.db import connection

RowsCallback = Callable[[list[tuple]], None]


class Statements:
    def __init__(self):
        self._pending: list[tuple[str, Sequence[Any], RowsCallback | None]] = []
        self._after: list[Callable[[], None]] = []

    def add(self, sql: str, params: Sequence[Any] = (), on_rows: RowsCallback | None = None) -> None:
        """Queue a statement; ``on_rows`` receives its rows (for RETURNING or SELECT) when it runs."""
        self._pending.append((sql, params, on_rows))

    def after(self, callback: Callable[[], None]) -> None:
        """Run ``callback`` once the queued statements have run."""
        self._after.append(callback)

    def run(self) -> None:
        pending, self._pending = self._pending, []
        if pending:
            with connection.cursor() as cursor:
                if connection.vendor == "postgresql" and len(pending) > 1:
                    cursor.execute("; ".join(sql for sql, _, _ in pending),
                                   [value for _, params, _ in pending for value in params])
                    for index, (_, _, on_rows) in enumerate(pending):
                        if index:
                            cursor.nextset()
                        if on_rows is not None:
                            on_rows(cursor.fetchall())
                else:
                    for sql, params, on_rows in pending:
                        cursor.execute(sql, params)
                        if on_rows is not None:
                            on_rows(cursor.fetchall())
        callbacks, self._after = self._after, []
        for callback in callbacks:
            callback()
