"""Stateful property test: random operation sequences keep the inventory invariants.

A plain-Python model tracks what each stock row must hold; after every step the
database must agree with it, with the ledger, and with the CHECK invariants.
"""

from __future__ import annotations

import uuid
from collections import defaultdict
from datetime import timedelta

import pytest
from django.db.models import Sum
from django.utils import timezone
from hypothesis import HealthCheck, settings
from hypothesis import strategies as st
from hypothesis.stateful import (
    RuleBasedStateMachine,
    initialize,
    invariant,
    precondition,
    rule,
    run_state_machine_as_test,
)

from inventory_app import stock
from inventory_app.errors import IdempotencyMismatch, InsufficientStock, InvalidState
from inventory_app.models import Reservation, StockLedgerEntry, StockLevel
from inventory_app.stock import LineRequest
from tests.factories import make_bundle, make_location, make_sku

qty = st.integers(min_value=1, max_value=8)


class InventoryMachine(RuleBasedStateMachine):
    @initialize()
    def setup(self):
        self.locations = [make_location(priority=p) for p in (1, 2)]
        self.plain = [make_sku() for _ in range(2)]
        self.backorder = make_sku()
        stock.set_stock_policy(sku=self.backorder, policy="backorder", limit=5, location=self.locations[0])
        self.bundle = make_bundle({self.plain[0]: 2, self.plain[1]: 1})
        self.skus = [*self.plain, self.backorder]
        self.all_codes = [s.code for s in [*self.skus, self.bundle]]
        self.model = defaultdict(lambda: [0, 0])  # (sku_id, location_id) -> [on_hand, reserved]
        self.active: dict[str, dict[tuple[int, int], int]] = {}
        self.keyed: dict[str, tuple[list[LineRequest], dict]] = {}
        self.clock = timezone.now()
        self.watermark: dict[tuple[int, int], object] = {}
        self.sales: list[str] = []

    # -- helpers
    def _held(self, result) -> dict[tuple[int, int], int]:
        held: dict[tuple[int, int], int] = defaultdict(int)
        by_code = {s.code: s.id for s in self.skus}
        by_loc = {loc.code: loc.id for loc in self.locations}
        for line in result["lines"]:
            held[(by_code[line["stock_sku"]], by_loc[line["location"]])] += line["quantity"]
        return held

    def _covered(self, lines: list[LineRequest]) -> bool:
        """Whether the model's free units (and the backorder SKU's allowance) cover every stock SKU the lines need
        (a bundle's units are its components')."""
        recipe = {self.bundle.code: [(self.plain[0], 2), (self.plain[1], 1)]}
        by_code = {s.code: s for s in self.skus}
        needs: dict = defaultdict(int)
        for line in lines:
            for sku, units in recipe.get(line.sku, [(by_code.get(line.sku), 1)]):
                needs[sku] += units * line.quantity
        return all(n <= self._free(sku) for sku, n in needs.items())

    def _free(self, sku, include_allowance=True) -> int:
        total = 0
        for loc in self.locations:
            on_hand, reserved = self.model[(sku.id, loc.id)]
            allowance = 5 if include_allowance and sku == self.backorder and loc == self.locations[0] else 0
            total += max(on_hand - reserved + allowance, 0)
        return total

    # -- rules
    @rule(sku=st.integers(0, 2), loc=st.integers(0, 1), n=qty)
    def receive(self, sku, loc, n):
        sku, loc = self.skus[sku], self.locations[loc]
        stock.receive(sku=sku, location=loc, quantity=n)
        self.model[(sku.id, loc.id)][0] += n

    @rule(sku=st.integers(0, 2), loc=st.integers(0, 1), n=qty)
    def remove(self, sku, loc, n):
        sku, loc = self.skus[sku], self.locations[loc]
        on_hand, reserved = self.model[(sku.id, loc.id)]
        allowance = 5 if sku == self.backorder and loc == self.locations[0] else 0
        try:
            stock.adjust(sku=sku, location=loc, delta=-n, reason="shrink")
            assert on_hand - n >= reserved - allowance, "adjust let reserved units go uncovered"
            self.model[(sku.id, loc.id)][0] -= n
        except InsufficientStock:
            assert on_hand - n < reserved - allowance, "adjust refused although stock covered it"

    @rule(which=st.lists(st.tuples(st.integers(0, 3), qty), min_size=1, max_size=3),
          key=st.none() | st.sampled_from(["k1", "k2", "k3"]))
    def reserve(self, which, key):
        lines = [LineRequest(self.all_codes[i], n) for i, n in which]
        key = f"{key}-{id(self)}" if key else None
        if key in self.keyed:
            previous_lines, previous = self.keyed[key]
            ledger_before = StockLedgerEntry.objects.count()
            if previous_lines == lines:
                again = stock.reserve(lines=lines, key=key)
                assert again["id"] == previous["id"]
            else:
                with pytest.raises(IdempotencyMismatch):
                    stock.reserve(lines=lines, key=key)
            assert StockLedgerEntry.objects.count() == ledger_before, "a repeated key changed the ledger"
            return
        try:
            result = stock.reserve(lines=lines, key=key)
        except InsufficientStock:
            assert not self._covered(lines), "a reservation refused although stock covered it"
            return
        held = self._held(result)
        for cell, n in held.items():
            self.model[cell][1] += n
        self.active[result["id"]] = held
        if key:
            self.keyed[key] = (lines, result)

    @rule(which=st.lists(st.tuples(st.integers(0, 3), qty), min_size=1, max_size=3), repeat=st.booleans())
    def sell(self, which, repeat):
        lines = [LineRequest(self.all_codes[i], n) for i, n in which]
        key = f"sale-{uuid.uuid4()}"  # the database outlives each example's machine: keys must never repeat
        try:
            result = stock.sell(lines=lines, key=key)
        except InsufficientStock:
            assert not self._covered(lines), "a sale refused although stock covered it"
            return
        self.sales.append(result["id"])
        for cell, n in self._held(result).items():
            self.model[cell][0] -= n
        if repeat:  # a redelivered order: the same key answers the first sale and moves nothing
            ledger_before = StockLedgerEntry.objects.count()
            assert stock.sell(lines=lines, key=key)["id"] == result["id"]
            assert StockLedgerEntry.objects.count() == ledger_before, "a repeated sale changed the ledger"

    @precondition(lambda self: self.active)
    @rule(data=st.data(), commit=st.booleans())
    def settle(self, data, commit):
        rid = data.draw(st.sampled_from(sorted(self.active)))
        held = self.active.pop(rid)
        (stock.commit if commit else stock.release)(reservation_id=rid)
        for cell, n in held.items():
            self.model[cell][1] -= n
            if commit:
                self.model[cell][0] -= n
        with pytest.raises(InvalidState):
            (stock.release if commit else stock.commit)(reservation_id=rid)

    @rule(seconds=st.integers(0, 10), sku=st.integers(0, 2), n=st.integers(0, 30), source=st.sampled_from(["a", "b"]))
    def count(self, seconds, sku, n, source):
        sku, loc = self.skus[sku], self.locations[1]
        as_of = self.clock + timedelta(seconds=seconds)
        on_hand, reserved = self.model[(sku.id, loc.id)]
        last = self.watermark.get((sku.id, loc.id, source))
        try:
            result = stock.count(sku=sku, location=loc, on_hand=n, as_of=as_of, source=source)
        except InsufficientStock:
            assert n < reserved
            return
        if last is not None and as_of <= last:
            assert result["stale"]
        else:
            assert result["applied"]
            self.model[(sku.id, loc.id)][0] = n
            self.watermark[(sku.id, loc.id, source)] = as_of

    @rule(sku=st.integers(0, 2), n=qty)
    def transfer(self, sku, n):
        sku = self.skus[sku]
        src, dst = self.locations
        on_hand, reserved = self.model[(sku.id, src.id)]
        try:
            stock.transfer(sku=sku, from_location=src, to_location=dst, quantity=n)
        except InsufficientStock:
            assert on_hand - reserved < n
            return
        self.model[(sku.id, src.id)][0] -= n
        self.model[(sku.id, dst.id)][0] += n

    @precondition(lambda self: self.active)
    @rule()
    def expire_everything(self):
        stock.expire_due(now=timezone.now() + timedelta(days=365))
        for held in self.active.values():
            for cell, n in held.items():
                self.model[cell][1] -= n
        self.active.clear()

    # -- invariants
    @invariant()
    def database_matches_model_and_ledger(self):
        for row in StockLevel.objects.filter(sku__in=self.skus):
            assert [row.on_hand, row.reserved] == self.model[(row.sku_id, row.location_id)]
            assert 0 <= row.reserved <= row.on_hand + row.allowance
            if row.allowance == 0:
                assert row.reserved <= row.on_hand
            sums = StockLedgerEntry.objects.filter(sku_id=row.sku_id, location_id=row.location_id).aggregate(
                o=Sum("on_hand_delta"), r=Sum("reserved_delta"))
            assert (row.on_hand, row.reserved) == (sums["o"] or 0, sums["r"] or 0)

    @invariant()
    def active_reservations_match(self):
        assert Reservation.objects.filter(status="active", lines__sku__in=self.skus).distinct().count() == len(
            self.active)


@pytest.mark.django_db
def test_inventory_invariants_hold_for_random_sequences():
    run_state_machine_as_test(
        InventoryMachine,
        settings=settings(max_examples=40, stateful_step_count=30, deadline=None,
                          suppress_health_check=[HealthCheck.too_slow, HealthCheck.function_scoped_fixture]),
    )


