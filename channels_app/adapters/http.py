"""HTTP for adapters: one keep-alive session per channel, timeouts, and tenacity retries.

5xx, timeouts and connection errors are retried a few times with jittered exponential backoff
inside the call; 429 is not retried here: it raises ``RateLimited`` with the platform's
Retry-After so the rate limiter can hold every worker back, not just this one. Other 4xx raise
``PermanentError``: retrying cannot fix them.
"""

from __future__ import annotations

import os
import threading
from collections.abc import Callable
from email.utils import parsedate_to_datetime

import requests
from django.utils import timezone
from tenacity import (
    retry,
    retry_if_exception_type,
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


class PermanentError(ChannelError):
    """A 4xx the platform will keep giving: shown on the listing, not retried."""


def parse_retry_after(value: str | None, default: float = 1.0) -> float:
    if not value:
        return default
    try:
        return max(float(value), 0.0)
    except ValueError:
        try:
            return max((parsedate_to_datetime(value) - timezone.now()).total_seconds(), 0.0)
        except (TypeError, ValueError):
            return default


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

    @retry(
        retry=retry_if_exception_type(TransientError),
        stop=stop_after_attempt(attempts),
        wait=wait_random_exponential(multiplier=0.05, max=1.0),
        reraise=True,
    )
    def once() -> requests.Response:
        try:
            response = session.request(method, url, timeout=(CONNECT_TIMEOUT, READ_TIMEOUT), **kwargs)
        except (requests.ConnectionError, requests.Timeout) as exc:
            raise TransientError(f"{method} {url}: {type(exc).__name__}") from exc
        if on_response is not None:
            on_response(response)
        status = response.status_code
        if status == 429:
            raise RateLimited(f"{method} {url}: 429", retry_after=parse_retry_after(response.headers.get("Retry-After")))
        if status >= 500:
            raise TransientError(f"{method} {url}: {status}", status=status)
        if status >= 400:
            raise PermanentError(f"{method} {url}: {status} {response.text[:300]}", status=status)
        return response

    return once()
