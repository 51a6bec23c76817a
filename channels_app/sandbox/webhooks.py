"""Background delivery of signed webhooks to the hub.

Deliveries go through one scheduler thread (which applies ``delay_ms``, the reorder window and duplicates)
into a small bounded queue served by a few worker threads, so a control call that "sells" something
returns as soon as the delivery is queued (or, when the caller waits, as soon as the hub answers).
"""

from __future__ import annotations

import heapq
import http.client
import itertools
import queue
import random
import threading
import time
from collections.abc import Callable
from concurrent.futures import Future, InvalidStateError
from dataclasses import dataclass, field, replace
from urllib.parse import urlsplit


@dataclass
class Delivery:
    delivery_id: str
    topic: str
    url: str | None
    body: bytes
    headers: dict[str, str]
    copies: int = 1
    attempt: int = 1
    future: Future = field(default_factory=Future)


def _resolve(future: Future, value) -> None:
    # Copies of one delivery race to report; the first answer is the one the caller sees.
    try:
        future.set_result(value)
    except InvalidStateError:
        pass


class WebhookSender:
    def __init__(
        self,
        *,
        workers: int = 1,
        queue_size: int = 64,
        timeout: tuple[float, float] = (3.0, 10.0),
        on_attempt: Callable[[Delivery, int | None, str | None], None] | None = None,
        rng: random.Random | None = None,
        retries: int = 0,
        retry_backoff_s: float = 1.0,
        is_success: Callable[[int], bool] = lambda status: 200 <= status < 300,
    ):
        self.timeout = timeout
        self.on_attempt = on_attempt
        self.retries = retries
        self.retry_backoff_s = retry_backoff_s
        self.is_success = is_success
        self.rng = rng or random.Random()
        self.reorder_window_s = 0.0
        self.duplicate_rate = 0.0
        self._queue: queue.Queue[Delivery | None] = queue.Queue(maxsize=queue_size)
        self._cond = threading.Condition()
        self._timed: list[tuple[float, int, Delivery]] = []
        self._held: list[Delivery] = []
        self._held_until: float | None = None
        self._seq = itertools.count()
        self._outstanding = 0
        self._closed = False
        self._local = threading.local()
        self._threads = [threading.Thread(target=self._schedule, name="sandbox-webhook-scheduler", daemon=True)]
        self._threads += [
            threading.Thread(target=self._work, name=f"sandbox-webhook-{i}", daemon=True) for i in range(max(1, workers))
        ]
        for thread in self._threads:
            thread.start()

    # -- producer side -------------------------------------------------------------------------------------

    def submit(self, delivery: Delivery, *, delay_ms: int = 0) -> Future:
        with self._cond:
            if self.duplicate_rate and self.rng.random() < self.duplicate_rate:
                delivery.copies += 1
            self._outstanding += delivery.copies
            release = time.monotonic() + delay_ms / 1000.0
            heapq.heappush(self._timed, (release, next(self._seq), delivery))
            self._cond.notify_all()
        return delivery.future

    def flush(self, timeout: float = 10.0) -> bool:
        """Wait until every queued, held and in-flight delivery has been attempted."""
        deadline = time.monotonic() + timeout
        with self._cond:
            while self._outstanding:
                left = deadline - time.monotonic()
                if left <= 0:
                    return False
                self._cond.wait(min(left, 0.05))
        return True

    def pending(self) -> int:
        with self._cond:
            return self._outstanding

    def drop_pending(self) -> None:
        """Forget everything not yet handed to a worker (used by reset)."""
        with self._cond:
            dropped = [d for _, _, d in self._timed] + self._held
            self._timed.clear()
            self._held.clear()
            self._held_until = None
            for delivery in dropped:
                self._outstanding -= delivery.copies
                _resolve(delivery.future, None)
            self._cond.notify_all()

    def close(self) -> None:
        with self._cond:
            self._closed = True
            self._cond.notify_all()
        for _ in self._threads[1:]:
            try:
                self._queue.put_nowait(None)
            except queue.Full:
                break

    # -- scheduler -----------------------------------------------------------------------------------------

    def _schedule(self) -> None:
        while True:
            ready: list[Delivery] = []
            with self._cond:
                while not self._closed:
                    now = time.monotonic()
                    while self._timed and self._timed[0][0] <= now:
                        delivery = heapq.heappop(self._timed)[2]
                        if self.reorder_window_s > 0:
                            if not self._held:
                                self._held_until = now + self.reorder_window_s
                            self._held.append(delivery)
                        else:
                            ready.append(delivery)
                    if self._held and (self.reorder_window_s <= 0 or now >= (self._held_until or 0)):
                        self.rng.shuffle(self._held)
                        ready.extend(self._held)
                        self._held.clear()
                        self._held_until = None
                    if ready:
                        break
                    waits = [0.5]
                    if self._timed:
                        waits.append(self._timed[0][0] - now)
                    if self._held_until is not None:
                        waits.append(self._held_until - now)
                    self._cond.wait(max(0.001, min(waits)))
                if self._closed:
                    return
            # Outside the condition: a full queue blocks here, never a producer holding the lock.
            for delivery in ready:
                for _ in range(delivery.copies):
                    self._queue.put(delivery)

    # -- workers -------------------------------------------------------------------------------------------

    def _post(self, url: str, body: bytes, headers: dict[str, str]) -> int:
        """POST one delivery on this thread's keep-alive connection to the hub; its status. A platform's sender,
        not the hub's client: plain ``http.client`` (``requests`` was over half the CPU of a benchmark's sandboxes
        at 200 webhooks a second, CPU the hub on the same machine then lacked). No redirect is followed (platforms
        count one as a failure); a connection the hub closed while idle is opened again once."""
        parts = urlsplit(url)
        target = (parts.scheme, parts.hostname, parts.port)
        path = parts.path + (f"?{parts.query}" if parts.query else "")
        connections = self._local.__dict__.setdefault("connections", {})
        for attempt in (1, 2):
            conn = connections.pop(target, None)
            reused = conn is not None
            if conn is None:
                kind = http.client.HTTPSConnection if parts.scheme == "https" else http.client.HTTPConnection
                conn = kind(parts.hostname, parts.port, timeout=self.timeout[0])
                conn.connect()
                conn.sock.settimeout(self.timeout[1])
            try:
                conn.request("POST", path, body=body, headers=headers)
                reply = conn.getresponse()
                reply.read()
            except (http.client.RemoteDisconnected, ConnectionResetError, BrokenPipeError):
                conn.close()
                if reused and attempt == 1:
                    continue
                raise
            except BaseException:
                conn.close()
                raise
            if not reply.will_close:
                connections[target] = conn
            else:
                conn.close()
            return reply.status
        raise AssertionError("unreachable")

    def _work(self) -> None:
        while True:
            delivery = self._queue.get()
            if delivery is None:
                return
            status: int | None = None
            error: str | None = None
            if delivery.url:
                try:
                    status = self._post(delivery.url, delivery.body, delivery.headers)
                except Exception as exc:  # noqa: BLE001 - refused, reset, timed out, garbled, a bad URL or header
                    # Whatever it is, the delivery failed and is retried: a worker that died here left the delivery
                    # outstanding for ever.
                    error = f"{type(exc).__name__}: {exc}"
            try:
                if self.on_attempt is not None:
                    self.on_attempt(delivery, status, error)
            finally:
                _resolve(delivery.future, status)
                failed = delivery.url is not None and (status is None or not self.is_success(status))
                with self._cond:
                    if failed and delivery.attempt <= self.retries and not self._closed:
                        # Platforms retry with the original payload and delivery id, backing off exponentially.
                        retry = replace(delivery, copies=1, attempt=delivery.attempt + 1)
                        release = time.monotonic() + self.retry_backoff_s * 2 ** (delivery.attempt - 1)
                        heapq.heappush(self._timed, (release, next(self._seq), retry))
                        self._outstanding += 1
                    self._outstanding -= 1
                    self._cond.notify_all()
