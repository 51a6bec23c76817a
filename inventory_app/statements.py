"""The statements of one stock operation, sent to the database together and prepared once per connection.

A reservation writes six tables (reservation, lines, stock rows, ledger, listings, the caller's key).
One statement per round trip cost more CPU in the driver and the server than the writes themselves,
so each operation collects its statements here and sends them at the end. On PostgreSQL they go in one
pipeline (libpq pipeline mode: one round trip for all of them, a result per statement) as prepared
statements, so the server parses and plans each distinct statement once per connection rather than on
every call; ``fetch`` does the same for the reads on the hot path, and the first statement of a
transaction carries its BEGIN in the same round trip. SQLite runs them one by one.

Rows read after a write must wait for ``run()``: nothing in an operation reads a row it has written, and
``after`` callbacks (which may read) run once the batch has.

These statements bypass Django's cursor wrapper (its client-side binding cannot prepare), so this module
does what the wrapper would: database errors become Django's, ``connection.execute_wrapper`` hooks run,
and the query log (``CaptureQueriesContext``, ``DEBUG``) records each statement.
"""

from __future__ import annotations

import contextlib
import functools
import itertools
import time
from collections.abc import Callable, Iterator, Sequence
from contextvars import ContextVar
from typing import Any

import psycopg
from django.conf import settings
from django.db import DEFAULT_DB_ALIAS, DatabaseError, Error, connections, transaction

RowsCallback = Callable[[list[tuple]], None]


# Where ``Statements.defer`` hands its statements, inside ``deferred()``.
_deferred_sink: ContextVar[list | None] = ContextVar("deferred_statements", default=None)


class Statements:
    def __init__(self):
        self._pending: list[tuple[str, Sequence[Any], RowsCallback | None]] = []
        self._held: list[tuple[str, Sequence[Any], RowsCallback | None]] = []
        self._after: list[Callable[[], None]] = []

    def add(self, sql: str, params: Sequence[Any] = (), on_rows: RowsCallback | None = None) -> None:
        """Queue a statement; ``on_rows`` receives its rows (for RETURNING or SELECT) when it runs."""
        self._pending.append((sql, params, on_rows))

    def defer(self, sql: str, params: Sequence[Any] = (), on_rows: RowsCallback | None = None) -> None:
        """``add``, except inside ``deferred()``: there the statement is held, and handed to that block's owner
        once these statements have run (``run``, or ``hand_on`` after a ``run(hand_on=False)``), to go out with
        its last statements. Held statements are dropped with statements that fail, or whose savepoint is
        rolled back (``savepoint`` forgets what was handed on inside it)."""
        if _deferred_sink.get() is None:
            self.add(sql, params, on_rows)
        else:
            self._held.append((sql, params, on_rows))

    def hand_on(self) -> None:
        """Give the held statements to the ``deferred()`` block (see ``defer``)."""
        held, self._held = self._held, []
        if held:
            sink = _deferred_sink.get()
            if sink is None:
                raise RuntimeError("statements held for a deferred() block that has ended")
            sink.extend(held)

    def after(self, callback: Callable[[], None]) -> None:
        """Run ``callback`` once the queued statements have run."""
        self._after.append(callback)

    def run(self, *, hand_on: bool = True) -> None:
        """Send the queued statements; then hand on the held ones (``defer``) unless ``hand_on`` is False, for a
        caller that may still undo what ran (it calls ``hand_on`` once it will not)."""
        pending, self._pending = self._pending, []
        if pending:
            db = connections[DEFAULT_DB_ALIAS]
            if db.vendor == "postgresql":
                rows = _pipelined(db, [(sql, params, on_rows is not None) for sql, params, on_rows in pending])
                for (_, _, on_rows), result in zip(pending, rows, strict=True):
                    if on_rows is not None:
                        on_rows(result)
            else:
                with db.cursor() as cursor:
                    for sql, params, on_rows in pending:
                        cursor.execute(sql, params)
                        if on_rows is not None:
                            on_rows(cursor.fetchall())
        if hand_on:
            self.hand_on()
        callbacks, self._after = self._after, []
        for callback in callbacks:
            callback()


# What a rolled-back ``savepoint`` block tells the caches kept of rows this transaction holds (``on_rollback``).
_rollback_callbacks: ContextVar[tuple[Callable[[], None], ...]] = ContextVar("rollback_callbacks", default=())


@contextlib.contextmanager
def on_rollback(callback: Callable[[], None]) -> Iterator[None]:
    """Inside, a ``savepoint`` block that rolls back calls ``callback``: for a cache of what this transaction wrote
    (``stock.rows_held``), which the rollback made wrong."""
    token = _rollback_callbacks.set((*_rollback_callbacks.get(), callback))
    try:
        yield
    finally:
        _rollback_callbacks.reset(token)


@contextlib.contextmanager
def deferred() -> Iterator[list[tuple[str, Sequence[Any], RowsCallback | None]]]:
    """Statements queued with ``Statements.defer`` inside are collected in the list this yields, in the order
    they were handed on, for the caller to send with its last statements.

    Why: an inbox drain's batch of orders notes each sale on the selling channel's listing. Written as each
    event went, those listings were locked from the batch's first event to its commit, and every pusher
    recording a push of them waited that long; locked in the batch's order, not id order, they deadlocked
    against those records unless every listing was locked up front."""
    sink: list[tuple[str, Sequence[Any], RowsCallback | None]] = []
    token = _deferred_sink.set(sink)
    try:
        yield sink
    finally:
        _deferred_sink.reset(token)


def fetch(sql: str, params: Sequence[Any] = ()) -> list[tuple]:
    """The rows of one read on a hot path (prepared on PostgreSQL)."""
    db = connections[DEFAULT_DB_ALIAS]
    if db.vendor == "postgresql":
        db.ensure_connection()
        raw = db.connection
        if (raw.info.transaction_status == psycopg.pq.TransactionStatus.IDLE and not raw.autocommit) or _waiting():
            # The transaction's first statement, or a savepoint's (``savepoint``): pipelined, its BEGIN or SAVEPOINT
            # travels with it.
            return _pipelined(db, [(sql, params, True)])[0]
        db.validate_no_broken_transaction()
        with db.wrap_database_errors, psycopg.Cursor(raw) as cursor:
            _execute(db, cursor, sql, params)
            return cursor.fetchall()
    with db.cursor() as cursor:
        cursor.execute(sql, params)
        return cursor.fetchall()


def rows_cte(name: str, columns: Sequence[tuple[str, str]], rows: Sequence[Sequence[Any]]) -> tuple[str, list]:
    """A CTE ``name(columns)`` holding ``rows`` (``columns``: name and PostgreSQL type of each), and its parameters.

    On PostgreSQL the rows travel as one array per column (``unnest``): the statement has one shape whatever
    the number of rows, so it is prepared once per connection and its values are bound by the server; a
    ``VALUES`` list or a ``CASE id WHEN ...`` per row made a new statement for each size, parsed and planned
    on every call, and its parameters were quoted into the text by the driver. Elsewhere (SQLite) a VALUES list."""
    names = ", ".join(column for column, _ in columns)
    if connections[DEFAULT_DB_ALIAS].vendor == "postgresql":
        arrays = ", ".join(f"%s::{kind}[]" for _, kind in columns)
        return (f"{name} AS (SELECT * FROM unnest({arrays}) AS {name}({names}))",
                [[row[i] for row in rows] for i in range(len(columns))])
    one = "(" + ", ".join(["%s"] * len(columns)) + ")"
    return f"{name}({names}) AS (VALUES {', '.join([one] * len(rows))})", [value for row in rows for value in row]


def columns(model, alias: str = "") -> str:
    """The model's concrete columns in field order, the order ``instances`` reads them in."""
    return ", ".join(f"{alias}.{column}" if alias else column for column in _loader(model)[0])


def instances(model, rows: Sequence[Sequence[Any]], start: int = 0) -> list:
    """Model instances from rows holding ``columns(model)`` from ``start`` on, converted as the ORM converts
    them (its database converters and fields' ``from_db_value``), without building an ORM query: on the hot
    paths building the query cost more than the database spent answering it."""
    db = connections[DEFAULT_DB_ALIAS]
    _, names, converters = _loader(model)
    end = start + len(names)
    result = []
    for row in rows:
        values = list(row[start:end])
        for index, expression, functions in converters:
            for convert in functions:
                values[index] = convert(values[index], expression, db)
        result.append(model.from_db(db.alias, names, values))
    return result


@functools.cache
def _loader(model) -> tuple[list[str], list[str], list[tuple[int, Any, list]]]:
    db = connections[DEFAULT_DB_ALIAS]
    fields = model._meta.concrete_fields
    converters = []
    for index, field in enumerate(fields):
        expression = field.get_col(model._meta.db_table)
        functions = db.ops.get_db_converters(expression) + expression.get_db_converters(db)
        if functions:
            converters.append((index, expression, functions))
    return [db.ops.quote_name(f.column) for f in fields], [f.attname for f in fields], converters


def _pipelined(db, statements: list[tuple[str, Sequence[Any], bool]]) -> list[list[tuple]]:
    db.ensure_connection()
    db.validate_no_broken_transaction()
    opening = _take_waiting()
    raw = db.connection
    shared = psycopg.Cursor(raw)  # for statements whose rows nobody reads
    cursors = [psycopg.Cursor(raw) if wants_rows else shared for _, _, wants_rows in statements]
    try:
        with db.wrap_database_errors, raw.pipeline():
            if opening:  # a savepoint's (``savepoint``): unprepared, each has a name of its own
                _execute(db, shared, opening, (), prepare=False)
            for cursor, (sql, params, _) in zip(cursors, statements, strict=True):
                _execute(db, cursor, sql, params)
            # Fetching the first result sends the whole pipeline; the others are then read in order.
            return [cursor.fetchall() if wants_rows else []
                    for cursor, (_, _, wants_rows) in zip(cursors, statements, strict=True)]
    finally:
        shared.close()
        for cursor in cursors:
            if cursor is not shared:
                cursor.close()


def _execute(db, cursor, sql: str, params: Sequence[Any], *, prepare: bool = True) -> None:
    # ``db`` is the connection itself, not django.db.connection: each attribute of that proxy is a
    # context-local lookup, and these run several times per stock operation.
    def execute(sql, params, many, context):
        return cursor.execute(sql, params, prepare=prepare)

    for wrapper in reversed(db.execute_wrappers):
        execute = functools.partial(wrapper, execute)
    started = time.monotonic()
    execute(sql, params, False, {"connection": db, "cursor": cursor})
    if db.queries_logged:
        db.queries_log.append({"sql": sql, "time": f"{time.monotonic() - started:.3f}"})


# The savepoint ``savepoint`` opened and not sent yet: [its SAVEPOINT statement, False while waiting, None while
# being sent, True once it went out].
_waiting_savepoint: ContextVar[list | None] = ContextVar("waiting_savepoint", default=None)
# Each block's savepoint has a name of its own: a ROLLBACK TO that names a savepoint which never went out fails (and
# the whole transaction rolls back) instead of landing on an earlier block's savepoint of the same name and undoing
# work already counted as done.
_savepoint_numbers = itertools.count()


def _waiting() -> bool:
    state = _waiting_savepoint.get()
    return state is not None and state[1] is False


def _take_waiting() -> str | None:
    """The SAVEPOINT statement to send before the next one, once (``_pipelined`` sends it first, unprepared)."""
    state = _waiting_savepoint.get()
    if state is None or state[1] is not False:
        return None
    state[1] = True
    return state[0]


def _send_waiting(db) -> None:
    """Send the waiting savepoint on its own, through a client cursor of Django's (never a server-side one)."""
    state = _waiting_savepoint.get()
    state[1] = None
    try:
        with db.cursor() as cursor:
            cursor.execute(state[0])
    except BaseException:
        state[1] = False
        raise
    state[1] = True


def _savepoint_first(execute, sql, params, many, context):
    # A statement through Django's cursor: the waiting savepoint goes first, in a round trip of its own.
    if _waiting():
        _send_waiting(context["connection"])
    return execute(sql, params, many, context)


def _forgetting_what_the_block_hands_on() -> Callable[[], None]:
    """For a ``savepoint`` block about to start: what its rollback must also undo on our side, the statements
    ``Statements.defer`` hands on inside it and the caches of rows it wrote (``on_rollback``)."""
    sink = _deferred_sink.get()
    handed_on = len(sink) if sink is not None else 0

    def forget() -> None:
        if sink is not None:
            del sink[handed_on:]
        for callback in _rollback_callbacks.get():
            callback()

    return forget


@contextlib.contextmanager
def savepoint(name: str) -> Iterator[None]:
    """``transaction.atomic()`` for a block inside an open transaction on PostgreSQL, in no round trip of its own:
    the SAVEPOINT goes out with the block's first statement (in the same pipeline when it is one of ours, just
    before it when it goes through Django's cursor), and the savepoint is not released (it ends with the
    transaction; PostgreSQL counts it the same, released or not). A block that raises is rolled back to it, with
    what Django would undo: callbacks it registered with ``on_commit``, and the broken-transaction flag an inner
    ``atomic(savepoint=False)`` left. A block that sent nothing has nothing to roll back; one that ends with the
    transaction in error (a database error caught inside) is rolled back and raises, as Django's release would.
    Elsewhere (SQLite, or outside a transaction) it is ``transaction.atomic()``.

    An inbox drain applies each event in one of these: SAVEPOINT and RELEASE were two of the eight round trips
    of each order it applied."""
    db = connections[DEFAULT_DB_ALIAS]
    forget = _forgetting_what_the_block_hands_on()
    if db.vendor != "postgresql" or not db.in_atomic_block or db.needs_rollback:
        try:
            with transaction.atomic():
                yield
        except BaseException:
            forget()
            raise
        return
    if _waiting():  # inside a block that has sent nothing yet: its savepoint must exist before this one
        _send_waiting(db)
    named = f"{name}_{next(_savepoint_numbers)}"
    state = [f"SAVEPOINT {named}", False]
    token = _waiting_savepoint.set(state)
    callbacks = len(db.run_on_commit)
    failed = True
    try:
        with db.execute_wrapper(_savepoint_first):
            yield
        if state[1] and db.connection.info.transaction_status == psycopg.pq.TransactionStatus.INERROR:
            raise DatabaseError(f"the transaction failed inside savepoint {named} and the block went on")
        failed = db.needs_rollback  # as Django's atomic: a block that swallowed an inner atomic's error is undone
    finally:
        _waiting_savepoint.reset(token)
        if failed:
            db.needs_rollback = False
            del db.run_on_commit[callbacks:]
            forget()
            if state[1] and not db.closed_in_transaction:
                try:
                    with db.cursor() as cursor:
                        cursor.execute(f"ROLLBACK TO SAVEPOINT {named}")
                except Error:
                    db.needs_rollback = True  # the transaction is broken: it rolls back as a whole


@contextlib.contextmanager
def read_snapshot() -> Iterator[None]:
    """The reads inside see the database at one moment (PostgreSQL: a REPEATABLE READ, READ ONLY transaction),
    where numbers from two tables must agree and a write committing between two reads would not. Inside an
    open transaction the caller's isolation stands; SQLite serialises writers anyway."""
    db = connections[DEFAULT_DB_ALIAS]
    if db.vendor != "postgresql" or db.in_atomic_block:
        yield
        return
    with transaction.atomic():
        with db.cursor() as cursor:
            cursor.execute("SET TRANSACTION ISOLATION LEVEL REPEATABLE READ, READ ONLY")
        yield


@contextlib.contextmanager
def commits_without_flush_wait() -> Iterator[None]:
    """Commits inside return without waiting for PostgreSQL to flush them to disk (``synchronous_commit``
    off for this connection, then back to the server's setting), for bookkeeping that a lost commit only
    repeats. What a commit made is still atomic and in order; a crash of PostgreSQL or of its host (or a
    failover to a synchronous standby, which these commits do not wait for either) can lose the last
    fraction of a second of them, as if they had not run. Never around a write that is the record of a sale
    or a stock change (receipts, the drain, stock operations): those wait for the disk. Behind a
    transaction-pooling proxy (``settings.DB_TRANSACTION_POOLER``) the SET would outlive this block on a
    server connection others get next, so nothing changes there.

    A push round commits three times (lease, attempt, record). While this VM's disk was slow each waited
    about 1 ms for the flush, a third of a one-channel round; at 50 orders/s (`bench/propagation.py`, back to
    back) p50 lag fell from 258-268 to 118-133 ms in such a window, and stayed about even (67-80 against
    61-79 ms, p99 776 against 441-509) in a fast one."""
    db = connections[DEFAULT_DB_ALIAS]
    if db.vendor != "postgresql" or settings.DB_TRANSACTION_POOLER:
        yield
        return
    with db.cursor() as cursor:
        cursor.execute("SET synchronous_commit = off")
    try:
        yield
    finally:
        try:
            with db.cursor() as cursor:
                cursor.execute("RESET synchronous_commit")
        except Exception:  # noqa: BLE001 - a broken connection is dropped; an aborted transaction undoes the SET
            if db.connection is not None and not db.in_atomic_block:
                db.close()  # never hand on a connection whose commits might not wait
