"""Canonical orders from every channel: placed, cancelled, refunded. Stock moves only through ``stock``.

Every order line is applied at most once whatever delivery brought it: each stock call is keyed on
(channel, order, line), and a line that already exists is never applied again.
"""

from __future__ import annotations

from collections import Counter, defaultdict
from collections.abc import Callable, Collection
from dataclasses import dataclass
from datetime import datetime
from decimal import Decimal

from django.db import connection, transaction
from django.utils import timezone

from hub import events
from inventory_app import stock
from inventory_app.errors import InsufficientStock, OrderNotFound, StockError
from inventory_app.models import (
    Location,
    Order,
    OrderLine,
    OrderLineStatus,
    OrderStatus,
    ReservationLine,
    Sku,
)
from inventory_app.statements import Statements, fetch
from inventory_app.stock import LineRequest


@dataclass(frozen=True)
class OrderLineRequest:
    external_id: str
    sku: Sku
    quantity: int
    unit_price: Decimal = Decimal("0")


@dataclass(frozen=True)
class RefundLineRequest:
    external_line_id: str
    quantity: int
    restock: bool
    location: Location | None = None


def _locked_order(channel: str, external_id: str) -> Order | None:
    return Order.objects.select_for_update().filter(channel=channel, external_id=external_id).first()


_ORDER_COLUMNS = ("channel", "external_id", "name", "status", "currency", "total", "placed_at", "created_at",
                  "updated_at")
_NEW_ORDER_SQL = (f"INSERT INTO {Order._meta.db_table} ({', '.join(_ORDER_COLUMNS)}) "
                  f"VALUES ({', '.join(['%s'] * len(_ORDER_COLUMNS))}) ON CONFLICT DO NOTHING RETURNING id")


def _new_order(**fields) -> Order | None:
    """The order, inserted and so locked by this transaction; None if (channel, external_id) exists already.

    One statement where a read, a savepoint, the insert and its release took four round trips. A concurrent
    insert of the same order makes this one wait for that transaction: committed, this returns None and the
    caller locks the order it made; rolled back, this one inserts."""
    now = timezone.now()
    order = Order(status=OrderStatus.OPEN, created_at=now, updated_at=now, **fields)
    rows = fetch(_NEW_ORDER_SQL, [Order._meta.get_field(column).get_db_prep_save(getattr(order, column), connection)
                                  for column in _ORDER_COLUMNS])
    if not rows:
        return None
    order.pk = rows[0][0]
    order._state.adding, order._state.db = False, connection.alias
    return order


_LINE_COLUMNS = ("order_id", "external_id", "sku_id", "quantity", "unit_price", "status", "restocked_quantity",
                 "written_off_quantity", "reservation_id")
_LINE_FIELDS = [next(f for f in OrderLine._meta.concrete_fields if f.attname == column) for column in _LINE_COLUMNS]
_NEW_LINE_SQL = (f"INSERT INTO {OrderLine._meta.db_table} ({', '.join(_LINE_COLUMNS)}) "
                 f"VALUES ({', '.join(['%s'] * len(_LINE_COLUMNS))})")

# The caller's own rows for an order line this call records (a channel's note of its sale), given the line and the
# statements to add them to.
LineWrites = Callable[[OrderLineRequest, Statements], None]


def _write_line(order: Order, line: OrderLineRequest, status: OrderLineStatus, reservation_id, writes: Statements,
                also_write: LineWrites | None) -> None:
    """The line's row and the caller's rows for it, added to ``writes``."""
    row = OrderLine(order=order, external_id=line.external_id, sku=line.sku, quantity=line.quantity,
                    unit_price=line.unit_price, status=status, reservation_id=reservation_id)
    writes.add(_NEW_LINE_SQL, [field.get_db_prep_save(getattr(row, field.attname), connection) for field in _LINE_FIELDS])
    if also_write is not None:
        also_write(line, writes)


def place_order(
    *,
    channel: str,
    external_id: str,
    lines: list[OrderLineRequest],
    name: str = "",
    currency: str = "USD",
    total: Decimal = Decimal("0"),
    placed_at: datetime | None = None,
    also_write: LineWrites | None = None,
    from_locations: Collection[int] | None = None,
) -> dict:
    """Record a channel's order and take its units from stock (``stock.sell`` per line; ``from_locations``: the
    locations feeding the channel, drawn on first).

    A line the hub cannot cover is recorded as ``short``: the channel already sold it, so the
    order is a fact; the shortfall is what the operator (and the oversell figures) must see.

    Each line this call records (sold or short, never one recorded before) is written with its sale, in the
    sale's own pipeline and savepoint (a round trip of its own through the ORM was a sixth of the time an
    inbox drain spent on each order); ``also_write`` adds the caller's rows for the line to the same
    statements. A short line, or a sale its key answers from before (whose writes are rolled back with it),
    is written on its own, with the caller's rows.
    """
    # No savepoint of its own: inside an inbox event's transaction a failure rolls back with the event's.
    with transaction.atomic(savepoint=False):
        order = _new_order(channel=channel, external_id=external_id, name=name[:128], currency=currency[:3],
                           total=total, placed_at=placed_at or timezone.now())
        created = order is not None
        if not created:
            order = _locked_order(channel, external_id)
        assert order is not None
        if order.status == OrderStatus.CANCELLED:
            return {"order": order.pk, "applied": 0, "short": 0, "cancelled": True, "new_lines": []}
        known = set() if created else set(order.lines.values_list("external_id", flat=True))
        applied, short = [], []
        for line in lines:
            if line.external_id in known:
                continue
            known.add(line.external_id)
            key = f"order:{channel}:{external_id}:{line.external_id}"
            reservation_id, status = None, OrderLineStatus.COMMITTED
            written = False
            try:
                sold = stock.sell(lines=[LineRequest(line.sku.code, line.quantity)], channel=channel,
                                  reference=f"{channel}:{external_id}", key=f"{key}:sell", from_locations=from_locations,
                                  also_write=lambda sale, writes, line=line: _write_line(
                                      order, line, OrderLineStatus.COMMITTED, sale, writes, also_write))
                reservation_id = sold["id"]
                written = not sold.get("replayed")  # a sale its key answers from before rolled its writes back
                applied.append(line)
            except InsufficientStock:
                status = OrderLineStatus.SHORT
                short.append(line)
            if not written:
                own = Statements()
                _write_line(order, line, status, reservation_id, own, also_write)
                own.run()
        if applied or short:
            # A repeated order (a channel's orders/updated, a retried webhook) that brought new lines: those lines, as
            # an update. Sent as order.created again, a subscriber's ERP booked the order twice.
            # The total is the order's as first recorded: an update's lines come without the channel's new total.
            data = {"channel": channel, "order": external_id, "name": order.name, "currency": order.currency,
                    **({"total": str(order.total)} if created else {}),
                    "lines": [{"line": x.external_id, "sku": x.sku.code, "quantity": x.quantity,
                               "status": "short" if x in short else "committed"} for x in [*applied, *short]]}
            events.emit("order.created" if created else "order.updated", data)
        return {"order": order.pk, "applied": sum(x.quantity for x in applied),
                "short": sum(x.quantity for x in short), "short_lines": [x.external_id for x in short],
                "new_lines": [x.external_id for x in [*applied, *short]]}


def _restock_line(line: OrderLine, units: int, *, key: str, channel: str, location: Location | None) -> int:
    """Put ``units`` of an order line back on the shelf; returns how many went back. Units refunded without restock
    are gone: never put back, here or by a later cancel."""
    handled = line.restocked_quantity + line.written_off_quantity
    units = min(units, line.quantity - handled)
    if units <= 0 or line.status == OrderLineStatus.SHORT:
        return 0
    held = list(ReservationLine.objects.filter(reservation_id=line.reservation_id).select_related("sku", "location")
                .order_by("id"))
    per_sku: dict[int, list[ReservationLine]] = defaultdict(list)
    for held_line in held:
        per_sku[held_line.sku_id].append(held_line)
    for sku_id, parts in per_sku.items():
        # Components per order unit (1 for a plain SKU; a bundle's recipe otherwise).
        per_unit = sum(p.quantity for p in parts) // line.quantity
        remaining = units * per_unit
        # Units of the line handed back before (an earlier refund) came out of the first parts: this one goes on from
        # where they stopped. Starting again from the first part put a line taken from two locations back at one.
        returned = handled * per_unit
        for part in parts:
            if not remaining:
                break
            left = part.quantity - min(part.quantity, returned)
            returned -= part.quantity - left
            take = min(left, remaining)
            if not take:
                continue
            remaining -= take
            stock.restock(sku=part.sku, location=location or part.location, quantity=take,
                          reference=f"{channel}:{line.order.external_id}:{line.external_id}", source=channel,
                          key=f"{key}:{sku_id}:{part.pk}")
    line.restocked_quantity += units
    return units


def cancel_order(*, channel: str, external_id: str, restock: bool = True) -> dict:
    """Cancel an order: its committed units go back to stock (unless told not to)."""
    with transaction.atomic():
        order = _locked_order(channel, external_id)
        if order is None:
            raise OrderNotFound(f"No order {external_id} from {channel} yet.", channel=channel, order=external_id)
        if order.status == OrderStatus.CANCELLED:
            return {"order": order.pk, "restocked": 0, "already": True}
        restocked = 0
        for line in order.lines.select_related("order").order_by("id"):
            if restock:
                restocked += _restock_line(line, line.quantity, key=f"cancel:{channel}:{external_id}:{line.external_id}",
                                           channel=channel, location=None)
            line.status = OrderLineStatus.CANCELLED
            line.save(update_fields=["status", "restocked_quantity"])
        order.status = OrderStatus.CANCELLED
        order.save(update_fields=["status", "updated_at"])
        return {"order": order.pk, "restocked": restocked}


def refund(*, channel: str, external_order_id: str, refund_id: str, lines: list[RefundLineRequest]) -> dict:
    """Refund lines; those marked restock go back to stock at the given location (or where they came from)."""
    with transaction.atomic():
        order = _locked_order(channel, external_order_id)
        if order is None:
            raise OrderNotFound(f"No order {external_order_id} from {channel} yet.", channel=channel,
                                order=external_order_id)
        by_id = {line.external_id: line for line in order.lines.select_related("order")}
        restocked = 0
        named: Counter[str] = Counter()
        for request in lines:
            line = by_id.get(request.external_line_id)
            if line is None:
                raise StockError(f"Order {external_order_id} has no line {request.external_line_id}.",
                                 order=external_order_id, line=request.external_line_id)
            # A line named again in the same refund (part of it back to another location) is a part of its own: under
            # the line's key alone, the second part was taken for the first, applied already, and never restocked.
            # The first keeps the key it always had, so a refund applied before is not applied again.
            named[request.external_line_id] += 1
            nth = named[request.external_line_id]
            key = f"refund:{channel}:{refund_id}:{request.external_line_id}" + (f":{nth}" if nth > 1 else "")
            if not _already_applied(key):
                if request.restock:
                    restocked += _restock_line(line, request.quantity, key=key, channel=channel,
                                               location=request.location)
                else:
                    # Refunded, not restocked (damaged, kept): gone for good, so a cancel after it does not put these
                    # units back (it put the whole line back: a unit that was never there, then sold).
                    line.written_off_quantity += max(min(
                        request.quantity, line.quantity - line.restocked_quantity - line.written_off_quantity), 0)
                stock.mark_applied(key=key, operation="refund_line",
                                   payload={"quantity": request.quantity, "restock": request.restock})
            if line.restocked_quantity + line.written_off_quantity >= line.quantity:
                line.status = OrderLineStatus.REFUNDED
            line.save(update_fields=["status", "restocked_quantity", "written_off_quantity"])
        if all(line.status in (OrderLineStatus.REFUNDED, OrderLineStatus.CANCELLED) for line in by_id.values()):
            order.status = OrderStatus.REFUNDED
            order.save(update_fields=["status", "updated_at"])
        return {"order": order.pk, "restocked": restocked}


def _already_applied(key: str) -> bool:
    return stock.was_applied(key)
