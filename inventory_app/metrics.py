"""Prometheus counters for stock operations."""

from prometheus_client import Counter

RESERVATIONS = Counter("tally_reservation_outcomes_total", "Reservation attempts by outcome", ["outcome"])
