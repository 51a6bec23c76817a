"""Real threads against real PostgreSQL: no oversell, no deadlock, no lost update."""

from __future__ import annotations

import random
import threading
from collections import Counter

import pytest
from django.db import OperationalError, connection
from django.db.models import Sum

from inventory_app import stock
from inventory_app.errors import InsufficientStock
from inventory_app.models import Reservation, StockLedgerEntry, StockLevel
from inventory_app.stock import LineRequest
from tests.factories import make_bundle, make_location, make_sku

pytestmark = pytest.mark.django_db(transaction=True)

THREADS = 16
ATTEMPTS = 1000


def hammer(make_request, attempts=ATTEMPTS, threads=THREADS) -> Counter:
    outcomes: Counter = Counter()
    lock = threading.Lock()
    todo = list(range(attempts))
    start = threading.Barrier(threads)

    def worker():
        start.wait()
        try:
            while True:
                with lock:
                    if not todo:
                        return
                    i = todo.pop()
                try:
                    make_request(i)
                    result = "ok"
                except InsufficientStock:
                    result = "insufficient"
                except OperationalError as exc:  # deadlocks surface here
                    result = f"db-error:{exc.__class__.__name__}"
                with lock:
                    outcomes[result] += 1
        finally:
            connection.close()

    pool = [threading.Thread(target=worker) for _ in range(threads)]
    for t in pool:
        t.start()
    for t in pool:
        t.join()
    return outcomes


def ledger_consistent() -> bool:
    for row in StockLevel.objects.all():
        sums = StockLedgerEntry.objects.filter(sku_id=row.sku_id, location_id=row.location_id).aggregate(
            o=Sum("on_hand_delta"), r=Sum("reserved_delta"))
        if (row.on_hand, row.reserved) != (sums["o"] or 0, sums["r"] or 0):
            return False
    return True


def test_1000_attempts_for_100_units_give_exactly_100():
    wh1, wh2 = make_location(priority=1), make_location(priority=2)
    sku = make_sku(stock_at={wh1: 60, wh2: 40})
    outcomes = hammer(lambda i: stock.reserve(lines=[LineRequest(sku.code, 1)], key=f"attempt-{i}"))
    assert outcomes == Counter({"ok": 100, "insufficient": 900})
    assert StockLevel.objects.filter(sku=sku).aggregate(r=Sum("reserved"))["r"] == 100
    assert Reservation.objects.count() == 100
    assert ledger_consistent()


def test_bundle_and_components_sold_alone_compete_fairly():
    wh = make_location()
    tee, cap = make_sku(stock_at={wh: 100}), make_sku(stock_at={wh: 100})
    kit = make_bundle({tee: 2, cap: 1})
    rng = random.Random(7)
    choices = [rng.choice([kit.code, tee.code, cap.code]) for _ in range(ATTEMPTS)]
    outcomes = hammer(lambda i: stock.reserve(lines=[LineRequest(choices[i], 1)], key=f"b-{i}"))
    assert set(outcomes) <= {"ok", "insufficient"}, outcomes
    tee_row, cap_row = StockLevel.objects.get(sku=tee), StockLevel.objects.get(sku=cap)
    assert tee_row.reserved <= tee_row.on_hand == 100 and cap_row.reserved <= cap_row.on_hand == 100
    # Every success is accounted for in reserved units, exactly.
    kits = Reservation.objects.filter(lines__requested_sku=kit).distinct().count()
    tees = Reservation.objects.filter(lines__requested_sku=tee).distinct().count()
    caps = Reservation.objects.filter(lines__requested_sku=cap).distinct().count()
    assert outcomes["ok"] == kits + tees + caps
    assert tee_row.reserved == 2 * kits + tees and cap_row.reserved == kits + caps
    assert ledger_consistent()


def test_mixed_operations_on_two_skus_never_deadlock():
    """Multi-SKU reservations in both orders plus commits, releases and adjustments."""
    wh1, wh2 = make_location(priority=1), make_location(priority=2)
    a, b = make_sku(stock_at={wh1: 300, wh2: 300}), make_sku(stock_at={wh1: 300, wh2: 300})
    rng = random.Random(11)
    plan = [rng.random() for _ in range(600)]

    def op(i):
        first, second = (a, b) if plan[i] < 0.5 else (b, a)
        result = stock.reserve(lines=[LineRequest(first.code, 1), LineRequest(second.code, 2)])
        if plan[i] < 0.3:
            stock.commit(reservation_id=result["id"])
        elif plan[i] < 0.6:
            stock.release(reservation_id=result["id"])
        if plan[i] > 0.9:
            stock.adjust(sku=first, location=wh2, delta=1, reason="found")

    outcomes = hammer(op, attempts=len(plan))
    assert set(outcomes) <= {"ok", "insufficient"}, outcomes
    assert ledger_consistent()


def test_one_key_sent_by_many_threads_at_once_reserves_once_and_answers_alike():
    """The key is written with the work, not read first: the losers of the race wait on the key's index
    entry, roll their own work back and answer with the winner's reservation."""
    wh = make_location()
    sku = make_sku(stock_at={wh: 100})
    answers: list[str] = []
    lock = threading.Lock()

    def same_key(_):
        result = stock.reserve(lines=[LineRequest(sku.code, 2)], key="cart-race")
        with lock:
            answers.append(result["id"])

    outcomes = hammer(same_key, attempts=THREADS)
    assert outcomes == Counter(ok=THREADS)
    assert len(set(answers)) == 1 and Reservation.objects.count() == 1
    assert StockLevel.objects.get(sku=sku).reserved == 2 and ledger_consistent()


def test_the_same_order_placed_at_once_by_many_threads_is_one_order_sold_once():
    """Redeliveries of one order racing each other (a platform's retry while the first is being applied): the
    order's insert makes the others wait for its transaction, then find the order and its lines. One order,
    each line sold once, whatever interleaving."""
    from django.db import transaction

    from inventory_app import orders
    from inventory_app.models import Order, OrderLine

    wh = make_location()
    tee, cap = make_sku(stock_at={wh: 50}), make_sku(stock_at={wh: 50})
    lines = [orders.OrderLineRequest(external_id="l1", sku=tee, quantity=2),
             orders.OrderLineRequest(external_id="l2", sku=cap, quantity=3)]
    for round_ in range(5):
        external_id = f"race-{round_}"

        def place(_i, external_id=external_id):
            with transaction.atomic():
                orders.place_order(channel="shop", external_id=external_id, lines=lines)

        outcomes = hammer(place, attempts=8, threads=8)
        assert outcomes == Counter({"ok": 8}), outcomes
        assert Order.objects.filter(channel="shop", external_id=external_id).count() == 1
        assert OrderLine.objects.filter(order__external_id=external_id).count() == 2
    assert StockLevel.objects.get(sku=tee).on_hand == 50 - 5 * 2
    assert StockLevel.objects.get(sku=cap).on_hand == 50 - 5 * 3
    assert ledger_consistent()
