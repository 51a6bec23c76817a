"""The statement batch and prepared reads every stock operation goes through (inventory_app/statements.py).

They bypass Django's cursor wrapper on PostgreSQL, so these tests hold them to what that wrapper gives:
Django's exceptions, a rolled-back transaction on error, the query log, execute wrappers."""

from __future__ import annotations

import uuid

import pytest
from django.db import IntegrityError, connection, transaction
from django.test.utils import CaptureQueriesContext

from inventory_app import stock
from inventory_app.models import StockLevel
from inventory_app.statements import Statements, fetch
from inventory_app.stock import LineRequest
from tests.factories import make_location, make_sku

pytestmark = pytest.mark.django_db(transaction=True)


def prepared_statements() -> list[str]:
    with connection.cursor() as cursor:
        cursor.execute("SELECT statement FROM pg_prepared_statements")
        return [row[0] for row in cursor.fetchall()]


def test_the_stock_path_is_prepared_once_per_connection():
    wh = make_location()
    sku = make_sku(stock_at={wh: 10})
    stock.reserve(lines=[LineRequest(sku.code, 1)], key=uuid.uuid4().hex)
    after_first = prepared_statements()
    for _ in range(3):
        stock.reserve(lines=[LineRequest(sku.code, 1)], key=uuid.uuid4().hex)
    # Later calls reuse what the first one prepared: the locked read, the writes, the caller's key.
    assert sorted(prepared_statements()) == sorted(after_first)
    for statement in ("FOR UPDATE OF sl", "UPDATE inventory_app_stocklevel", "INSERT INTO inventory_app_operationrecord"):
        assert any(statement in sql for sql in after_first), statement
    assert StockLevel.objects.get(sku=sku).reserved == 4


def test_a_failing_statement_in_a_batch_raises_djangos_error_and_rolls_the_batch_back():
    wh = make_location()
    sku = make_sku(stock_at={wh: 5})
    row = StockLevel.objects.get(sku=sku)
    writes = Statements()
    writes.add("UPDATE inventory_app_stocklevel SET on_hand = %s WHERE id = %s", [4, row.id])
    writes.add("UPDATE inventory_app_stocklevel SET reserved = %s WHERE id = %s", [9, row.id])  # CHECK: reserved <= on_hand
    with pytest.raises(IntegrityError), transaction.atomic():
        writes.run()
    row.refresh_from_db()
    assert (row.on_hand, row.reserved) == (5, 0)
    # The connection is usable afterwards, in and out of a transaction.
    assert fetch("SELECT on_hand FROM inventory_app_stocklevel WHERE id = %s", [row.id]) == [(5,)]
    with transaction.atomic():
        assert fetch("SELECT on_hand FROM inventory_app_stocklevel WHERE id = %s", [row.id]) == [(5,)]


def test_rows_reach_each_statements_callback_in_order_and_after_runs_last():
    wh = make_location()
    sku = make_sku(stock_at={wh: 5})
    row = StockLevel.objects.get(sku=sku)
    seen: list = []
    with transaction.atomic():
        writes = Statements()
        writes.add("SELECT 1", [], on_rows=seen.append)
        writes.add("UPDATE inventory_app_stocklevel SET on_hand = %s WHERE id = %s RETURNING on_hand", [7, row.id],
                   on_rows=seen.append)
        writes.add("SELECT %s::int", [3], on_rows=seen.append)
        writes.after(lambda: seen.append(fetch("SELECT on_hand FROM inventory_app_stocklevel WHERE id = %s", [row.id])))
        writes.run()
    assert seen == [[(1,)], [(7,)], [(3,)], [(7,)]]


def test_the_query_log_and_execute_wrappers_see_every_statement():
    wh = make_location()
    sku = make_sku(stock_at={wh: 10})
    wrapped: list[str] = []

    def wrapper(execute, sql, params, many, context):
        wrapped.append(sql)
        return execute(sql, params, many, context)

    with CaptureQueriesContext(connection) as queries, connection.execute_wrapper(wrapper):
        stock.reserve(lines=[LineRequest(sku.code, 1)], key=uuid.uuid4().hex)
    logged = [q["sql"] for q in queries.captured_queries]
    for statement in ("FOR UPDATE OF sl", "INSERT INTO inventory_app_reservation ", "INSERT INTO inventory_app_stockledgerentry",
                      "INSERT INTO inventory_app_operationrecord"):
        assert any(statement in sql for sql in logged), statement
        assert any(statement in sql for sql in wrapped), statement


def field_values(obj) -> dict:
    return {f.attname: getattr(obj, f.attname) for f in type(obj)._meta.concrete_fields}


def test_instances_built_from_plain_rows_equal_what_the_orm_loads():
    """The pushers' claim and the inbox drain build models from plain SQL rows: every field (JSON, UUID,
    aware datetimes, decimals, nullable ones) must come out as the ORM would give it, or a push or an event
    would read a wrong value without any error."""
    from channels_app.models import InboundEvent, Listing
    from inventory_app.models import Sku
    from inventory_app.statements import columns, instances
    from tests.channels.helpers import list_sku, make_channel

    channel = make_channel("shopify")
    sku = make_sku(stock_at={make_location(): 3})
    listing = list_sku(channel, sku, external_variant_id="v-1")
    Listing.objects.filter(pk=listing.pk).update(lease_owner=uuid.uuid4(), remote_quantity=None, pushed_quantity=7)
    event = InboundEvent.objects.create(channel=channel, dedup_key=uuid.uuid4().hex, topic="orders/create",
                                        headers={"X-Shopify-Topic": "orders/create", "n": [1, 2]}, body="{}")
    for model, pk in ((Listing, listing.pk), (Sku, sku.pk), (InboundEvent, event.pk)):
        rows = fetch(f"SELECT {columns(model)} FROM {model._meta.db_table} WHERE id = %s", [pk])
        [built] = instances(model, rows)
        loaded = model.objects.get(pk=pk)
        assert field_values(built) == field_values(loaded), model.__name__
        assert not built._state.adding
    # Rows that carry two models side by side: the second read from its offset.
    rows = fetch(f"SELECT {columns(Listing, 'l')}, {columns(Sku, 's')} FROM {Listing._meta.db_table} l "
                 f"JOIN {Sku._meta.db_table} s ON s.id = l.sku_id WHERE l.id = %s", [listing.pk])
    [again] = instances(Sku, rows, start=len(Listing._meta.concrete_fields))
    assert field_values(again) == field_values(Sku.objects.get(pk=sku.pk))
    assert isinstance(instances(InboundEvent, fetch(
        f"SELECT {columns(InboundEvent)} FROM {InboundEvent._meta.db_table} WHERE id = %s", [event.pk]))[0].headers, dict)


def test_nothing_is_prepared_when_prepared_statements_are_turned_off():
    """DB_PREPARED_STATEMENTS=false (for a transaction-pooling pgbouncer before 1.21) leaves the connection's
    prepare threshold unset; the stock path must then prepare nothing, though it asks for preparation
    (psycopg honours the unset threshold over ``prepare=True``: this holds us to it)."""
    wh = make_location()
    sku = make_sku(stock_at={wh: 10})
    connection.close()
    connection.ensure_connection()
    connection.connection.prepare_threshold = None
    try:
        for _ in range(3):
            stock.reserve(lines=[LineRequest(sku.code, 1)], key=uuid.uuid4().hex)
        assert fetch("SELECT count(*) FROM inventory_app_stocklevel WHERE sku_id = %s", [sku.pk]) == [(1,)]
        assert prepared_statements() == []
        assert StockLevel.objects.get(sku=sku).reserved == 3
    finally:
        connection.close()


def _units(sku) -> int:
    return StockLevel.objects.get(sku=sku).on_hand


@pytest.mark.parametrize("first", ["ours", "django"])
def test_a_savepoint_that_rides_undoes_its_block_and_what_it_registered_and_the_transaction_goes_on(first):
    """``statements.savepoint``: the SAVEPOINT goes out with the block's first statement, whether that is one of
    ours (pipelined) or Django's (just before it); a block that raises is undone, with its on_commit callbacks
    and the broken-transaction flag an inner atomic(savepoint=False) left; the blocks before it stand."""
    from inventory_app.statements import savepoint

    wh = make_location()
    sku = make_sku(stock_at={wh: 10})
    ran = []
    with transaction.atomic():
        with savepoint("test_block"):
            stock.adjust(sku=sku, location=wh, delta=-1, reason="kept")
            transaction.on_commit(lambda: ran.append("kept"))
        with CaptureQueriesContext(connection) as queries:
            with pytest.raises(RuntimeError), savepoint("test_block"):
                if first == "ours":
                    fetch("SELECT 1")
                else:
                    StockLevel.objects.filter(sku=sku).update(on_hand=99)
                with transaction.atomic(savepoint=False):  # what place_order does: no savepoint of its own
                    stock.adjust(sku=sku, location=wh, delta=-2, reason="undone")
                    transaction.on_commit(lambda: ran.append("undone"))
                    raise RuntimeError("after writes")
        assert not connection.needs_rollback
        sent = [" ".join(q["sql"].split()) for q in queries.captured_queries]
        name = sent[0].removeprefix("SAVEPOINT ")
        assert name.startswith("test_block_") and sent[-1] == f"ROLLBACK TO SAVEPOINT {name}"
        assert f"RELEASE SAVEPOINT {name}" not in sent
        assert _units(sku) == 9  # the transaction goes on
        with savepoint("test_block"):
            stock.adjust(sku=sku, location=wh, delta=-3, reason="after")
    assert _units(sku) == 6 and ran == ["kept"]


def test_a_savepoint_whose_block_sent_nothing_rolls_back_nothing():
    from inventory_app.statements import savepoint

    wh = make_location()
    sku = make_sku(stock_at={wh: 10})
    with transaction.atomic():
        stock.adjust(sku=sku, location=wh, delta=-1, reason="before")
        with CaptureQueriesContext(connection) as queries, pytest.raises(ValueError), savepoint("test_block"):
            raise ValueError("before any statement")
        assert queries.captured_queries == []
        # The next statement carries no leftover SAVEPOINT.
        with CaptureQueriesContext(connection) as queries:
            fetch("SELECT 1")
        assert [q["sql"] for q in queries.captured_queries] == ["SELECT 1"]
    assert _units(sku) == 9


def test_a_savepoint_inside_one_that_sent_nothing_yet_sends_the_outer_first():
    """Nested: the outer savepoint must exist before the inner one, or the outer block's failure would undo
    nothing of what the inner one did."""
    from inventory_app.statements import savepoint

    wh = make_location()
    sku = make_sku(stock_at={wh: 10})
    with transaction.atomic():
        with pytest.raises(RuntimeError), savepoint("outer"):
            with savepoint("inner"):
                stock.adjust(sku=sku, location=wh, delta=-4, reason="inner")
            raise RuntimeError("the outer block fails after the inner one stood")
        assert _units(sku) == 10
    assert _units(sku) == 10


def test_a_block_that_swallows_a_database_error_is_rolled_back_and_raises():
    """As Django's release would: a block whose transaction is in error when it ends is not taken for done."""
    from django.db import DatabaseError

    from inventory_app.statements import savepoint

    wh = make_location()
    sku = make_sku(stock_at={wh: 10})
    with transaction.atomic():
        with pytest.raises(DatabaseError), savepoint("swallowed"):
            stock.adjust(sku=sku, location=wh, delta=-1, reason="undone")
            try:
                fetch("SELECT 1 / 0")
            except DatabaseError:
                pass  # the transaction is now in error
        assert not connection.needs_rollback
        stock.adjust(sku=sku, location=wh, delta=-2, reason="after")
    assert _units(sku) == 8


def test_deferred_statements_are_handed_on_once_their_statements_ran_and_dropped_with_a_rolled_back_block():
    """``Statements.defer`` inside ``deferred()``: held until the statements run, handed on then (or with
    ``hand_on`` after a ``run(hand_on=False)``); a savepoint block that rolls back forgets what was handed on
    inside it; outside ``deferred()`` it is ``add``."""
    from inventory_app.statements import deferred, savepoint

    with transaction.atomic(), deferred() as sink:
        kept = Statements()
        kept.defer("SELECT 1")
        assert sink == []
        kept.run()
        assert [sql for sql, _, _ in sink] == ["SELECT 1"]
        held = Statements()
        held.defer("SELECT 2")
        held.run(hand_on=False)
        assert len(sink) == 1, "held until the caller hands them on"
        held.hand_on()
        assert [sql for sql, _, _ in sink] == ["SELECT 1", "SELECT 2"]
        with pytest.raises(RuntimeError), savepoint("test_block"):
            undone = Statements()
            undone.add("SELECT 3")
            undone.defer("SELECT 4")
            undone.run()
            assert len(sink) == 3
            raise RuntimeError("the block fails after its statements ran")
        assert [sql for sql, _, _ in sink] == ["SELECT 1", "SELECT 2"]
    rows = []
    outside = Statements()
    outside.defer("SELECT 5", on_rows=rows.extend)
    outside.run()
    assert rows == [(5,)]


def test_a_sale_its_key_answers_from_before_hands_on_none_of_its_deferred_statements():
    """A sale whose key was recorded earlier rolls its writes back and answers with the first result; what its
    caller deferred with them (a channel's note of the sale) must go with them, or the drain noted a replayed
    sale twice: once here, once where the caller writes the line on its own."""
    from inventory_app.statements import deferred

    wh = make_location()
    sku = make_sku(stock_at={wh: 10})
    stock.sell(lines=[LineRequest(sku.code, 1)], channel="shop", key="sale-1")
    with transaction.atomic(), deferred() as sink:
        again = stock.sell(lines=[LineRequest(sku.code, 1)], channel="shop", key="sale-1",
                           also_write=lambda sale, writes: writes.defer("SELECT 1"))
        assert again.get("replayed")
        assert sink == []
        stock.sell(lines=[LineRequest(sku.code, 1)], channel="shop", key="sale-2",
                   also_write=lambda sale, writes: writes.defer("SELECT 1"))
        assert [sql for sql, _, _ in sink if sql == "SELECT 1"] == ["SELECT 1"]  # with the ring fences' statements
    assert _units(sku) == 8
