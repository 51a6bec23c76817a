"""Rate limiters with the platforms' own algorithms.

None of these lock: the sandbox state calls them under its one lock, so a limiter never needs its own.
Every method takes ``now`` (a ``time.monotonic()`` value) so the caller decides the clock and tests can
replay exact sequences.
"""

from __future__ import annotations

import math


class LeakyBucket:
    """Shopify REST: each call adds one unit, the bucket drains continuously at ``leak_per_s``."""

    def __init__(self, capacity: int, leak_per_s: float):
        self.capacity = capacity
        self.leak_per_s = leak_per_s
        self.level = 0.0
        self._at: float | None = None

    def _drain(self, now: float) -> None:
        if self._at is not None:
            self.level = max(0.0, self.level - (now - self._at) * self.leak_per_s)
        self._at = now

    def take(self, now: float) -> tuple[bool, float]:
        """(admitted, retry_after_seconds)."""
        self._drain(now)
        if self.level + 1 <= self.capacity + 1e-9:
            self.level += 1
            return True, 0.0
        return False, (self.level + 1 - self.capacity) / self.leak_per_s

    def used(self, now: float) -> int:
        self._drain(now)
        # Shopify reports whole calls; rounding up means a full bucket never shows as 39/40 while refusing.
        return min(self.capacity, math.ceil(self.level - 1e-9))


class CostBucket:
    """Shopify GraphQL: points restored continuously; a query runs only if its requested cost is available."""

    def __init__(self, maximum: float, restore_per_s: float):
        self.maximum = float(maximum)
        self.restore_per_s = float(restore_per_s)
        self.available = float(maximum)
        self._at: float | None = None

    def _restore(self, now: float) -> None:
        if self._at is not None:
            self.available = min(self.maximum, self.available + (now - self._at) * self.restore_per_s)
        self._at = now

    def take(self, cost: float, now: float) -> bool:
        self._restore(now)
        if cost <= self.available + 1e-9:
            self.available -= cost
            return True
        return False

    def refund(self, points: float) -> None:
        self.available = min(self.maximum, self.available + points)

    def status(self, now: float) -> dict:
        self._restore(now)
        return {
            "maximumAvailable": self.maximum,
            "currentlyAvailable": math.floor(self.available),
            "restoreRate": self.restore_per_s,
        }


class FixedWindow:
    """BigCommerce: a quota per window that starts with the first request after the previous one ended."""

    def __init__(self, quota: int, window_s: float):
        self.quota = quota
        self.window_s = window_s
        self.used = 0
        self._started: float | None = None

    def _expired(self, now: float) -> bool:
        return self._started is None or now - self._started >= self.window_s

    def take(self, now: float) -> bool:
        if self._expired(now):
            self._started = now
            self.used = 0
        if self.used < self.quota:
            self.used += 1
            return True
        return False

    # Reading the window must not open a new one: only a request starts a window.
    def left(self, now: float) -> int:
        return self.quota if self._expired(now) else max(0, self.quota - self.used)

    def reset_ms(self, now: float) -> int:
        if self._expired(now):
            return int(self.window_s * 1000)
        return max(0, math.ceil((self._started + self.window_s - now) * 1000))


class TokenBucket:
    """Amazon SP-API usage plans: ``rate`` tokens per second, at most ``burst`` saved up."""

    def __init__(self, rate: float, burst: int):
        self.rate = float(rate)
        self.burst = burst
        self.tokens = float(burst)
        self._at: float | None = None

    def take(self, now: float) -> bool:
        if self._at is not None:
            self.tokens = min(self.burst, self.tokens + (now - self._at) * self.rate)
        self._at = now
        if self.tokens >= 1 - 1e-9:
            self.tokens -= 1
            return True
        return False
