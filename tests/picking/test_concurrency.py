"""Two pick-list runs at once on real PostgreSQL: every committed line lands on exactly one pick list."""

from __future__ import annotations

import threading

import pytest
from django.db import connection

from inventory_app import stock
from picking_app import services
from picking_app.models import PickListLine
from tests.factories import make_location, make_sku

pytestmark = pytest.mark.django_db(transaction=True)


def test_concurrent_runs_never_pick_a_line_twice():
    here = make_location("wh-race", priority=1)
    layout = services.build_layout(location=here, aisles=4, cells_per_block=6)
    for k in range(6):
        sku = make_sku(f"R{k}", stock_at={here: 100})
        layout.bins.filter(aisle=k % 4, cell=k, side="right").update(sku=sku)
    line_count = 0
    for k in range(12):
        lines = [{"sku": f"R{k % 6}", "quantity": 1}, {"sku": f"R{(k + 3) % 6}", "quantity": 2}]
        stock.commit(reservation_id=stock.reserve(lines=stock.lines_from(lines))["id"])
        line_count += 2
    barrier = threading.Barrier(4)
    made, errors = [], []

    def run():
        try:
            barrier.wait()
            made.append(len(services.create_pick_lists(location="wh-race", capacity=7).pick_lists))
        except Exception as exc:  # any failure is reported by the assertion below
            errors.append(exc)
        finally:
            connection.close()

    threads = [threading.Thread(target=run) for _ in range(4)]
    for t in threads:
        t.start()
    for t in threads:
        t.join()
    assert errors == []
    # The layout lock serialises the runs: one of them batches everything, the others find nothing left.
    assert sorted(made)[:-1] == [0, 0, 0] and made and max(made) >= 6
    assert PickListLine.objects.count() == line_count
    assert PickListLine.objects.values("reservation_line").distinct().count() == line_count
