"""Channel orders: a sold line's row rides in its sale's pipeline (``stock.sell(also_write=...)``)."""

from __future__ import annotations

from decimal import Decimal

import pytest
from django.db.models import Sum

from inventory_app import orders
from inventory_app.models import (
    OperationRecord,
    Order,
    OrderLine,
    OrderLineStatus,
    Reservation,
    StockLedgerEntry,
    StockLevel,
)
from tests.factories import make_location, make_sku

pytestmark = pytest.mark.django_db

FIELDS = ("order_id", "external_id", "sku_id", "quantity", "unit_price", "status", "restocked_quantity")


def line(external_id, sku, quantity, price="12.50"):
    return orders.OrderLineRequest(external_id=external_id, sku=sku, quantity=quantity, unit_price=Decimal(price))


def test_a_sold_line_written_with_its_sale_is_the_row_the_orm_writes_for_a_short_one():
    wh = make_location()
    tee, gone = make_sku(stock_at={wh: 5}), make_sku(stock_at={wh: 0})
    result = orders.place_order(channel="shop", external_id="1001", lines=[line("a", tee, 2), line("b", gone, 1, "3.99")])
    assert (result["applied"], result["short"]) == (2, 1)
    sold, short = OrderLine.objects.get(external_id="a"), OrderLine.objects.get(external_id="b")
    order = Order.objects.get(channel="shop", external_id="1001")
    assert [getattr(sold, f) for f in FIELDS] == [order.pk, "a", tee.pk, 2, Decimal("12.50"), OrderLineStatus.COMMITTED, 0]
    assert [getattr(short, f) for f in FIELDS] == [order.pk, "b", gone.pk, 1, Decimal("3.99"), OrderLineStatus.SHORT, 0]
    assert sold.reservation_id == Reservation.objects.get().pk and short.reservation_id is None
    assert StockLevel.objects.get(sku=tee).on_hand == 3


def test_a_sale_answered_from_its_key_still_gets_its_order_line():
    """The line's row written in the sale's pipeline is rolled back with the sale when its key was used before;
    the line must then be written on its own, naming the sale that answered (caught: a line missing)."""
    wh = make_location()
    tee = make_sku(stock_at={wh: 5})
    first = orders.place_order(channel="shop", external_id="2002", lines=[line("a", tee, 2)])
    reservation = OrderLine.objects.get().reservation_id
    Order.objects.filter(pk=first["order"]).delete()  # its lines go with it; the sale's key stays
    again = orders.place_order(channel="shop", external_id="2002", lines=[line("a", tee, 2)])
    assert again["applied"] == 2 and again["new_lines"] == ["a"]
    assert OrderLine.objects.count() == 1 and OrderLine.objects.get().reservation_id == reservation
    assert Reservation.objects.count() == 1
    row = StockLevel.objects.get(sku=tee)
    assert row.on_hand == 3, "the key sold the units once"
    assert StockLedgerEntry.objects.filter(sku=tee).aggregate(s=Sum("on_hand_delta"))["s"] == row.on_hand


def test_the_callers_rows_for_a_line_are_written_once_with_it_sold_short_or_answered_from_its_key():
    """``also_write`` (the channel's note of its sale) lands once per line the call records: with the sale, with a
    short line, with a sale answered from its key (the pipelined copy rolled back with the sale); a redelivery
    records no line and writes nothing."""
    wh = make_location()
    tee, gone = make_sku(stock_at={wh: 5}), make_sku(stock_at={wh: 0})
    table = OperationRecord._meta.db_table

    def note(order_line, writes):
        writes.add(f"INSERT INTO {table} (key, operation, request_hash, result, created_at) "
                   "VALUES (%s, 'note', '', '{}', CURRENT_TIMESTAMP)", [f"note:{order_line.external_id}"])

    def place():
        return orders.place_order(channel="shop", external_id="3003", lines=[line("a", tee, 2), line("b", gone, 1)],
                                  also_write=note)

    notes = OperationRecord.objects.filter(operation="note")
    first = place()
    place()
    assert sorted(notes.values_list("key", flat=True)) == ["note:a", "note:b"]
    Order.objects.filter(pk=first["order"]).delete()
    notes.delete()
    again = place()
    assert (again["applied"], again["short"]) == (2, 1)
    assert sorted(notes.values_list("key", flat=True)) == ["note:a", "note:b"]
    assert StockLevel.objects.get(sku=tee).on_hand == 3


def test_refunds_one_unit_at_a_time_put_each_back_where_it_came_from():
    """A line of 2 took one unit from each of two locations. Each refund of one unit started again from the
    line's first location: both went back there, which then showed a unit it did not have, and the other a unit
    short (review finding, 2026-12-07). A cancel of the rest goes on from there too."""
    first, second = make_location(priority=1), make_location(priority=2)
    tee = make_sku(stock_at={first: 1, second: 5})
    orders.place_order(channel="shop", external_id="3003", lines=[line("a", tee, 3)])

    def on_hand() -> tuple[int, int]:
        return tuple(StockLevel.objects.get(sku=tee, location=x).on_hand for x in (first, second))

    assert on_hand() == (0, 3)
    for refund_id, expected in (("r1", (1, 3)), ("r2", (1, 4))):
        orders.refund(channel="shop", external_order_id="3003", refund_id=refund_id,
                      lines=[orders.RefundLineRequest(external_line_id="a", quantity=1, restock=True)])
        assert on_hand() == expected
    orders.cancel_order(channel="shop", external_id="3003")
    assert on_hand() == (1, 5)
