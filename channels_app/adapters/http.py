"""HTTP for adapters: one keep-alive session per channel, timeouts, and tenacity retries.

5xx, timeouts and connection errors are retried a few times with jittered exponential backoff
inside the call; 429 is not retried here: it raises ``RateLimited`` with the platform's
Retry-After so the rate limiter can hold every worker back, not just this one. A 409 (a conflict with the
resource's state) is retried as a 5xx is. A 5xx that says
when to come back (Retry-After) is retried after that time if the call can wait so long, else it
ends the call as ``Unavailable`` (a ``RateLimited``) with that delay. Other 4xx raise
``PermanentError``: retrying cannot fix them.
"""

from __future__ import annotations

import contextlib
import math
import os
import threading
import time
from collections.abc import Callable, Iterator
from contextvars import ContextVar
from email.utils import parsedate_to_datetime

import requests
from django.utils import timezone
from tenacity import (
    RetryCallState,
    retry,
    retry_if_exception,
    stop_after_attempt,
    wait_random_exponential,
)

CONNECT_TIMEOUT = 3.05
READ_TIMEOUT = 10


class ChannelError(Exception):
    def __init__(self, message: str, *, status: int | None = None):
        super().__init__(message)
        self.status = status


class TransientError(ChannelError):
    """5xx, timeout, connection refused: worth trying again later."""


class RateLimited(ChannelError):
    def __init__(self, message: str, *, retry_after: float, status: int = 429):
        super().__init__(message, status=status)
        self.retry_after = retry_after


class Unavailable(RateLimited):
    """A 5xx whose Retry-After is longer than the call could wait: not retried here, but after that delay, and the
    channel's bucket held back meanwhile, as after a 429 (a store down for maintenance says when it is back: sent
    again three times within a second, and then on the generic backoff, the push went on knocking at a closed
    door)."""


class ServerBusy(TransientError):
    """A 5xx with a Retry-After short enough to wait for inside the call: the next attempt comes after it."""

    def __init__(self, message: str, *, status: int, retry_after: float):
        super().__init__(message, status=status)
        self.retry_after = retry_after


class OutOfTokens(RateLimited):
    """Our own bucket had no tokens for a call in time: not sent. The platform refused nothing."""

    def __init__(self, message: str, *, retry_after: float):
        super().__init__(message, retry_after=retry_after, status=None)


class PermanentError(ChannelError):
    """A 4xx the platform will keep giving: shown on the listing, not retried. ``body``: the answer's text, for an
    adapter that can tell from it which items of a request were refused."""

    def __init__(self, message: str, *, status: int | None = None, body: str = ""):
        super().__init__(message, status=status)
        self.body = body


# The longest Retry-After taken as said: "nan", "inf", 1e12 or a date in the year 9999 made the arithmetic after it
# fail (an outgoing delivery's attempt then rolled back unrecorded and was sent again every few seconds, for ever).
MAX_RETRY_AFTER = 3600.0


def parse_retry_after(value: str | None, default: float = 1.0) -> float:
    """Seconds to wait, from a Retry-After header (seconds or an HTTP date): finite, within [0, MAX_RETRY_AFTER]."""
    if not value:
        return default
    try:
        seconds = float(value)
    except ValueError:
        try:
            seconds = (parsedate_to_datetime(value) - timezone.now()).total_seconds()
        except (TypeError, ValueError, OverflowError):
            return default
    if not math.isfinite(seconds):
        return default if math.isnan(seconds) else MAX_RETRY_AFTER
    return min(max(seconds, 0.0), MAX_RETRY_AFTER)


def _retry_after(response: requests.Response) -> float:
    """A 429's wait: Retry-After, else the window's reset (BigCommerce says it only as X-Rate-Limit-Time-Reset-Ms:
    without it, a second, and a 429 every second until its 30 s window reset)."""
    if response.headers.get("Retry-After"):
        return parse_retry_after(response.headers["Retry-After"])
    reset_ms = response.headers.get("X-Rate-Limit-Time-Reset-Ms", "")
    return min(int(reset_ms) / 1000, MAX_RETRY_AFTER) if reset_ms.isdigit() else 1.0


# The longest Retry-After of a 5xx waited for inside the call (when its deadline leaves that much): the most the
# jittered backoff would wait between two attempts anyway. Longer, the call ends and the listing waits instead of a
# send thread (and the channel's bucket holds every worker back, not just this one).
MAX_INLINE_RETRY_AFTER = 1.0


def _server_retry_after(response: requests.Response) -> float | None:
    """A 5xx's Retry-After in seconds, None when it says none (or nothing that parses)."""
    value = response.headers.get("Retry-After")
    if not value:
        return None
    seconds = parse_retry_after(value, default=-1.0)
    return None if seconds < 0 else seconds


def _inline_budget() -> float:
    """How long the call may wait before its next attempt: MAX_INLINE_RETRY_AFTER, less if the deadline leaves less
    (the attempt after the wait needs MIN_ATTEMPT_SECONDS of its own, or ``_timeout`` refuses it)."""
    left = time_left()
    if left is None:
        return MAX_INLINE_RETRY_AFTER
    return min(MAX_INLINE_RETRY_AFTER, left - MIN_ATTEMPT_SECONDS)


def environment_ca_bundle() -> str | None:
    """The CA bundle the environment names, read as requests reads it (REQUESTS_CA_BUNDLE, then CURL_CA_BUNDLE)."""
    return os.environ.get("REQUESTS_CA_BUNDLE") or os.environ.get("CURL_CA_BUNDLE") or None


_local = threading.local()


def session_for(key: str) -> requests.Session:
    """Keep-alive sessions per channel and thread (requests.Session is not thread-safe)."""
    sessions = getattr(_local, "sessions", None)
    if sessions is None:
        sessions = _local.sessions = {}
    if key not in sessions:
        session = requests.Session()
        session.headers["User-Agent"] = "Tally/1.0 (+https://github.com/tally-hub)"
        # With trust_env, every request looks up proxy variables, no_proxy matching and ~/.netrc again: 0.2 ms of
        # the 1.6-1.8 ms a push request costs here in requests (bench/hot_paths.py). Only a proxy needs that (its
        # no_proxy rules match per URL). A CA bundle named by the environment is set on the session once: kept
        # on for it, trust_env made every push pay the lookups on hosts that set one (this VM and CI set
        # REQUESTS_CA_BUNDLE: 6% of the push worker's CPU at 50 orders/s, py-spy). ~/.netrc is not read, which
        # no channel needs (each carries its own credentials).
        session.trust_env = bool(requests.utils.getproxies())
        bundle = environment_ca_bundle()
        if not session.trust_env and bundle:
            session.verify = bundle
        sessions[key] = session
    return sessions[key]


# When this thread's requests must have ended (time.monotonic), if set: a push's lease. Tenacity's attempts and each
# request's timeouts fit in what is left; past it, nothing more is sent.
_deadline: ContextVar[float | None] = ContextVar("send_deadline", default=None)
# Less than this left: not worth an attempt.
MIN_ATTEMPT_SECONDS = 0.5


class OutOfTime(TransientError):
    """The deadline came before this attempt: not sent, and not retried here (the listing is, later)."""


@contextlib.contextmanager
def deadline(at: float) -> Iterator[None]:
    """Requests sent inside end by ``at`` (time.monotonic): a request that would outlast the pusher's lease let
    another pusher take the listing and send a newer number, which this one's late success then overwrote (three
    attempts of 3 s to connect and 10 to read, and their backoff, ran to 40 s against a 20 s lease)."""
    token = _deadline.set(at)
    try:
        yield
    finally:
        _deadline.reset(token)


def time_left() -> float | None:
    """Seconds until this thread's requests must have ended (``deadline``), None when it has no deadline."""
    at = _deadline.get()
    return None if at is None else at - time.monotonic()


def _timeout() -> tuple[float, float]:
    at = _deadline.get()
    if at is None:
        return CONNECT_TIMEOUT, READ_TIMEOUT
    left = at - time.monotonic()
    if left < MIN_ATTEMPT_SECONDS:
        raise OutOfTime(f"out of time: {max(left, 0):.1f} s left of the push's lease")
    return min(CONNECT_TIMEOUT, left), min(READ_TIMEOUT, left)


def send(
    session: requests.Session,
    method: str,
    url: str,
    *,
    on_response: Callable[[requests.Response], None] | None = None,
    attempts: int = 3,
    **kwargs,
) -> requests.Response:
    """Send with retries on transient failures; return a 2xx response or raise a ChannelError."""
    jitter = wait_random_exponential(multiplier=0.05, max=1.0)

    def wait(state: RetryCallState) -> float:
        # The server said when: that, not our guess (a guess shorter than it only spends an attempt on a refusal).
        told = getattr(state.outcome.exception(), "retry_after", None)
        return told if told is not None else jitter(state)

    @retry(
        retry=retry_if_exception(lambda exc: isinstance(exc, TransientError) and not isinstance(exc, OutOfTime)),
        stop=stop_after_attempt(attempts),
        wait=wait,
        reraise=True,
    )
    def once() -> requests.Response:
        try:
            # Redirects not followed: a POST turned into a GET answered 200 was taken for a push, and the platform's
            # token headers (requests drops only Authorization) went to whatever host the redirect named.
            response = session.request(method, url, timeout=_timeout(), allow_redirects=False, **kwargs)
        except (requests.ConnectionError, requests.Timeout) as exc:
            raise TransientError(f"{method} {url}: {type(exc).__name__}") from exc
        if on_response is not None:
            on_response(response)
        status = response.status_code
        if status == 429:
            raise RateLimited(f"{method} {url}: 429", retry_after=_retry_after(response))
        if status >= 500:
            told = _server_retry_after(response)
            if told is None:
                raise TransientError(f"{method} {url}: {status}", status=status)
            if told > _inline_budget():
                raise Unavailable(f"{method} {url}: {status}, Retry-After {told:g} s", retry_after=told, status=status)
            # Waited for if an attempt is left; after the last one, a failure as any 5xx (counted, backed off).
            raise ServerBusy(f"{method} {url}: {status}, Retry-After {told:g} s", status=status, retry_after=told)
        if status == 409:
            # A conflict with the resource's state (another writer holds it): gone a moment later, unlike other 4xx.
            raise TransientError(f"{method} {url}: 409 {response.text[:300]}", status=status)
        if status >= 300:
            raise PermanentError(f"{method} {url}: {status} {response.text[:300]}", status=status,
                                 body=response.text[:100_000])
        return response

    return once()
