"""Every stock write in Tally goes through the functions in this module.

Views, admin actions, Celery tasks and webhook processing all call these; none
of them touch ``StockLevel`` directly. Each operation:

* runs in one transaction (a savepoint when the caller already has one),
* locks the stock rows it touches in primary-key order (``locking``),
* appends one ledger row per stock row it changes, so ``on_hand`` always equals
  the sum of the ledger's ``on_hand_delta`` (and likewise for ``reserved``),
* is idempotent on an optional caller ``key``: the same key with the same
  request returns the first result; the same key with another request raises
  ``IdempotencyMismatch``,
* tells the registered listeners (channel sync) which SKUs changed, inside the
  same transaction, so stock and the channels' desired quantities commit together.
"""

from __future__ import annotations

import contextlib
import hashlib
import json
import uuid
from collections import defaultdict
from collections.abc import Callable, Collection, Iterable, Iterator, Sequence
from contextvars import ContextVar
from dataclasses import astuple, dataclass
from datetime import datetime, timedelta
from typing import Any

from django.conf import settings
from django.core.exceptions import ValidationError
from django.db import DatabaseError, connection, transaction
from django.utils import timezone

from hub import events
from inventory_app.errors import (
    IdempotencyMismatch,
    InsufficientStock,
    InvalidState,
    NotFound,
    StockError,
    UnknownLocation,
    UnknownSku,
)
from inventory_app.locking import (
    LockedRow,
    ensure_stock_rows,
    lock_by_codes_sql,
    lock_rows_of_skus_sql,
    lock_stock_rows,
)
from inventory_app.metrics import RESERVATIONS
from inventory_app.models import (
    BundleComponent,
    CountWatermark,
    LedgerKind,
    Location,
    OperationRecord,
    Reservation,
    ReservationLine,
    ReservationStatus,
    Sku,
    StockLedgerEntry,
    StockLevel,
    StockPolicy,
)
from inventory_app.statements import Statements, on_rollback

__all__ = [
    "LineRequest",
    "StockError",
    "adjust",
    "commit",
    "count",
    "expire_due",
    "on_stock_changed",
    "receive",
    "release",
    "reserve",
    "restock",
    "sell",
    "set_location_active",
    "set_sku_active",
    "set_stock_policy",
    "transfer",
]

StockListener = Callable[[set[int], dict[str, Any]], None]
_listeners: list[StockListener] = []


def on_stock_changed(listener: StockListener) -> StockListener:
    """Register ``listener(sku_ids, context)``; it runs inside each operation's transaction.

    ``context["writes"]`` is the operation's batch (``inventory_app.statements``): a listener adds its
    statements there, and reads current numbers only in ``writes.after`` (before it, this operation's
    own writes have not run yet)."""
    if listener not in _listeners:
        _listeners.append(listener)
    return listener


def _stock_changed(sku_ids: set[int], *, writes: Statements, source: str, occurred_at: datetime | None = None,
                   available_changed: bool = True, sold: dict[int, int] | None = None) -> None:
    # available_changed=False: on_hand and reserved moved together (a commit), so no channel's number moves.
    # sold: units of each plain SKU the channel named by ``source`` sold (its ring fence, if any, is consumed).
    context = {"source": source, "occurred_at": occurred_at or timezone.now(), "available_changed": available_changed,
               "writes": writes, "sold": sold}
    for listener in _listeners:
        listener(set(sku_ids), context)


@dataclass(frozen=True)
class LineRequest:
    sku: str
    quantity: int


# --- idempotency -----------------------------------------------------------------------------


def _fingerprint(operation: str, payload: dict) -> str:
    body = json.dumps({"op": operation, **payload}, sort_keys=True, default=str)
    return hashlib.sha256(body.encode()).hexdigest()


class _KeyTaken(Exception):
    """Another call recorded this key while ours worked: our work is rolled back and theirs answers."""


def _idempotent(operation: str, key: str | None, payload: dict, work: Callable[[Statements], dict], *,
                reads_first: bool = False) -> dict:
    """Run ``work(writes)`` in one transaction; its batched writes and the caller's key go in one round trip.

    The key is written, not looked up first: a new key (nearly every call) costs no read. A key already
    recorded rolls the work back and answers with the first result, as does a key whose work now fails
    (a retry of a reservation that took the last unit must get that reservation, not "insufficient stock").
    A concurrent call with the same key waits on the key's index entry and then answers with the winner's.

    ``reads_first``: ``work`` only reads and locks, and queues every write in ``writes``. Inside a caller's
    transaction on PostgreSQL the operation's savepoint then goes out with its writes, first in the same
    pipeline, instead of a round trip of its own before the reads and another to release it: two of the
    ten round trips of each order an inbox drain applies. Left unreleased, it ends with the caller's."""
    fingerprint = _fingerprint(operation, payload) if key else ""
    try:
        if reads_first and connection.vendor == "postgresql" and connection.in_atomic_block:
            writes = Statements()
            writes.add(f"SAVEPOINT {_SAVEPOINT}")  # runs first in the pipeline, after work's reads and locks
            return _run(operation, key, fingerprint, work, writes, undo=_roll_back_operation)
        with transaction.atomic():
            return _run(operation, key, fingerprint, work, Statements())
    except (StockError, _KeyTaken):
        previous = _previous_result(key) if key else None
        if previous is None:
            raise
        return _replay(previous, operation, fingerprint, key)


_RECORD_KEY_SQL = (f"INSERT INTO {OperationRecord._meta.db_table} (key, operation, request_hash, result, created_at) "
                   "VALUES (%s, %s, %s, %s, %s) ON CONFLICT (key) DO NOTHING RETURNING key")
# One name for every operation's savepoint: ROLLBACK TO names the latest, and one statement text is prepared once.
_SAVEPOINT = "tally_operation"


def _run(operation: str, key: str | None, fingerprint: str, work: Callable[[Statements], dict], writes: Statements,
         undo: Callable[[], None] | None = None) -> dict:
    """``work``, its writes and the caller's key; ``undo`` takes the writes back when they fail or the key is
    taken (None: the enclosing atomic block does)."""
    result = work(writes)
    recorded: list[tuple] = []
    if key:
        writes.add(_RECORD_KEY_SQL, [key, operation, fingerprint, json.dumps(result), _db_time(timezone.now())],
                   on_rows=recorded.extend)
    try:
        writes.run(hand_on=False)  # statements the caller deferred go on only once the key is ours
        if key and not recorded:
            raise _KeyTaken(key)
        writes.hand_on()
    except BaseException:
        if undo is not None:
            # Back to before the operation, for a caller that goes on; if even that fails, the caller's own
            # transaction is broken and rolls back with the error raised here.
            with contextlib.suppress(DatabaseError):
                undo()
        raise
    return result


def _roll_back_operation() -> None:
    with connection.cursor() as cursor:
        cursor.execute(f"ROLLBACK TO SAVEPOINT {_SAVEPOINT}; RELEASE SAVEPOINT {_SAVEPOINT}")


def _previous_result(key: str) -> tuple[str, str, dict] | None:
    with connection.cursor() as cursor:
        cursor.execute(
            f"SELECT operation, request_hash, result FROM {OperationRecord._meta.db_table} WHERE key = %s", [key]
        )
        row = cursor.fetchone()
    if row is None:
        return None
    operation, request_hash, result = row
    return operation, request_hash, (json.loads(result) if isinstance(result, str) else result)


def _replay(previous: tuple[str, str, dict], operation: str, fingerprint: str, key: str) -> dict:
    previous_operation, previous_hash, result = previous
    if previous_operation != operation or previous_hash != fingerprint:
        raise IdempotencyMismatch(
            f"Key {key!r} was already used for a different {previous_operation} request.", key=key
        )
    return {**result, "replayed": True}


def was_applied(key: str) -> bool:
    """Has an operation with this caller key been applied?"""
    return _previous_result(key) is not None


def mark_applied(*, key: str, operation: str, payload: dict) -> None:
    """Record a caller key for a composite operation (e.g. a refund line spanning several restocks)."""
    OperationRecord.objects.create(key=key, operation=operation, request_hash=_fingerprint(operation, payload),
                                   result=payload)


# --- lookups ---------------------------------------------------------------------------------


def _get_sku(code: str | Sku) -> Sku:
    if isinstance(code, Sku):
        return code
    try:
        return Sku.objects.get(code=code)
    except Sku.DoesNotExist:
        raise UnknownSku(f"Unknown SKU {code!r}.", sku=code) from None


def _get_location(code: str | Location) -> Location:
    if isinstance(code, Location):
        return code
    try:
        return Location.objects.get(code=code)
    except Location.DoesNotExist:
        raise UnknownLocation(f"Unknown location {code!r}.", location=code) from None


def _write(
    row: LockedRow,
    writes: Statements,
    *,
    kind: str,
    on_hand_delta: int = 0,
    reserved_delta: int = 0,
    reference: str = "",
    reason: str = "",
    source: str = "",
    key: str | None = None,
    occurred_at: datetime | None = None,
    now: datetime,
) -> StockLedgerEntry:
    """Apply deltas to a locked row (the UPDATE joins ``writes``) and return its ledger entry (saved by
    ``_append_ledger``)."""
    row.on_hand += on_hand_delta
    row.reserved += reserved_delta
    if on_hand_delta or reserved_delta:
        writes.add(f"UPDATE {StockLevel._meta.db_table} SET on_hand = %s, reserved = %s, updated_at = %s WHERE id = %s",
                   [row.on_hand, row.reserved, _db_time(now), row.id])
    return StockLedgerEntry(
        sku_id=row.sku_id,
        location_id=row.location_id,
        kind=kind,
        on_hand_delta=on_hand_delta,
        reserved_delta=reserved_delta,
        on_hand_after=row.on_hand,
        reserved_after=row.reserved,
        reference=reference[:255],
        reason=reason[:255],
        source=source[:64],
        operation_key=(key or "")[:255],
        occurred_at=occurred_at or now,
        recorded_at=now,
    )


_LEDGER_COLUMNS = ("sku_id", "location_id", "kind", "on_hand_delta", "reserved_delta", "on_hand_after",
                   "reserved_after", "reference", "reason", "source", "operation_key", "occurred_at", "recorded_at")


def _append_ledger(entries: Iterable[StockLedgerEntry], writes: Statements) -> None:
    rows = [[_db_time(value) if isinstance(value, datetime) else value
             for value in (getattr(entry, column) for column in _LEDGER_COLUMNS)] for entry in entries]
    if not rows:
        return
    row_sql = f"({', '.join(['%s'] * len(_LEDGER_COLUMNS))})"
    writes.add(f"INSERT INTO {StockLedgerEntry._meta.db_table} ({', '.join(_LEDGER_COLUMNS)}) "
               f"VALUES {', '.join([row_sql] * len(rows))}", [value for row in rows for value in row])


def _db_time(value: datetime):
    # Raw statements bypass the ORM's conversion: SQLite stores naive UTC text, PostgreSQL takes the datetime.
    return connection.ops.adapt_datetimefield_value(value)


def _positive(quantity: int, what: str = "quantity") -> int:
    if not isinstance(quantity, int) or isinstance(quantity, bool) or quantity <= 0:
        raise StockError(f"{what} must be a positive whole number, got {quantity!r}.", field=what)
    return quantity


def _single_row(sku: Sku, location: Location) -> LockedRow:
    if sku.components.exists():
        raise StockError(f"{sku.code} is a bundle; change the stock of its components.", sku=sku.code)
    ensure_stock_rows([(sku, location)])
    (row,) = lock_stock_rows(sku_ids=[sku.id], location_ids=[location.id])
    return row


# --- on-hand changes -------------------------------------------------------------------------


def receive(
    *,
    sku: str | Sku,
    location: str | Location,
    quantity: int,
    reference: str = "",
    source: str = "",
    key: str | None = None,
    occurred_at: datetime | None = None,
) -> dict:
    """Goods arrived: on_hand goes up."""
    return _change_on_hand(
        LedgerKind.RECEIVE, sku=sku, location=location, delta=_positive(quantity), reason="received",
        reference=reference, source=source, key=key, occurred_at=occurred_at,
    )


def restock(
    *,
    sku: str | Sku,
    location: str | Location,
    quantity: int,
    reference: str = "",
    source: str = "",
    key: str | None = None,
    occurred_at: datetime | None = None,
) -> dict:
    """Sold goods came back to sellable stock (a cancellation or a refund with restock)."""
    return _change_on_hand(
        LedgerKind.RESTOCK, sku=sku, location=location, delta=_positive(quantity), reason="restocked",
        reference=reference, source=source, key=key, occurred_at=occurred_at,
    )


def adjust(
    *,
    sku: str | Sku,
    location: str | Location,
    delta: int,
    reason: str,
    reference: str = "",
    source: str = "",
    key: str | None = None,
    occurred_at: datetime | None = None,
) -> dict:
    """A relative correction (damage, shrinkage, found stock). Cannot uncover reserved units."""
    if not isinstance(delta, int) or isinstance(delta, bool) or delta == 0:
        raise StockError("delta must be a non-zero whole number.", field="delta")
    return _change_on_hand(
        LedgerKind.ADJUST, sku=sku, location=location, delta=delta, reason=reason,
        reference=reference, source=source, key=key, occurred_at=occurred_at,
    )


def _change_on_hand(kind: str, *, sku, location, delta: int, reason: str, reference: str, source: str,
                    key: str | None, occurred_at: datetime | None) -> dict:
    sku_obj, location_obj = _get_sku(sku), _get_location(location)
    payload = {"sku": sku_obj.code, "location": location_obj.code, "delta": delta, "reference": reference}

    def work(writes: Statements) -> dict:
        now = timezone.now()
        row = _single_row(sku_obj, location_obj)
        if row.on_hand + delta < row.reserved - row.allowance:
            raise InsufficientStock(
                f"Cannot remove {-delta} of {sku_obj.code} at {location_obj.code}: "
                f"{row.on_hand} on hand, {row.reserved} reserved.",
                sku=sku_obj.code, location=location_obj.code, available=max(row.on_hand - row.reserved, 0),
            )
        _append_ledger([_write(row, writes, kind=kind, on_hand_delta=delta, reference=reference, reason=reason,
                               source=source, key=key, occurred_at=occurred_at, now=now)], writes)
        _stock_changed({sku_obj.id}, writes=writes, source=source, occurred_at=occurred_at)
        return _row_result(row, sku_obj, location_obj)

    return _idempotent(kind, key, payload, work)


def count(
    *,
    sku: str | Sku,
    location: str | Location,
    on_hand: int,
    as_of: datetime,
    source: str,
    reference: str = "",
    key: str | None = None,
) -> dict:
    """An absolute count ("there are N here as of T").

    A count older than (or as old as) the last one applied for the same
    (sku, location, source) is ignored and recorded as stale, so reordered
    deliveries of absolute numbers can never move stock backwards in time.
    """
    if not isinstance(on_hand, int) or isinstance(on_hand, bool) or on_hand < 0:
        raise StockError("on_hand must be a whole number >= 0.", field="on_hand")
    if as_of is None or timezone.is_naive(as_of):
        raise StockError("as_of must be an aware date-time.", field="as_of")
    sku_obj, location_obj = _get_sku(sku), _get_location(location)
    payload = {"sku": sku_obj.code, "location": location_obj.code, "on_hand": on_hand,
               "as_of": as_of.isoformat(), "source": source}

    def work(writes: Statements) -> dict:
        now = timezone.now()
        row = _single_row(sku_obj, location_obj)
        # The stock row lock serialises counts for this pair, so reading the
        # watermark after it is race-free.
        watermark = CountWatermark.objects.filter(sku=sku_obj, location=location_obj, source=source).first()
        if watermark is not None and as_of <= watermark.last_as_of:
            _append_ledger([_write(row, writes, kind=LedgerKind.COUNT_STALE, reference=reference, source=source, key=key,
                                   reason=f"count {on_hand} as of {as_of.isoformat()} is older than "
                                          f"{watermark.last_as_of.isoformat()}", occurred_at=as_of, now=now)], writes)
            return {**_row_result(row, sku_obj, location_obj), "applied": False, "stale": True}
        delta = on_hand - row.on_hand
        if on_hand < row.reserved - row.allowance:
            raise InsufficientStock(
                f"Count of {on_hand} for {sku_obj.code} at {location_obj.code} is below the "
                f"{row.reserved} units reserved there; release reservations first.",
                sku=sku_obj.code, location=location_obj.code, reserved=row.reserved,
            )
        if watermark is None:
            CountWatermark.objects.create(sku=sku_obj, location=location_obj, source=source, last_as_of=as_of)
        else:
            CountWatermark.objects.filter(pk=watermark.pk).update(last_as_of=as_of)
        _append_ledger([_write(row, writes, kind=LedgerKind.COUNT, on_hand_delta=delta, reference=reference, source=source,
                               key=key, reason=f"counted {on_hand}", occurred_at=as_of, now=now)], writes)
        if delta:
            _stock_changed({sku_obj.id}, writes=writes, source=source, occurred_at=as_of)
        return {**_row_result(row, sku_obj, location_obj), "applied": True, "stale": False}

    return _idempotent("count", key, payload, work)


def transfer(
    *,
    sku: str | Sku,
    from_location: str | Location,
    to_location: str | Location,
    quantity: int,
    reference: str = "",
    source: str = "",
    key: str | None = None,
) -> dict:
    """Move available units between locations (both rows locked in id order)."""
    sku_obj = _get_sku(sku)
    origin, destination = _get_location(from_location), _get_location(to_location)
    _positive(quantity)
    if origin.id == destination.id:
        raise StockError("A transfer needs two different locations.", field="to_location")
    payload = {"sku": sku_obj.code, "from": origin.code, "to": destination.code, "quantity": quantity}

    def work(writes: Statements) -> dict:
        now = timezone.now()
        if sku_obj.components.exists():
            raise StockError(f"{sku_obj.code} is a bundle; transfer its components.", sku=sku_obj.code)
        ensure_stock_rows([(sku_obj, origin), (sku_obj, destination)])
        rows = {r.location_id: r for r in lock_stock_rows(sku_ids=[sku_obj.id],
                                                          location_ids=[origin.id, destination.id])}
        out_row, in_row = rows[origin.id], rows[destination.id]
        if out_row.on_hand - out_row.reserved < quantity:
            raise InsufficientStock(
                f"Only {max(out_row.on_hand - out_row.reserved, 0)} of {sku_obj.code} free at {origin.code}.",
                sku=sku_obj.code, location=origin.code, available=max(out_row.on_hand - out_row.reserved, 0),
            )
        _append_ledger([
            _write(out_row, writes, kind=LedgerKind.TRANSFER_OUT, on_hand_delta=-quantity, reference=reference,
                   reason=f"to {destination.code}", source=source, key=key, now=now),
            _write(in_row, writes, kind=LedgerKind.TRANSFER_IN, on_hand_delta=quantity, reference=reference,
                   reason=f"from {origin.code}", source=source, key=key, now=now),
        ], writes)
        _stock_changed({sku_obj.id}, writes=writes, source=source)
        return {"sku": sku_obj.code, "from": _row_result(out_row, sku_obj, origin),
                "to": _row_result(in_row, sku_obj, destination)}

    return _idempotent("transfer", key, payload, work)


def set_stock_policy(*, sku: str | Sku, policy: str, limit: int = 0, location: str | Location | None = None) -> Sku:
    """Switch a SKU between deny / backorder / preorder; the allowance sits on one location's row."""
    if policy not in StockPolicy.values:
        raise StockError(f"Unknown stock policy {policy!r}.", field="policy")
    if policy == StockPolicy.DENY:
        limit = 0
    if limit < 0:
        raise StockError("limit must be >= 0.", field="limit")
    with transaction.atomic():
        sku_obj = Sku.objects.select_for_update().get(pk=_get_sku(sku).pk)
        location_obj = _get_location(location) if location is not None else (
            sku_obj.oversell_location or Location.objects.filter(is_active=True).order_by("priority", "id").first()
        )
        if policy != StockPolicy.DENY and location_obj is None:
            raise StockError("A backorder or preorder policy needs a location.", field="location")
        rows = lock_stock_rows(sku_ids=[sku_obj.id])
        for row in rows:
            wanted = limit if location_obj is not None and row.location_id == location_obj.id else 0
            if row.on_hand < row.reserved - wanted:
                raise InvalidState(
                    f"{sku_obj.code} has {row.reserved - row.on_hand} units promised beyond stock at "
                    f"location {row.location_id}; lower the limit after they are received.", sku=sku_obj.code,
                )
            if row.allowance != wanted:
                StockLevel.objects.filter(pk=row.id).update(allowance=wanted)
        sku_obj.stock_policy, sku_obj.oversell_limit = policy, limit
        sku_obj.oversell_location = location_obj if policy != StockPolicy.DENY else None
        sku_obj.save(update_fields=["stock_policy", "oversell_limit", "oversell_location", "updated_at"])
        if location_obj is not None and policy != StockPolicy.DENY:
            ensure_stock_rows([(sku_obj, location_obj)])
            StockLevel.objects.filter(sku=sku_obj, location=location_obj).update(allowance=limit)
        writes = Statements()
        _stock_changed({sku_obj.id}, writes=writes, source="policy")
        writes.run()
        return sku_obj


def set_location_active(*, location: str | Location, active: bool) -> Location:
    """Open or close a location for selling: its stock counts toward availability only while it is active. Every
    SKU stocked there changes what the channels are sent (and ring fences settle), in the same transaction: a
    location closed with no stock write after it went on showing its units on every channel, which sold them short.
    The SKUs' stock rows are locked first, in id order, as every stock write locks them."""
    with transaction.atomic():
        location_obj = _get_location(location)
        sku_ids = set(StockLevel.objects.filter(location=location_obj).values_list("sku_id", flat=True))
        lock_stock_rows(sku_ids=sku_ids)
        changed = Location.objects.filter(pk=location_obj.pk).exclude(is_active=active).update(is_active=active)
        location_obj.is_active = active
        if changed:
            writes = Statements()
            _stock_changed(sku_ids, writes=writes, source="location")
            writes.run()
        return location_obj


def set_sku_active(*, sku: str | Sku, active: bool) -> Sku:
    """Put a SKU on sale or take it off: an inactive SKU's sales are refused and every channel is shown none of it
    (``availability``). Its listings (and its bundles') are marked out of date in the same transaction, after its
    stock rows are locked, as every stock write locks them: the flag alone left channels selling it, and each of
    their orders was parked."""
    with transaction.atomic():
        sku_obj = _get_sku(sku)
        lock_stock_rows(sku_ids=[sku_obj.id])
        changed = Sku.objects.filter(pk=sku_obj.pk).exclude(is_active=active).update(
            is_active=active, updated_at=timezone.now())
        sku_obj.is_active = active
        if changed:
            writes = Statements()
            _stock_changed({sku_obj.id}, writes=writes, source="sku")
            writes.run()
        return sku_obj


# --- reservations ----------------------------------------------------------------------------


@dataclass
class _SkuRef:
    id: int
    code: str
    is_active: bool
    components: list[tuple[int, str, int]]  # (component id, code, units per bundle)


def _expand_and_lock(lines: Sequence[LineRequest]) -> tuple[list[tuple[_SkuRef, int, str, int]], list[LockedRow]]:
    """Turn requested lines into (requested sku, stock sku id, stock code, units), bundles into components, and
    lock the stock rows they draw on: the description and the lock in one round trip (the lock names the SKUs by
    code), where the lock waited for the description's answer. Rows of a SKU that turns out unknown or inactive
    are locked for nothing: the error rolls them back with the operation. Inside ``rows_held`` covering these
    SKUs, no round trip: copies of the rows it holds (``_take`` writes them back once its writes stand)."""
    for line in lines:
        _positive(line.quantity)
    codes = sorted({line.sku for line in lines})
    held = _rows_held.get()
    if held is not None and all(code in held.skus for code in codes):
        skus = {code: held.skus[code] for code in codes}
        stock_ids = {sku_id for ref in skus.values() for sku_id in [ref.id, *(c[0] for c in ref.components)]}
        locked_rows = sorted((LockedRow(*astuple(row)) for sku_id in stock_ids for row in held.rows.get(sku_id, ())),
                             key=lambda row: row.id)
    else:
        described: list[tuple] = []
        locked: list[tuple] = []
        reads = Statements()
        reads.add(_DESCRIBE_SQL.format(where=f"s.code IN ({', '.join(['%s'] * len(codes))})"), codes,
                  on_rows=described.extend)
        reads.add(*lock_by_codes_sql(codes), on_rows=locked.extend)
        reads.run()
        skus = _described(described)
        locked_rows = [LockedRow(*row) for row in locked]
    needs = []
    for line in lines:
        ref = skus.get(line.sku)
        if ref is None:
            raise UnknownSku(f"Unknown SKU {line.sku!r}.", sku=line.sku)
        if not ref.is_active:
            raise InvalidState(f"SKU {ref.code} is not active.", sku=ref.code)
        if ref.components:
            needs.extend((ref, cid, ccode, units * line.quantity) for cid, ccode, units in ref.components)
        else:
            needs.append((ref, ref.id, ref.code, line.quantity))
    return needs, locked_rows


_DESCRIBE_SQL = (f"SELECT s.id, s.code, s.is_active, bc.component_id, c.code, bc.quantity "
                 f"FROM {Sku._meta.db_table} s "
                 f"LEFT JOIN {BundleComponent._meta.db_table} bc ON bc.bundle_id = s.id "
                 f"LEFT JOIN {Sku._meta.db_table} c ON c.id = bc.component_id "
                 "WHERE {where} ORDER BY s.id, bc.component_id")


def _described(rows: Iterable[tuple]) -> dict[str, _SkuRef]:
    skus: dict[str, _SkuRef] = {}
    for sku_id, code, is_active, component_id, component_code, units in rows:
        ref = skus.setdefault(code, _SkuRef(sku_id, code, bool(is_active), []))
        if component_id is not None:
            ref.components.append((component_id, component_code, units))
    return skus


@dataclass
class _RowsHeld:
    skus: dict[str, _SkuRef]  # by code
    rows: dict[int, list[LockedRow]]  # by stock SKU id, as they stand in this transaction

    def write_back(self, rows: Iterable[LockedRow]) -> None:
        by_id = {row.id: row for held in self.rows.values() for row in held}
        for row in rows:
            if row.id in by_id:
                by_id[row.id].on_hand, by_id[row.id].reserved = row.on_hand, row.reserved

    def forget(self) -> None:
        self.skus.clear()
        self.rows.clear()

    def drop(self, codes: set[str]) -> bool:
        """Read these SKUs afresh from now on; whether any was held."""
        dropped = [self.skus.pop(code) for code in codes if code in self.skus]
        return bool(dropped)


_rows_held: ContextVar[_RowsHeld | None] = ContextVar("rows_held", default=None)


@contextlib.contextmanager
def rows_held(sku_ids: Iterable[int]) -> Iterator[None]:
    """Lock the stock rows that selling these SKUs draws on (their own; a bundle's, its components'), in id order,
    and keep them, with the SKUs' description, for the sales made inside (PostgreSQL, inside a transaction).

    Why: an inbox drain locks the rows of a whole batch of orders up front (so two drains, or a drain and a
    pusher, never deadlock), and then each sale read and locked its own rows again, with the SKU's description:
    a round trip and two statements per order, for rows this transaction holds and nobody else can change. Inside,
    ``sell`` works on copies of the rows kept here and writes its numbers back once its writes stand (not when
    they fail, or its key answers from before); a savepoint rolled back inside (``statements.savepoint``: an event
    that failed after a sale) makes it forget all it holds, and the sales after it read the rows again. Only for
    work whose stock writes are all ``sell``: another operation writing these rows would leave copies stale."""
    ids = sorted(set(sku_ids))
    held = _RowsHeld({}, {})
    if ids:
        described: list[tuple] = []
        locked: list[tuple] = []
        reads = Statements()
        reads.add(_DESCRIBE_SQL.format(where="s.id = ANY(%s)"), [ids], on_rows=described.extend)
        reads.add(*lock_rows_of_skus_sql(ids), on_rows=locked.extend)
        reads.run()
        held.skus = _described(described)
        for row in (LockedRow(*row) for row in locked):
            held.rows.setdefault(row.sku_id, []).append(row)
    token = _rows_held.set(held)
    try:
        with on_rollback(held.forget):
            yield
    finally:
        _rows_held.reset(token)


def reserve(
    *,
    lines: Sequence[LineRequest],
    channel: str = "",
    reference: str = "",
    ttl_seconds: int | None = None,
    key: str | None = None,
) -> dict:
    """Hold stock for a cart or order: all lines (and all bundle components) or none.

    Units are allocated from active locations in priority order; a backorder or
    preorder allowance is used only once real stock is exhausted.
    """
    ttl = settings.TALLY_DEFAULT_RESERVATION_TTL if ttl_seconds is None else ttl_seconds
    if not isinstance(ttl, int) or ttl <= 0:
        raise StockError("ttl_seconds must be a positive whole number.", field="ttl_seconds")
    return _take(lines, channel=channel, reference=reference, ttl=ttl, key=key, sold=False)


def sell(*, lines: Sequence[LineRequest], channel: str = "", reference: str = "", key: str | None = None,
         also_write: Callable[[uuid.UUID, Statements], None] | None = None,
         from_locations: Collection[int] | None = None) -> dict:
    """A sale already made (a channel's order): units leave on_hand at once, allocated as ``reserve``
    would (all lines or none), in one transaction with one COMMIT ledger row per stock row.

    The same as reserve then commit, in half the statements: every order of every channel takes this
    path. A committed reservation records where the units came from, for cancellations and refunds.

    ``also_write(reservation_id, writes)``: the caller's own rows for this sale (its order line) go out with
    the sale's writes, in the same round trip and savepoint; they are rolled back with it, also when the key
    answers with an earlier result (``replayed`` in the answer).

    ``from_locations``: the locations the selling channel is offered (those feeding it), drawn on first, then the
    others by priority. A store's till fed by the store alone sold units the hub took from the warehouse: the till
    went on showing the units it had sold, and the web shop, fed by the warehouse, lost units it still had."""
    return _take(lines, channel=channel, reference=reference, ttl=None, key=key, sold=True, also_write=also_write,
                 prefer=from_locations)


def _take(lines: Sequence[LineRequest], *, channel: str, reference: str, ttl: int | None, key: str | None,
          sold: bool, also_write: Callable[[uuid.UUID, Statements], None] | None = None,
          prefer: Collection[int] | None = None) -> dict:
    if not lines:
        raise StockError("A reservation needs at least one line.", field="lines")
    payload = {"lines": [[line.sku, line.quantity] for line in lines], "channel": channel, "reference": reference}
    written: list[LockedRow] = []

    def work(writes: Statements) -> dict:
        now = timezone.now()
        needs, locked = _expand_and_lock(lines)
        by_sku: dict[int, list[LockedRow]] = defaultdict(list)
        for row in locked:  # a bundle's own rows, if it has any, are locked and never drawn on
            if row.location_active:
                by_sku[row.sku_id].append(row)
        for candidates in by_sku.values():
            candidates.sort(key=lambda r: (bool(prefer) and r.location_id not in prefer, r.priority, r.location_id))

        # Plan first, write after: a shortfall anywhere must leave everything untouched.
        planned: dict[int, int] = defaultdict(int)  # row id -> units taken in this call
        allocation: list[tuple[_SkuRef, str, LockedRow, int]] = []
        for requested, stock_id, stock_code, units in needs:
            remaining = units
            for use_allowance in (False, True):
                for row in by_sku.get(stock_id, []):
                    free = row.on_hand - row.reserved - planned[row.id] + (row.allowance if use_allowance else 0)
                    take = min(max(free, 0), remaining)
                    if take:
                        planned[row.id] += take
                        allocation.append((requested, stock_code, row, take))
                        remaining -= take
                    if not remaining:
                        break
                if not remaining:
                    break
            if remaining:
                RESERVATIONS.labels(outcome="insufficient_stock").inc()
                asked = sum(line.quantity for line in lines if line.sku == requested.code)
                available = _available_for(requested, by_sku)
                raise InsufficientStock(
                    f"Not enough {requested.code}: asked for {asked}, {available} available.",
                    sku=requested.code, requested=asked, available=available,
                    **({"component": stock_code} if stock_id != requested.id else {}),
                )

        reservation_id = uuid.uuid4()
        expires_at = None if sold else now + timedelta(seconds=ttl)
        status = ReservationStatus.COMMITTED if sold else ReservationStatus.ACTIVE
        merged: dict[tuple[int, int, int], int] = defaultdict(int)
        rows: dict[int, LockedRow] = {}
        stock_codes: dict[int, str] = {}
        for requested, stock_code, row, take in allocation:
            merged[(requested.id, row.sku_id, row.id)] += take
            rows[row.id] = row
            stock_codes[row.sku_id] = stock_code
        written.extend(rows.values())
        reservation_pk = reservation_id.hex if connection.vendor == "sqlite" else reservation_id
        writes.add(
            f"INSERT INTO {Reservation._meta.db_table} "
            "(id, status, channel, reference, expires_at, created_at, updated_at) VALUES (%s, %s, %s, %s, %s, %s, %s)",
            [reservation_pk, status, channel[:64], reference[:255], expires_at and _db_time(expires_at), _db_time(now),
             _db_time(now)],
        )
        writes.add(
            f"INSERT INTO {ReservationLine._meta.db_table} "
            f"(reservation_id, requested_sku_id, sku_id, location_id, quantity) VALUES "
            + ", ".join(["(%s, %s, %s, %s, %s)"] * len(merged)),
            [value for (req_id, stock_id, row_id), qty in merged.items()
             for value in (reservation_pk, req_id, stock_id, rows[row_id].location_id, qty)],
        )
        _append_ledger([
            _write(rows[row_id], writes, kind=LedgerKind.COMMIT, on_hand_delta=-qty, reference=str(reservation_id),
                   source=channel, key=key, now=now) if sold else
            _write(rows[row_id], writes, kind=LedgerKind.RESERVE, reserved_delta=qty, reference=str(reservation_id),
                   source=channel, key=key, now=now)
            for row_id, qty in sorted(planned.items()) if qty
        ], writes)
        sold_units: dict[int, int] = defaultdict(int)
        if sold and channel:
            for requested, stock_id, _, units in needs:
                if requested.id == stock_id:
                    sold_units[stock_id] += units
        _stock_changed({stock_id for _, stock_id, _, _ in needs}, writes=writes, source=channel or "api",
                       sold=sold_units or None)
        if also_write is not None:
            also_write(reservation_id, writes)
        RESERVATIONS.labels(outcome="sold" if sold else "reserved").inc()
        requested_codes = {requested.id: requested.code for requested, _, _, _ in allocation}
        location_codes = _location_codes({row.location_id for row in rows.values()})
        return {
            "id": str(reservation_id), "status": status.value, "channel": channel[:64],
            "reference": reference[:255], "expires_at": expires_at.isoformat() if expires_at else None,
            "lines": [{"sku": requested_codes[req_id], "stock_sku": stock_codes[stock_id],
                       "location": location_codes[rows[row_id].location_id], "quantity": qty}
                      for (req_id, stock_id, row_id), qty in merged.items()],
        }

    try:
        result = _idempotent("sell" if sold else "reserve", key, payload, work, reads_first=True)
    except InsufficientStock:
        # Held rows are those that existed when the batch locked them: a row committed since (stock received at
        # a location new to the SKU) is read, with the others, before a line is called short.
        held = _rows_held.get()
        if held is None or not held.drop({line.sku for line in lines}):
            raise
        result = _idempotent("sell" if sold else "reserve", key, payload, work, reads_first=True)
    held = _rows_held.get()
    if held is not None and not result.get("replayed"):
        held.write_back(written)
    return result


_location_code_cache: dict[int, str] = {}


def _location_codes(ids: set[int]) -> dict[int, str]:
    # Location codes are immutable slugs in practice; a per-process cache saves a query per reservation.
    missing = ids - _location_code_cache.keys()
    if missing:
        _location_code_cache.update(Location.objects.filter(id__in=missing).values_list("id", "code"))
    return {i: _location_code_cache[i] for i in ids}


def _available_for(requested: _SkuRef, by_sku: dict[int, list[LockedRow]]) -> int:
    def sellable(sku_id: int) -> int:
        return sum(max(r.on_hand - r.reserved + r.allowance, 0) for r in by_sku.get(sku_id, []))

    if not requested.components:
        return sellable(requested.id)
    return min(sellable(cid) // units for cid, _, units in requested.components)


def _locked_reservation(reservation_id) -> Reservation:
    try:
        return Reservation.objects.select_for_update().get(pk=reservation_id)
    except (Reservation.DoesNotExist, ValueError, TypeError, ValidationError):
        raise NotFound(f"No reservation {reservation_id}.", reservation=str(reservation_id)) from None


def commit(*, reservation_id, key: str | None = None, source: str = "") -> dict:
    """The sale is final: the held units leave on_hand and reserved together."""
    return _settle(reservation_id, ReservationStatus.COMMITTED, LedgerKind.COMMIT, key=key, source=source)


def release(*, reservation_id, reason: str = "released", key: str | None = None, source: str = "") -> dict:
    """Give held units back to availability."""
    return _settle(reservation_id, ReservationStatus.RELEASED, LedgerKind.RELEASE, key=key, source=source,
                   reason=reason)


def _settle(reservation_id, status: str, kind: str, *, key: str | None, source: str, reason: str = "") -> dict:
    payload = {"reservation": str(reservation_id), "status": status}

    def work(writes: Statements) -> dict:
        now = timezone.now()
        reservation = _locked_reservation(reservation_id)
        if reservation.status == status:
            return {**_reservation_result(reservation), "replayed": True}
        if reservation.status != ReservationStatus.ACTIVE:
            raise InvalidState(
                f"Reservation {reservation.id} is {reservation.status}; it cannot become {status}.",
                reservation=str(reservation.id), status=reservation.status,
            )
        _settle_locked(reservation, status, kind, writes, source=source or reservation.channel, reason=reason,
                       key=key, now=now)
        return _reservation_result(reservation)

    return _idempotent(f"settle:{status}", key, payload, work)


def _settle_locked(reservation: Reservation, status: str, kind: str, writes: Statements, *, source: str, reason: str,
                   key: str | None, now: datetime) -> None:
    per_row: dict[tuple[int, int], int] = defaultdict(int)
    for sku_id, location_id, quantity in reservation.lines.values_list("sku_id", "location_id", "quantity"):
        per_row[(sku_id, location_id)] += quantity
    rows = lock_stock_rows(sku_ids={s for s, _ in per_row}, location_ids={loc for _, loc in per_row})
    entries = []
    for row in rows:
        qty = per_row.get((row.sku_id, row.location_id))
        if not qty:
            continue
        on_hand_delta = -qty if status == ReservationStatus.COMMITTED else 0
        entries.append(_write(row, writes, kind=kind, on_hand_delta=on_hand_delta, reserved_delta=-qty,
                              reference=str(reservation.id), reason=reason, source=source, key=key, now=now))
    _append_ledger(entries, writes)
    Reservation.objects.filter(pk=reservation.pk).update(status=status, updated_at=now)
    reservation.status = status
    _stock_changed({s for s, _ in per_row}, writes=writes, source=source, available_changed=status != ReservationStatus.COMMITTED)


def expire_due(*, now: datetime | None = None, limit: int = 500) -> int:
    """Release reservations whose ``expires_at`` has passed. Safe to run from many workers at once."""
    now = now or timezone.now()
    expired = 0
    with transaction.atomic():
        # SKIP LOCKED: two sweepers split the work instead of queueing behind each other.
        due = list(
            Reservation.objects.select_for_update(skip_locked=True)
            .filter(status=ReservationStatus.ACTIVE, expires_at__lte=now)
            .order_by("expires_at")[:limit]
        )
        for reservation in due:
            # Run each reservation's writes before the next locks (and reads) rows they may share.
            writes = Statements()
            _settle_locked(reservation, ReservationStatus.EXPIRED, LedgerKind.EXPIRE, writes, source="expiry",
                           reason=f"expired at {reservation.expires_at.isoformat()}", key=None, now=now)
            writes.run()
            events.emit("reservation.expired", {"reservation": str(reservation.id), "channel": reservation.channel,
                                                "reference": reservation.reference,
                                                "expires_at": reservation.expires_at.isoformat()})
            expired += 1
    return expired


# --- results ---------------------------------------------------------------------------------


def _row_result(row: LockedRow, sku: Sku, location: Location) -> dict:
    return {
        "sku": sku.code,
        "location": location.code,
        "on_hand": row.on_hand,
        "reserved": row.reserved,
        "available": max(row.on_hand - row.reserved, 0),
    }


def _reservation_result(reservation: Reservation) -> dict:
    lines = reservation.lines.select_related("requested_sku", "sku", "location").order_by("id")
    return {
        "id": str(reservation.id),
        "status": reservation.status,
        "channel": reservation.channel,
        "reference": reservation.reference,
        "expires_at": reservation.expires_at.isoformat() if reservation.expires_at else None,
        "lines": [
            {"sku": line.requested_sku.code, "stock_sku": line.sku.code, "location": line.location.code,
             "quantity": line.quantity}
            for line in lines
        ],
    }


def lines_from(items: Iterable[dict]) -> list[LineRequest]:
    return [LineRequest(sku=str(item["sku"]), quantity=int(item["quantity"])) for item in items]
