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

import hashlib
import json
from collections import defaultdict
from collections.abc import Callable, Iterable, Sequence
from dataclasses import dataclass
from datetime import datetime, timedelta
from typing import Any

from django.conf import settings
from django.db import IntegrityError, transaction
from django.utils import timezone

from inventory_app.errors import (
    IdempotencyMismatch,
    InsufficientStock,
    InvalidState,
    NotFound,
    StockError,
    UnknownLocation,
    UnknownSku,
)
from inventory_app.locking import ensure_stock_rows, lock_stock_rows
from inventory_app.models import (
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
    "set_stock_policy",
    "transfer",
]

StockListener = Callable[[set[int], dict[str, Any]], None]
_listeners: list[StockListener] = []


def on_stock_changed(listener: StockListener) -> StockListener:
    """Register ``listener(sku_ids, context)``; it runs inside each operation's transaction."""
    if listener not in _listeners:
        _listeners.append(listener)
    return listener


def _stock_changed(sku_ids: set[int], *, source: str, occurred_at: datetime | None = None) -> None:
    context = {"source": source, "occurred_at": occurred_at or timezone.now()}
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


def _idempotent(operation: str, key: str | None, payload: dict, work: Callable[[], dict]) -> dict:
    if not key:
        with transaction.atomic():
            return work()
    fingerprint = _fingerprint(operation, payload)
    for attempt in range(2):
        try:
            with transaction.atomic():
                previous = OperationRecord.objects.filter(key=key).first()
                if previous is not None:
                    return _replay(previous, operation, fingerprint, key)
                result = work()
                OperationRecord.objects.create(
                    key=key, operation=operation, request_hash=fingerprint, result=result
                )
                return result
        except IntegrityError:
            # A concurrent caller with the same key committed first; our whole
            # savepoint rolled back, so read theirs and answer with it.
            if attempt == 0 and OperationRecord.objects.filter(key=key).exists():
                continue
            raise
    raise AssertionError("unreachable")  # pragma: no cover


def _replay(previous: OperationRecord, operation: str, fingerprint: str, key: str) -> dict:
    if previous.operation != operation or previous.request_hash != fingerprint:
        raise IdempotencyMismatch(
            f"Key {key!r} was already used for a different {previous.operation} request.", key=key
        )
    return {**previous.result, "replayed": True}


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
    row: StockLevel,
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
    """Apply deltas to a locked row and return its (unsaved) ledger entry."""
    row.on_hand += on_hand_delta
    row.reserved += reserved_delta
    if on_hand_delta or reserved_delta:
        row.updated_at = now
        StockLevel.objects.filter(pk=row.pk).update(on_hand=row.on_hand, reserved=row.reserved, updated_at=now)
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
    )


def _positive(quantity: int, what: str = "quantity") -> int:
    if not isinstance(quantity, int) or isinstance(quantity, bool) or quantity <= 0:
        raise StockError(f"{what} must be a positive whole number, got {quantity!r}.", field=what)
    return quantity


def _single_row(sku: Sku, location: Location) -> StockLevel:
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

    def work() -> dict:
        now = timezone.now()
        row = _single_row(sku_obj, location_obj)
        if row.on_hand + delta < row.reserved - row.allowance:
            raise InsufficientStock(
                f"Cannot remove {-delta} of {sku_obj.code} at {location_obj.code}: "
                f"{row.on_hand} on hand, {row.reserved} reserved.",
                sku=sku_obj.code, location=location_obj.code, available=max(row.on_hand - row.reserved, 0),
            )
        entry = _write(row, kind=kind, on_hand_delta=delta, reference=reference, reason=reason,
                       source=source, key=key, occurred_at=occurred_at, now=now)
        entry.save()
        _stock_changed({sku_obj.id}, source=source, occurred_at=occurred_at)
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

    def work() -> dict:
        now = timezone.now()
        row = _single_row(sku_obj, location_obj)
        # The stock row lock serialises counts for this pair, so reading the
        # watermark after it is race-free.
        watermark = CountWatermark.objects.filter(sku=sku_obj, location=location_obj, source=source).first()
        if watermark is not None and as_of <= watermark.last_as_of:
            _write(row, kind=LedgerKind.COUNT_STALE, reference=reference, source=source, key=key,
                   reason=f"count {on_hand} as of {as_of.isoformat()} is older than "
                          f"{watermark.last_as_of.isoformat()}", occurred_at=as_of, now=now).save()
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
        _write(row, kind=LedgerKind.COUNT, on_hand_delta=delta, reference=reference, source=source, key=key,
               reason=f"counted {on_hand}", occurred_at=as_of, now=now).save()
        if delta:
            _stock_changed({sku_obj.id}, source=source, occurred_at=as_of)
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

    def work() -> dict:
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
        StockLedgerEntry.objects.bulk_create([
            _write(out_row, kind=LedgerKind.TRANSFER_OUT, on_hand_delta=-quantity, reference=reference,
                   reason=f"to {destination.code}", source=source, key=key, now=now),
            _write(in_row, kind=LedgerKind.TRANSFER_IN, on_hand_delta=quantity, reference=reference,
                   reason=f"from {origin.code}", source=source, key=key, now=now),
        ])
        _stock_changed({sku_obj.id}, source=source)
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
                StockLevel.objects.filter(pk=row.pk).update(allowance=wanted)
        sku_obj.stock_policy, sku_obj.oversell_limit = policy, limit
        sku_obj.oversell_location = location_obj if policy != StockPolicy.DENY else None
        sku_obj.save(update_fields=["stock_policy", "oversell_limit", "oversell_location", "updated_at"])
        if location_obj is not None and policy != StockPolicy.DENY:
            ensure_stock_rows([(sku_obj, location_obj)])
            StockLevel.objects.filter(sku=sku_obj, location=location_obj).update(allowance=limit)
        _stock_changed({sku_obj.id}, source="policy")
        return sku_obj


# --- reservations ----------------------------------------------------------------------------


def _expand(lines: Sequence[LineRequest]) -> tuple[list[tuple[Sku, Sku, int]], dict[int, Sku]]:
    """Turn requested lines into (requested sku, stock sku, units) needs; bundles become components."""
    codes = {line.sku for line in lines}
    skus = {s.code: s for s in Sku.objects.filter(code__in=codes).prefetch_related("components__component")}
    needs: list[tuple[Sku, Sku, int]] = []
    for line in lines:
        _positive(line.quantity)
        sku = skus.get(line.sku)
        if sku is None:
            raise UnknownSku(f"Unknown SKU {line.sku!r}.", sku=line.sku)
        if not sku.is_active:
            raise InvalidState(f"SKU {sku.code} is not active.", sku=sku.code)
        components = list(sku.components.all())
        if components:
            needs.extend((sku, c.component, c.quantity * line.quantity) for c in components)
        else:
            needs.append((sku, sku, line.quantity))
    return needs, skus


def reserve(
    *,
    lines: Sequence[LineRequest],
    channel: str = "",
    reference: str = "",
    ttl_seconds: int | None = None,
    key: str | None = None,
    allow_shortage: bool = False,
) -> dict:
    """Hold stock for a cart or order: all lines (and all bundle components) or none.

    Units are allocated from active locations in priority order; a backorder or
    preorder allowance is used only once real stock is exhausted.
    """
    if not lines:
        raise StockError("A reservation needs at least one line.", field="lines")
    ttl = settings.TALLY_DEFAULT_RESERVATION_TTL if ttl_seconds is None else ttl_seconds
    if not isinstance(ttl, int) or ttl <= 0:
        raise StockError("ttl_seconds must be a positive whole number.", field="ttl_seconds")
    payload = {"lines": [[line.sku, line.quantity] for line in lines], "channel": channel, "reference": reference}

    def work() -> dict:
        now = timezone.now()
        needs, _ = _expand(lines)
        rows = [r for r in lock_stock_rows(sku_ids={stock.id for _, stock, _ in needs})]
        locations = {loc.id: loc for loc in Location.objects.filter(id__in={r.location_id for r in rows})}
        by_sku: dict[int, list[StockLevel]] = defaultdict(list)
        for row in rows:
            if locations[row.location_id].is_active:
                by_sku[row.sku_id].append(row)
        for candidates in by_sku.values():
            candidates.sort(key=lambda r: (locations[r.location_id].priority, r.location_id))

        # Plan first, write after: a shortfall anywhere must leave everything untouched.
        planned: dict[int, int] = defaultdict(int)  # row id -> units taken in this call
        allocation: list[tuple[Sku, Sku, StockLevel, int]] = []
        for requested, stock, units in needs:
            remaining = units
            for use_allowance in (False, True):
                for row in by_sku.get(stock.id, []):
                    free = row.on_hand - row.reserved - planned[row.id] + (row.allowance if use_allowance else 0)
                    take = min(max(free, 0), remaining)
                    if take:
                        planned[row.id] += take
                        allocation.append((requested, stock, row, take))
                        remaining -= take
                    if not remaining:
                        break
                if not remaining:
                    break
            if remaining:
                available = _available_for(requested, by_sku)
                raise InsufficientStock(
                    f"Not enough {requested.code}: asked for {_asked(lines, requested)}, {available} available.",
                    sku=requested.code, requested=_asked(lines, requested), available=available,
                    **({"component": stock.code} if stock.id != requested.id else {}),
                )

        reservation = Reservation.objects.create(
            channel=channel[:64], reference=reference[:255], expires_at=now + timedelta(seconds=ttl)
        )
        merged: dict[tuple[int, int, int], int] = defaultdict(int)
        row_by_id = {}
        for requested, stock, row, take in allocation:
            merged[(requested.id, stock.id, row.id)] += take
            row_by_id[row.id] = row
        ReservationLine.objects.bulk_create([
            ReservationLine(reservation=reservation, requested_sku_id=req_id, sku_id=stock_id,
                            location_id=row_by_id[row_id].location_id, quantity=qty)
            for (req_id, stock_id, row_id), qty in merged.items()
        ])
        StockLedgerEntry.objects.bulk_create([
            _write(row_by_id[row_id], kind=LedgerKind.RESERVE, reserved_delta=qty, reference=str(reservation.id),
                   source=channel, key=key, now=now)
            for row_id, qty in sorted(planned.items()) if qty
        ])
        _stock_changed({stock.id for _, stock, _ in needs}, source=channel or "api")
        return _reservation_result(reservation)

    return _idempotent("reserve", key, payload, work)


def _asked(lines: Sequence[LineRequest], sku: Sku) -> int:
    return sum(line.quantity for line in lines if line.sku == sku.code)


def _available_for(requested: Sku, by_sku: dict[int, list[StockLevel]]) -> int:
    components = list(requested.components.all())
    if not components:
        return sum(max(r.on_hand - r.reserved + r.allowance, 0) for r in by_sku.get(requested.id, []))
    return min(
        sum(max(r.on_hand - r.reserved + r.allowance, 0) for r in by_sku.get(c.component_id, [])) // c.quantity
        for c in components
    )


def _locked_active_reservation(reservation_id) -> Reservation:
    try:
        reservation = Reservation.objects.select_for_update().get(pk=reservation_id)
    except (Reservation.DoesNotExist, ValueError, TypeError):
        raise NotFound(f"No reservation {reservation_id}.", reservation=str(reservation_id)) from None
    return reservation


def commit(*, reservation_id, key: str | None = None, source: str = "") -> dict:
    """The sale is final: the held units leave on_hand and reserved together."""
    return _settle(reservation_id, ReservationStatus.COMMITTED, LedgerKind.COMMIT, key=key, source=source)


def release(*, reservation_id, reason: str = "released", key: str | None = None, source: str = "") -> dict:
    """Give held units back to availability."""
    return _settle(reservation_id, ReservationStatus.RELEASED, LedgerKind.RELEASE, key=key, source=source,
                   reason=reason)


def _settle(reservation_id, status: str, kind: str, *, key: str | None, source: str, reason: str = "") -> dict:
    payload = {"reservation": str(reservation_id), "status": status}

    def work() -> dict:
        now = timezone.now()
        reservation = _locked_active_reservation(reservation_id)
        if reservation.status == status:
            return {**_reservation_result(reservation), "replayed": True}
        if reservation.status != ReservationStatus.ACTIVE:
            raise InvalidState(
                f"Reservation {reservation.id} is {reservation.status}; it cannot become {status}.",
                reservation=str(reservation.id), status=reservation.status,
            )
        _settle_locked(reservation, status, kind, source=source or reservation.channel, reason=reason,
                       key=key, now=now)
        return _reservation_result(reservation)

    return _idempotent(f"settle:{status}", key, payload, work)


def _settle_locked(reservation: Reservation, status: str, kind: str, *, source: str, reason: str,
                   key: str | None, now: datetime) -> None:
    lines = list(reservation.lines.all())
    per_row: dict[tuple[int, int], int] = defaultdict(int)
    for line in lines:
        per_row[(line.sku_id, line.location_id)] += line.quantity
    rows = lock_stock_rows(sku_ids={s for s, _ in per_row}, location_ids={loc for _, loc in per_row})
    entries = []
    for row in rows:
        qty = per_row.get((row.sku_id, row.location_id))
        if not qty:
            continue
        on_hand_delta = -qty if status == ReservationStatus.COMMITTED else 0
        entries.append(_write(row, kind=kind, on_hand_delta=on_hand_delta, reserved_delta=-qty,
                              reference=str(reservation.id), reason=reason, source=source, key=key, now=now))
    StockLedgerEntry.objects.bulk_create(entries)
    reservation.status = status
    reservation.save(update_fields=["status", "updated_at"])
    _stock_changed({s for s, _ in per_row}, source=source)


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
            _settle_locked(reservation, ReservationStatus.EXPIRED, LedgerKind.EXPIRE, source="expiry",
                           reason=f"expired at {reservation.expires_at.isoformat()}", key=None, now=now)
            expired += 1
    return expired


# --- results ---------------------------------------------------------------------------------


def _row_result(row: StockLevel, sku: Sku, location: Location) -> dict:
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
