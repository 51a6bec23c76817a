"""Shared HTTP plumbing for remote providers: short timeouts, tenacity retries, error classification."""

from __future__ import annotations

import json
import logging
import os
import re
import threading
from decimal import Decimal

import requests
from tenacity import Retrying, retry_if_exception_type, stop_after_attempt, wait_exponential

from tax_app.models import ProviderConfig
from tax_app.providers.base import ProviderRejected, ProviderUnavailable

log = logging.getLogger(__name__)
_local = threading.local()
_DECIMAL = re.compile(r'"__dec__(-?[0-9]+(?:\.[0-9]+)?(?:E[+-]?[0-9]+)?)__"')


def dumps(payload: dict) -> str:
    """JSON with Decimals written as JSON numbers, digit for digit, without passing through float."""
    def default(value):
        if isinstance(value, Decimal):
            return f"__dec__{value}__"
        raise TypeError(f"not JSON serialisable: {type(value).__name__}")

    return _DECIMAL.sub(r"\1", json.dumps(payload, default=default, separators=(",", ":")))


def _session() -> requests.Session:
    # One keep-alive session per thread: requests.Session is not documented as thread-safe.
    session = getattr(_local, "session", None)
    if session is None:
        session = _local.session = requests.Session()
    return session


class HttpProvider:
    remote = True

    def __init__(self, config: ProviderConfig):
        self.config = config
        self.name = config.name
        self.base_url = config.base_url.rstrip("/")

    def api_key(self) -> str:
        if self.config.api_key_env:
            return os.environ.get(self.config.api_key_env, "")
        return self.config.api_key

    def headers(self) -> dict[str, str]:
        return {}

    def call(self, method: str, path: str, payload: dict | None = None) -> dict:
        retrying = Retrying(
            stop=stop_after_attempt(max(1, self.config.attempts)),
            wait=wait_exponential(multiplier=0.02, max=0.2),
            retry=retry_if_exception_type(ProviderUnavailable),
            reraise=True,
        )
        for attempt in retrying:
            with attempt:
                return self._once(method, path, payload)
        raise ProviderUnavailable(f"{self.name}: no attempt made")  # pragma: no cover - reraise=True

    def _once(self, method: str, path: str, payload: dict | None) -> dict:
        timeout = self.config.timeout_ms / 1000
        headers = {"Accept": "application/json", **self.headers()}
        body = None
        if payload is not None:
            headers["Content-Type"] = "application/json"
            body = dumps(payload).encode()
        try:
            response = _session().request(method, self.base_url + path, data=body, headers=headers,
                                          timeout=(timeout, timeout))
        except (requests.Timeout, requests.ConnectionError) as exc:
            raise ProviderUnavailable(f"{self.name}: {type(exc).__name__}") from exc
        if response.status_code >= 500:
            raise ProviderUnavailable(f"{self.name}: HTTP {response.status_code}")
        if response.status_code >= 400:
            # The body may echo our request; log only the status so no customer data or key lands in logs.
            log.warning("tax provider %s refused the request: HTTP %s", self.name, response.status_code)
            raise ProviderRejected(f"{self.name}: HTTP {response.status_code}")
        try:
            return response.json(parse_float=Decimal)
        except ValueError as exc:
            raise ProviderUnavailable(f"{self.name}: malformed JSON") from exc


def as_decimal(value) -> Decimal:
    if value is None or value == "":
        return Decimal("0")
    if isinstance(value, Decimal):
        return value
    if isinstance(value, int):
        return Decimal(value)
    return Decimal(str(value))
