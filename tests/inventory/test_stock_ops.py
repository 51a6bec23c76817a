"""Each stock operation on PostgreSQL: effect, ledger, refusal and idempotency."""

from __future__ import annotations

from datetime import timedelta

import pytest
from django.db import IntegrityError, transaction
from django.db.models import Sum
from django.utils import timezone

from inventory_app import stock
from inventory_app.availability import sku_availability
from inventory_app.errors import IdempotencyMismatch, InsufficientStock, InvalidState, StockError, UnknownSku
from inventory_app.models import (
    LedgerKind,
    Reservation,
    ReservationStatus,
    StockLedgerEntry,
    StockLevel,
)
from inventory_app.stock import LineRequest
from tests.factories import make_bundle, make_location, make_sku

pytestmark = pytest.mark.django_db


def level(sku, location) -> StockLevel:
    return StockLevel.objects.get(sku=sku, location=location)


def assert_ledger_matches(sku):
    for row in StockLevel.objects.filter(sku=sku):
        sums = StockLedgerEntry.objects.filter(sku=sku, location=row.location).aggregate(
            on_hand=Sum("on_hand_delta"), reserved=Sum("reserved_delta"))
        assert (row.on_hand, row.reserved) == (sums["on_hand"] or 0, sums["reserved"] or 0)


def test_receive_adjust_and_ledger():
    wh = make_location()
    sku = make_sku()
    stock.receive(sku=sku, location=wh, quantity=10, source="test")
    result = stock.adjust(sku=sku, location=wh, delta=-3, reason="damaged")
    assert result["on_hand"] == 7
    assert list(StockLedgerEntry.objects.filter(sku=sku).order_by("id").values_list("kind", "on_hand_delta")) == [
        (LedgerKind.RECEIVE, 10), (LedgerKind.ADJUST, -3)]
    assert_ledger_matches(sku)


def test_adjust_cannot_uncover_reserved_units():
    wh = make_location()
    sku = make_sku(stock_at={wh: 5})
    stock.reserve(lines=[LineRequest(sku.code, 4)])
    with pytest.raises(InsufficientStock):
        stock.adjust(sku=sku, location=wh, delta=-2, reason="shrink")
    assert level(sku, wh).on_hand == 5


def test_database_refuses_reserved_above_on_hand_even_without_the_module():
    wh = make_location()
    sku = make_sku(stock_at={wh: 1})
    with pytest.raises(IntegrityError), transaction.atomic():
        StockLevel.objects.filter(sku=sku).update(reserved=2)


def test_reserve_allocates_by_priority_and_spills_over():
    first, second = make_location(priority=1), make_location(priority=2)
    sku = make_sku(stock_at={first: 3, second: 10})
    result = stock.reserve(lines=[LineRequest(sku.code, 5)], channel="web")
    assert sorted((line["location"], line["quantity"]) for line in result["lines"]) == sorted(
        [(first.code, 3), (second.code, 2)])
    assert (level(sku, first).reserved, level(sku, second).reserved) == (3, 2)
    assert_ledger_matches(sku)


def test_reserve_skips_inactive_locations():
    live, closed = make_location(priority=2), make_location(priority=1, is_active=False)
    sku = make_sku(stock_at={live: 2, closed: 50})
    with pytest.raises(InsufficientStock) as info:
        stock.reserve(lines=[LineRequest(sku.code, 3)])
    assert info.value.details["available"] == 2


def test_insufficient_stock_names_sku_and_available_and_changes_nothing():
    wh = make_location()
    a, b = make_sku(stock_at={wh: 5}), make_sku(stock_at={wh: 1})
    with pytest.raises(InsufficientStock) as info:
        stock.reserve(lines=[LineRequest(a.code, 2), LineRequest(b.code, 2)])
    assert info.value.details["sku"] == b.code
    assert info.value.details["available"] == 1
    assert level(a, wh).reserved == 0
    assert Reservation.objects.count() == 0


def test_bundle_reserves_all_components_or_none():
    wh = make_location()
    tee, cap = make_sku(stock_at={wh: 10}), make_sku(stock_at={wh: 1})
    kit = make_bundle({tee: 2, cap: 1})
    assert sku_availability(kit).available == 1
    stock.reserve(lines=[LineRequest(kit.code, 1)])
    assert (level(tee, wh).reserved, level(cap, wh).reserved) == (2, 1)
    with pytest.raises(InsufficientStock) as info:
        stock.reserve(lines=[LineRequest(kit.code, 1)])
    assert info.value.details["sku"] == kit.code and info.value.details["component"] == cap.code
    assert level(tee, wh).reserved == 2


def test_commit_moves_units_out_of_on_hand_and_reserved():
    wh = make_location()
    sku = make_sku(stock_at={wh: 5})
    reservation = stock.reserve(lines=[LineRequest(sku.code, 2)])
    stock.commit(reservation_id=reservation["id"])
    row = level(sku, wh)
    assert (row.on_hand, row.reserved) == (3, 0)
    again = stock.commit(reservation_id=reservation["id"])
    assert again["status"] == ReservationStatus.COMMITTED
    assert level(sku, wh).on_hand == 3
    with pytest.raises(InvalidState):
        stock.release(reservation_id=reservation["id"])
    assert_ledger_matches(sku)


def test_release_returns_units():
    wh = make_location()
    sku = make_sku(stock_at={wh: 5})
    reservation = stock.reserve(lines=[LineRequest(sku.code, 5)])
    stock.release(reservation_id=reservation["id"])
    assert level(sku, wh).reserved == 0
    assert sku_availability(sku).available == 5


def test_expire_due_releases_only_past_reservations():
    wh = make_location()
    sku = make_sku(stock_at={wh: 10})
    short = stock.reserve(lines=[LineRequest(sku.code, 3)], ttl_seconds=1)
    long = stock.reserve(lines=[LineRequest(sku.code, 4)], ttl_seconds=3600)
    assert stock.expire_due(now=timezone.now() + timedelta(seconds=5)) == 1
    assert Reservation.objects.get(pk=short["id"]).status == ReservationStatus.EXPIRED
    assert Reservation.objects.get(pk=long["id"]).status == ReservationStatus.ACTIVE
    assert level(sku, wh).reserved == 4
    assert StockLedgerEntry.objects.filter(kind=LedgerKind.EXPIRE).count() == 1


def test_expiring_several_reservations_of_one_stock_row_gives_back_every_unit():
    """Each reservation's batched writes run before the next one locks and reads the shared row; read
    before, the second release would start from the first one's stale numbers."""
    wh = make_location()
    sku = make_sku(stock_at={wh: 10})
    for units in (1, 2, 3):
        stock.reserve(lines=[LineRequest(sku.code, units)], ttl_seconds=1)
    assert stock.expire_due(now=timezone.now() + timedelta(seconds=5)) == 3
    assert (level(sku, wh).on_hand, level(sku, wh).reserved) == (10, 0)
    assert list(StockLedgerEntry.objects.filter(kind=LedgerKind.EXPIRE).order_by("id").values_list(
        "reserved_delta", "reserved_after")) == [(-1, 5), (-2, 3), (-3, 0)]


def test_count_applies_newer_and_records_stale():
    store = make_location()
    sku = make_sku(stock_at={store: 10})
    t0 = timezone.now()
    assert stock.count(sku=sku, location=store, on_hand=7, as_of=t0, source="pos")["applied"]
    stale = stock.count(sku=sku, location=store, on_hand=99, as_of=t0 - timedelta(seconds=1), source="pos")
    assert stale["stale"] and not stale["applied"]
    assert level(sku, store).on_hand == 7
    assert StockLedgerEntry.objects.filter(sku=sku, kind=LedgerKind.COUNT_STALE, on_hand_delta=0).count() == 1
    # Another source has its own watermark.
    assert stock.count(sku=sku, location=store, on_hand=8, as_of=t0 - timedelta(seconds=5), source="cycle")["applied"]
    assert level(sku, store).on_hand == 8
    assert_ledger_matches(sku)


def test_count_requires_aware_time():
    store = make_location()
    sku = make_sku()
    with pytest.raises(StockError):
        stock.count(sku=sku, location=store, on_hand=1, as_of=timezone.now().replace(tzinfo=None), source="pos")


def test_transfer_moves_free_units_only():
    a, b = make_location(), make_location()
    sku = make_sku(stock_at={a: 5})
    stock.reserve(lines=[LineRequest(sku.code, 4)])
    with pytest.raises(InsufficientStock):
        stock.transfer(sku=sku, from_location=a, to_location=b, quantity=2)
    stock.transfer(sku=sku, from_location=a, to_location=b, quantity=1)
    assert (level(sku, a).on_hand, level(sku, b).on_hand) == (4, 1)
    assert_ledger_matches(sku)


def test_same_key_same_request_returns_first_result_once():
    wh = make_location()
    sku = make_sku(stock_at={wh: 10})
    first = stock.reserve(lines=[LineRequest(sku.code, 2)], key="order-1:line-1")
    second = stock.reserve(lines=[LineRequest(sku.code, 2)], key="order-1:line-1")
    assert second["id"] == first["id"] and second["replayed"]
    assert level(sku, wh).reserved == 2
    with pytest.raises(IdempotencyMismatch):
        stock.reserve(lines=[LineRequest(sku.code, 3)], key="order-1:line-1")
    with pytest.raises(IdempotencyMismatch):
        stock.adjust(sku=sku, location=wh, delta=1, reason="x", key="order-1:line-1")


def test_a_retried_key_answers_with_its_first_result_even_when_the_work_would_now_fail():
    """Keys are recorded with the writes, not read first: a repeat whose work fails (the last units are
    gone, the reservation settled) must still replay, and a repeat that succeeds must roll back."""
    wh = make_location()
    sku = make_sku(stock_at={wh: 2})
    first = stock.sell(lines=[LineRequest(sku.code, 2)], channel="shop", key="shop:order-9:sell")
    again = stock.sell(lines=[LineRequest(sku.code, 2)], channel="shop", key="shop:order-9:sell")
    assert again["id"] == first["id"] and again["replayed"]
    stock.receive(sku=sku, location=wh, quantity=5)
    held = stock.reserve(lines=[LineRequest(sku.code, 1)], key="cart-7")
    assert stock.reserve(lines=[LineRequest(sku.code, 1)], key="cart-7")["replayed"]
    assert level(sku, wh).on_hand == 5 and level(sku, wh).reserved == 1
    assert StockLedgerEntry.objects.filter(operation_key="cart-7").count() == 1
    stock.commit(reservation_id=held["id"], key="cart-7:commit")
    assert stock.commit(reservation_id=held["id"], key="cart-7:commit")["replayed"]
    with pytest.raises(IdempotencyMismatch):
        stock.sell(lines=[LineRequest(sku.code, 9)], channel="shop", key="shop:order-9:sell")


def test_backorder_policy_allows_promising_up_to_the_limit():
    wh = make_location()
    sku = make_sku(stock_at={wh: 2})
    stock.set_stock_policy(sku=sku, policy="backorder", limit=3, location=wh)
    stock.reserve(lines=[LineRequest(sku.code, 5)])
    row = level(sku, wh)
    assert (row.on_hand, row.reserved, row.allowance) == (2, 5, 3)
    with pytest.raises(InsufficientStock):
        stock.reserve(lines=[LineRequest(sku.code, 1)])
    with pytest.raises(InvalidState):
        stock.set_stock_policy(sku=sku, policy="deny")


def test_preorder_with_no_stock_row_yet():
    wh = make_location()
    sku = make_sku()
    stock.set_stock_policy(sku=sku, policy="preorder", limit=2, location=wh)
    stock.reserve(lines=[LineRequest(sku.code, 2)])
    assert sku_availability(sku).sellable == 0
    assert level(sku, wh).reserved == 2


def test_unknown_sku_and_bad_quantities():
    with pytest.raises(UnknownSku):
        stock.reserve(lines=[LineRequest("NOPE", 1)])
    wh = make_location()
    sku = make_sku(stock_at={wh: 1})
    for bad in (0, -1, True, 1.5):
        with pytest.raises(StockError):
            stock.reserve(lines=[LineRequest(sku.code, bad)])


def test_listeners_see_changes_inside_the_transaction():
    wh = make_location()
    sku = make_sku()
    seen = []

    def listener(sku_ids, context):
        seen.append((sku_ids, transaction.get_connection().in_atomic_block))

    stock.on_stock_changed(listener)
    try:
        stock.receive(sku=sku, location=wh, quantity=1)
    finally:
        stock._listeners.remove(listener)
    assert seen == [({sku.id}, True)]


def test_the_sql_form_of_available_gives_the_selectors_number():
    """``available_sql`` (pushers rank by it in the database) and ``availability_for_skus`` state one rule."""
    from django.db import connection

    from inventory_app.availability import availability_for_skus, available_sql
    from inventory_app.models import Sku

    wh, closed = make_location(), make_location(is_active=False)
    spread = make_sku(stock_at={wh: 7, closed: 50})  # units at an inactive location are not available
    promised = make_sku(stock_at={wh: 2})
    stock.set_stock_policy(sku=promised, policy="backorder", limit=3, location=wh)
    stock.reserve(lines=[LineRequest(promised.code, 5)])  # reserved above on_hand: 0 available, not -3
    component, other = make_sku(stock_at={wh: 9}), make_sku(stock_at={wh: 2})
    bundle = make_bundle({component: 2, other: 1})  # min(9 // 2, 2 // 1) = 2
    nothing = make_sku()
    skus = [spread, promised, bundle, nothing, component]
    with connection.cursor() as cursor:
        cursor.execute(f"SELECT s.id, {available_sql('s.id')} FROM {Sku._meta.db_table} s WHERE s.id IN "
                       f"({', '.join(['%s'] * len(skus))})", [s.id for s in skus])
        in_sql = dict(cursor.fetchall())
    expected = {sku_id: a.available for sku_id, a in availability_for_skus(skus).items()}
    assert in_sql == expected == {spread.id: 7, promised.id: 0, bundle.id: 2, nothing.id: 0, component.id: 9}


def test_availability_over_chosen_locations_counts_only_those_and_none_chosen_counts_nothing():
    # The plain-SQL read builds its location filter per shape: a subset, and the empty subset (no rows at all).
    a, b = make_location("loc-a"), make_location("loc-b")
    sku = make_sku("SUBSET", stock_at={a: 5, b: 7})
    assert sku_availability(sku).available == 12
    assert sku_availability(sku, location_ids=[b.pk]).available == 7
    assert sku_availability(sku, location_ids=[]).available == 0
