"""Prometheus metrics for web and worker processes (multiprocess mode when PROMETHEUS_MULTIPROC_DIR is set)."""

from __future__ import annotations

from prometheus_client import Counter, Histogram

WEBHOOKS = Counter("tally_webhooks_total", "Webhook deliveries by channel and outcome", ["channel", "outcome"])
INBOUND_PROCESSED = Counter("tally_inbound_events_total", "Inbound events processed by outcome", ["channel", "outcome"])
INBOUND_SECONDS = Histogram("tally_inbound_processing_seconds", "Time to apply one inbound event", ["channel"],
                            buckets=(0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1, 2.5, 5, 10))
PUSHES = Counter("tally_pushes_total", "Listing pushes by channel and outcome", ["channel", "outcome"])
PUSH_SECONDS = Histogram("tally_push_request_seconds", "Duration of one push request", ["channel"],
                         buckets=(0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1, 2.5, 5, 10))
SYNC_LAG = Histogram("tally_sync_lag_seconds", "Oldest unpushed stock change to channel acknowledgement", ["channel"],
                     buckets=(0.01, 0.02, 0.03, 0.05, 0.1, 0.2, 0.5, 1, 2, 5, 10, 30, 60, 300))  # 30 ms, 200 ms, 1 s: targets
RATE_LIMIT_WAITS = Counter("tally_rate_limit_waits_total", "Times a push waited for the channel's rate limit", ["channel"])
RETRIES = Counter("tally_retries_total", "Retries by kind", ["kind", "channel"])
DEAD_LETTERS = Counter("tally_dead_letters_total", "Inbound events or listings parked after the retry budget",
                       ["kind", "channel"])
OVERSOLD_UNITS = Counter("tally_oversold_units_total", "Units a channel sold that the hub could not cover", ["channel"])
