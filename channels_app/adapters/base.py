"""The one adapter interface every channel kind implements.

An adapter knows one platform: how its webhooks name deliveries and topics, how its payloads
become canonical commands, how to write stock there (batched to its request limits) and how to
read stock back for reconciliation. It holds no state of its own beyond an HTTP session; the
push service decides what to send and records what happened.
"""

from __future__ import annotations

import json
from collections.abc import Iterator, Mapping
from dataclasses import dataclass, field
from datetime import UTC, datetime
from typing import Any

import requests

from channels_app.adapters import http
from channels_app.commands import Command
from channels_app.models import Channel, Listing
from channels_app.ratelimit import RateLimiter, limiter_for


class PayloadError(ValueError):
    """The body is signed but cannot be understood: recorded as failed, never retried."""


@dataclass(frozen=True)
class Delivery:
    dedup_key: str
    delivery_id: str
    topic: str
    occurred_at: datetime | None = None


@dataclass
class PushItem:
    listing: Listing
    quantity: int
    # What we believe the channel holds now (for compare-and-set); None when unknown.
    expected_remote: int | None = None


# The error of a listing a channel refused only because another listing of the same request failed its
# compare-and-set (the whole request is refused): the outbound service pushes it again at once.
BATCH_REFUSED = "batch refused by a conflict"


@dataclass
class PushResult:
    listing_id: int
    ok: bool
    quantity: int | None = None
    error: str = ""
    http_status: int | None = None
    retryable: bool = True
    # Compare-and-set refused: the channel holds ``remote_quantity``, not what we expected.
    conflict: bool = False
    remote_quantity: int | None = None


@dataclass
class RemoteLevel:
    """One listing's stock as the channel reports it (reconciliation)."""

    ref: dict[str, str]
    quantity: int
    extra: dict[str, Any] = field(default_factory=dict)


def parse_time(value: Any) -> datetime | None:
    if not value:
        return None
    if isinstance(value, int | float):
        return datetime.fromtimestamp(value, tz=UTC)
    text = str(value).strip()
    if text.isdigit():
        return datetime.fromtimestamp(int(text), tz=UTC)
    try:
        parsed = datetime.fromisoformat(text.replace("Z", "+00:00"))
    except ValueError:
        return None
    return parsed if parsed.tzinfo else parsed.replace(tzinfo=UTC)


# The longest a call the push round did not pay for waits for its tokens when no lease bounds it (a direct call).
TOKEN_WAIT_SECONDS = 10.0


class ChannelAdapter:
    kind: str = ""
    # Most listings one stock request may carry.
    max_batch: int = 1

    def __init__(self, channel: Channel):
        self.channel = channel
        self.limiter: RateLimiter = limiter_for(channel)

    @property
    def session(self) -> requests.Session:
        # Looked up per call, not kept: requests.Session is not thread-safe, and one adapter may be used from
        # several threads (a push round sends to its channels in parallel).
        return http.session_for(f"channel:{self.channel.pk}")

    # -- inbound --------------------------------------------------------------------------
    def is_ping(self, headers: Mapping[str, str], body: bytes) -> bool:
        """A set-up handshake that carries no event (answered 200, not stored)."""
        return False

    def delivery(self, headers: Mapping[str, str], payload: Any) -> Delivery:
        raise PayloadError(f"{self.kind} webhooks are not accepted on this endpoint.")

    def commands(self, topic: str, payload: Any) -> list[Command]:
        return []

    # -- outbound -------------------------------------------------------------------------
    def requests_needed(self, items: list[PushItem]) -> int:
        """How many API calls a push of these items costs (rate-limit tokens)."""
        return max(1, -(-len(items) // self.max_batch))

    def push(self, items: list[PushItem]) -> list[PushResult]:
        raise PayloadError(f"{self.kind} does not accept stock pushes.")

    def read_stock(self) -> Iterator[RemoteLevel]:
        return iter(())

    # -- scheduled catalog and prices -----------------------------------------------------
    # Platforms whose catalog API Tally does not drive yet say so; the run record shows it.
    publishes_catalog: bool = False
    catalog_batch: int = 100

    @property
    def catalog_limiter(self) -> RateLimiter:
        """The bucket catalog and price calls draw on: the channel's own, unless they go through another API."""
        return self.limiter

    def catalog_requests_needed(self, items: list) -> int:
        return max(1, -(-len(items) // self.catalog_batch))

    def publish_catalog(self, items: list) -> None:
        """Send names, active flags and/or prices (``publishing.CatalogItem``); raise ChannelError on failure."""
        raise PayloadError(f"{self.kind}: catalog and price publishing is not supported for this platform.")

    # -- helpers --------------------------------------------------------------------------
    @property
    def base_url(self) -> str:
        return self.channel.api_base_url.rstrip("/")

    def observe(self, response: requests.Response) -> None:
        """Correct the shared bucket from the platform's rate headers (overridden per platform)."""

    def request(self, method: str, path: str, **kwargs) -> requests.Response:
        return http.send(self.session, method, f"{self.base_url}{path}", on_response=self.observe, **kwargs)

    def read(self, method: str, path: str, **kwargs) -> requests.Response:
        """A read beside the pushes (a reconciliation's page): after its rate-limit token, as every request is.
        Without it, pages read at once on a bucket the pushers had spent were refused 429 and the run failed."""
        self.take_tokens(1, what=f"read {path}")
        return self.request(method, path, **kwargs)

    def take_tokens(self, tokens: float, *, what: str) -> None:
        """Take rate-limit tokens for a call beyond those a push round pays for up front (a compare-and-set
        conflict's re-read and its retry), waiting for them while the push's lease leaves time. Unmetered, several
        pushers in conflict at once spent points the bucket believed it had and the shop answered THROTTLED. Waiting
        here, not giving up: the refused mutation is spent already, and a push that gave up spent it again in the
        next round, for ever on a shop short of points. OutOfTokens (nothing sent) when the time runs out."""
        tokens = min(tokens, self.limiter.capacity)  # more than the bucket holds would wait for ever
        left = http.time_left()
        max_wait = TOKEN_WAIT_SECONDS if left is None else max(left - http.MIN_ATTEMPT_SECONDS, 0.0)
        wait = self.limiter.acquire(tokens, max_wait=max_wait)
        if wait:
            raise http.OutOfTokens(f"{what}: no rate-limit tokens within the push's time", retry_after=wait)

    @staticmethod
    def json_body(body: bytes) -> Any:
        try:
            return json.loads(body)
        except (ValueError, UnicodeDecodeError) as exc:
            raise PayloadError(f"Body is not valid JSON: {exc}") from None

    @staticmethod
    def results_all(items: list[PushItem], *, ok: bool, error: str = "", status: int | None = None,
                    retryable: bool = True) -> list[PushResult]:
        return [PushResult(listing_id=i.listing.id, ok=ok, quantity=i.quantity if ok else None, error=error,
                           http_status=status, retryable=retryable) for i in items]
