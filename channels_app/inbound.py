"""Channels in: receive a webhook (verify, store, answer) and process it (payload -> stock), once.

Receipt is fast and durable: the event row is committed before we answer, then a drain is woken
after commit; a sweeper wakes one for anything left pending, so a crash between commit and
wake-up costs latency, never an event. Processing applies the commands and marks the event
processed in one transaction: a worker killed half-way leaves the event pending, to be redone.

The inbox is its own queue: a drain task takes the oldest pending event (``FOR UPDATE SKIP
LOCKED``, so drains in any number of processes never share one), applies it, and takes the
next, until none is left. Receipt wakes a drain through a Redis flag, so a burst of webhooks
costs one broker message, not one each (publishing a task was about a third of a receipt's CPU), and a
busy drain goes from one event to the next without a broker round trip.
"""

from __future__ import annotations

import contextlib
import hashlib
import json
import logging
import os
import time
import uuid
from collections.abc import Mapping
from contextvars import ContextVar
from dataclasses import dataclass
from datetime import timedelta
from decimal import Decimal
from functools import lru_cache

from django.db import DatabaseError, IntegrityError, connection, transaction
from django.utils import timezone

from channels_app import metrics, rules
from channels_app.adapters import adapter_for
from channels_app.adapters.base import ChannelAdapter, PayloadError
from channels_app.commands import (
    Command,
    Ignored,
    InventoryReported,
    ListingRef,
    OrderCancelled,
    OrderPlaced,
    RefundCreated,
)
from channels_app.models import Channel, ChannelLocation, InboundEvent, InboundStatus, Listing, WebhookRejection
from channels_app.selectors import channel_config_columns, channel_from_config
from channels_app.signatures import SignatureError, verify
from channels_app.sync import (
    applying_behind_ms,
    listing_writes_at_end,
    update_listings_in_order,
    wakes_together,
    write_listings_at_end,
    writes_listing_of,
)
from hub.broker import missing_messages
from hub.observability import correlation_id
from hub.redis import get_redis
from inventory_app import orders, stock
from inventory_app.errors import OrderNotFound, StockError
from inventory_app.models import BundleComponent, Order, OrderLine, ReservationLine, Sku, StockLevel
from inventory_app.statements import Statements, columns, fetch, instances, savepoint

log = logging.getLogger(__name__)
_EVENT_CHANNEL = InboundEvent._meta.get_field("channel")
_EVENT_WIDTH = len(InboundEvent._meta.concrete_fields)
_LISTING_SKU = Listing._meta.get_field("sku")
_LISTING_WIDTH = len(Listing._meta.concrete_fields)

MAX_BODY_BYTES = 1024 * 1024
MAX_ATTEMPTS = 8
# A cancel or refund that arrives before its order waits this many tries (about two minutes) for it.
WAIT_FOR_ORDER_ATTEMPTS = 6
# Set while a drain is queued and has not started: receipts meanwhile need no message of their own. If the
# message is lost the flag expires, and the next receipt (or the sweeper) wakes a drain.
DRAIN_WAKE_KEY = "tally:inbox:wake"
DRAIN_WAKE_TTL_MS = 10_000
# One drain's share before it hands over to a fresh message, so retries and other inbound tasks get a turn.
DRAIN_MAX_EVENTS = 500
DRAIN_MAX_SECONDS = 5.0
# Most events one drain transaction applies. Applied one per transaction, a third of each event's time went on
# what every transaction pays (claim, commit, recording the event, waking the pushers); a drain behind its
# webhooks pays it once for up to this many. A drain keeping up finds one or two waiting, and applies those.
# At most 30 events, and at most SUBTRANSACTIONS savepoints: each event takes one, and each of its stock
# operations one more (a line sold, a line restocked). PostgreSQL keeps 64 subtransactions of a transaction in
# its shared cache (PGPROC_MAX_CACHED_SUBXIDS); past that, every other session's visibility checks look them up
# on disk until this transaction ends. 30, not 16 (until 2026-12-07): at 200 orders/s, alternated runs of
# bench/propagation.py, 16 left the drain behind its webhooks (1.3-3.5 s) where 30 kept up (0.05-0.16 s).
DRAIN_BATCH = min(max(int(os.environ.get("TALLY_DRAIN_BATCH", "30")), 1), 30)
SUBTRANSACTIONS = 56
KEPT_HEADERS = ("content-type", "user-agent", "x-shopify-topic", "x-shopify-shop-domain", "x-shopify-api-version",
                "x-shopify-webhook-id", "x-shopify-event-id", "x-shopify-triggered-at", "x-wc-webhook-source",
                "x-wc-webhook-topic", "x-wc-webhook-resource", "x-wc-webhook-event", "x-wc-webhook-id",
                "x-wc-webhook-delivery-id", "webhook-id", "webhook-timestamp", "x-tally-correlation-id")


# Within one drain transaction: the listings its events' order lines name, looked up once (``_lock_ahead``).
_resolved_lines: ContextVar[dict | None] = ContextVar("resolved_lines", default=None)


class ParkEvent(Exception):
    """The event cannot be applied until an operator fixes something (a mapping); replayable."""


class WaitForOrder(Exception):
    """A cancel or refund for an order we have not seen yet: try again a little later."""


@dataclass(frozen=True)
class Receipt:
    status: int
    body: dict


def _text(raw: bytes) -> str:
    # PostgreSQL text cannot hold NUL; a hostile or broken body must still be recordable.
    return raw.decode("utf-8", "replace").replace("\x00", "\ufffd")


def _kept_headers(headers: Mapping[str, str]) -> dict[str, str]:
    return {name: str(headers[name]).replace("\x00", "\ufffd") for name in KEPT_HEADERS if headers.get(name)}


_last_log: dict[str, float] = {}
_LAST_LOG_MAX = 10_000
# The metric's and the log's name for a slug that names no channel: anyone can post to any slug, and a label or a
# log key per slug made every gunicorn process, and every scrape, grow with each new one.
UNKNOWN_CHANNEL = "(unknown)"


def _reject(slug: str, reason: str, detail: str, status: int, headers: Mapping[str, str], body: bytes,
            remote_addr: str, *, known: bool = True) -> Receipt:
    label = slug[:64] if known else UNKNOWN_CHANNEL
    metrics.WEBHOOKS.labels(channel=label, outcome=reason).inc()
    WebhookRejection.objects.create(channel_slug=_text(slug.encode()[:64]), reason=reason, detail=detail[:500],
                                    http_status=status,
                                    headers=_kept_headers(headers), body_excerpt=_text(body[:2048]),
                                    remote_addr=remote_addr[:64])
    # One log line per channel and reason a minute: a flood of forged calls must not flood the logs.
    now = time.monotonic()
    if now - _last_log.get(f"{label}:{reason}", -1e9) > 60:
        if len(_last_log) >= _LAST_LOG_MAX:
            _last_log.clear()
        _last_log[f"{label}:{reason}"] = now
        log.warning("webhook rejected", extra={"channel": slug[:64], "reason": reason, "detail": detail})
    return Receipt(status, {"error": reason, "detail": detail})


# Per slug: this process's copy of the channel and its adapter, built together (an adapter per webhook, with
# its rate limiter, was 7% of a webhook's CPU in gunicorn).
_channel_cache: dict[str, tuple[Channel, ChannelAdapter]] = {}


def channel_for_receipt(slug: str) -> tuple[Channel, ChannelAdapter] | None:
    """The channel and its adapter, reusing this process's decrypted copy while (id, updated_at, enabled) still
    match: one indexed read instead of building the model and decrypting its secrets on every webhook."""
    row = Channel.objects.filter(slug=slug).values_list("id", "updated_at", "enabled").first()
    if row is None:
        _channel_cache.pop(slug, None)
        return None
    cached = _channel_cache.get(slug)
    if cached is not None and (cached[0].pk, cached[0].updated_at, cached[0].enabled) == row:
        return cached
    channel = Channel.objects.get(pk=row[0])
    cached = _channel_cache[slug] = (channel, adapter_for(channel))
    return cached


def reject_oversized(*, slug: str, headers: Mapping[str, str], remote_addr: str = "") -> Receipt:
    return _reject(slug, "too_large", f"Body over {MAX_BODY_BYTES} bytes.", 413, headers, b"", remote_addr,
                   known=slug in _channel_cache or Channel.objects.filter(slug=slug).exists())


def receive_webhook(*, slug: str, headers: Mapping[str, str], body: bytes, remote_addr: str = "") -> Receipt:
    if len(body) > MAX_BODY_BYTES:
        return reject_oversized(slug=slug, headers=headers, remote_addr=remote_addr)
    cached = _channel_cache.get(slug)
    if cached is not None:
        receipt = _accept_for_known_channel(*cached, headers, body)
        if receipt is not None:
            return receipt
    found = channel_for_receipt(slug)
    if found is None:
        return _reject(slug, "unknown_channel", "No such channel.", 404, headers, body, remote_addr, known=False)
    channel, adapter = found
    if not channel.enabled:
        return _reject(slug, "channel_disabled", "The channel is disabled.", 403, headers, body, remote_addr)
    if adapter.is_ping(headers, body):
        metrics.WEBHOOKS.labels(channel=slug, outcome="ping").inc()
        return Receipt(200, {"status": "pong"})
    try:
        verify(channel, headers, body)
    except SignatureError as exc:
        return _reject(slug, exc.reason, exc.detail, 401, headers, body, remote_addr)

    try:
        payload = adapter.json_body(body)
        delivery = adapter.delivery(headers, payload)
    except PayloadError as exc:
        # Signed but unreadable: keep it (failed, with the reason) so nothing is lost silently.
        digest = hashlib.sha256(body).hexdigest()
        InboundEvent.objects.get_or_create(
            channel=channel, dedup_key=f"unreadable:{digest}",
            defaults={"topic": storable(headers.get("X-Shopify-Topic") or headers.get("X-WC-Webhook-Topic") or "")[:128],
                      "headers": _kept_headers(headers), "body": _text(body),
                      "status": InboundStatus.FAILED, "last_error": storable(str(exc)[:2000])})
        metrics.WEBHOOKS.labels(channel=slug, outcome="bad_payload").inc()
        return Receipt(400, {"error": "bad_payload", "detail": str(exc)[:500]})

    try:
        with transaction.atomic():
            event = InboundEvent.objects.create(
                channel=channel, dedup_key=storable(delivery.dedup_key[:255]),
                delivery_id=storable(delivery.delivery_id[:255]), topic=storable(delivery.topic[:128]),
                headers=_kept_headers(headers), body=_text(body), occurred_at=delivery.occurred_at)
    except IntegrityError:
        metrics.WEBHOOKS.labels(channel=slug, outcome="duplicate").inc()
        return Receipt(200, {"status": "duplicate"})
    return _accepted(slug, event.pk, event.correlation_id)


def _accepted(slug: str, event_id: int, correlation: uuid.UUID) -> Receipt:
    # From here on, logs and every task this delivery causes carry its correlation id.
    correlation_id.set(str(correlation))
    transaction.on_commit(wake_drain)
    metrics.WEBHOOKS.labels(channel=slug, outcome="accepted").inc()
    return Receipt(200, {"status": "accepted", "id": event_id, "correlation_id": str(correlation)})


_EVENT_COLUMNS = ("channel_id", "dedup_key", "delivery_id", "topic", "headers", "body", "status", "attempts",
                  "last_error", "occurred_at", "received_at", "correlation_id")


def _accept_for_known_channel(channel: Channel, adapter: ChannelAdapter, headers: Mapping[str, str],
                              body: bytes) -> Receipt | None:
    """The common case in one statement: a new, valid delivery for a channel this process has read before.

    The event is inserted only if the channel row still has the ``updated_at`` and ``enabled`` of the copy
    the signature was checked against, and only if the delivery is new. Anything else (a ping, a bad
    signature or payload, a duplicate, a channel changed or disabled since) returns None and takes the full
    path with a fresh read, so the copy saves a round trip on every webhook and can never decide an answer.
    Autocommit makes the single INSERT its own transaction: one round trip instead of three."""
    if adapter.is_ping(headers, body):
        return None
    try:
        verify(channel, headers, body)
        delivery = adapter.delivery(headers, adapter.json_body(body))
    except (SignatureError, PayloadError):
        return None
    correlation = uuid.uuid4()
    # The ids and the topic come from the payload (a NUL in a signed body reached the driver, which refused it: a
    # 500, nothing stored, the platform retrying for ever).
    values = dict(channel_id=channel.pk, dedup_key=storable(delivery.dedup_key[:255]),
                  delivery_id=storable(delivery.delivery_id[:255]), topic=storable(delivery.topic[:128]),
                  headers=_kept_headers(headers), body=_text(body),
                  status=InboundStatus.PENDING.value, attempts=0, last_error="", occurred_at=delivery.occurred_at,
                  received_at=timezone.now(), correlation_id=correlation)
    fields = InboundEvent._meta
    params = [fields.get_field(name).get_db_prep_save(values[name], connection) for name in _EVENT_COLUMNS]
    updated_at = Channel._meta.get_field("updated_at").get_db_prep_value(channel.updated_at, connection)
    # Prepared, its values bound on the server: bound on the client, quoting the body into the SQL text took
    # a tenth of a webhook's CPU.
    rows = fetch(_RECEIPT_SQL, [*params, channel.pk, updated_at])
    if not rows:
        return None
    return _accepted(channel.slug, rows[0][0], correlation)


_RECEIPT_SQL = (f"INSERT INTO {InboundEvent._meta.db_table} ({', '.join(_EVENT_COLUMNS)}) "
                f"SELECT {', '.join(['%s'] * len(_EVENT_COLUMNS))} FROM {Channel._meta.db_table} "
                f"WHERE id = %s AND enabled AND updated_at = %s ON CONFLICT DO NOTHING RETURNING id")


def wake_drain(*, force: bool = False) -> bool:
    """Make sure a drain will run: publish one unless one is queued already (the flag). ``force``: publish
    whatever the flag says (the sweeper, when the queue holds nothing). Returns whether it published."""
    from channels_app.tasks import drain_inbox

    try:
        redis = get_redis()
        if force:
            redis.set(DRAIN_WAKE_KEY, 1, px=DRAIN_WAKE_TTL_MS)
        elif not redis.set(DRAIN_WAKE_KEY, 1, nx=True, px=DRAIN_WAKE_TTL_MS):
            return False
        drain_inbox.apply_async()
        return True
    except Exception:  # noqa: BLE001 - Redis or the broker being down must not fail the webhook; the sweeper has it
        log.warning("could not wake the inbox drain; the sweeper will")
        return False


def drain(*, max_events: int = DRAIN_MAX_EVENTS, max_seconds: float = DRAIN_MAX_SECONDS) -> int:
    """Apply pending events, oldest first, until none is left or this drain's share is used. Returns how many
    it applied. A drain that stops at its share wakes the next, which picks up where it left off."""
    try:
        # Cleared before the first claim: an event committed after this wakes another drain, one committed
        # before it is seen by the claims below.
        get_redis().delete(DRAIN_WAKE_KEY)
    except Exception:  # noqa: BLE001 - the flag then expires by itself
        log.warning("could not clear the inbox drain flag")
    deadline = time.monotonic() + max_seconds
    done = 0
    while done < max_events and time.monotonic() < deadline:
        applied = _process("e.status = %s ORDER BY e.received_at, e.id", [InboundStatus.PENDING],
                           limit=min(DRAIN_BATCH, max_events - done))
        if not applied:
            return done
        done += len(applied)
    wake_drain()
    return done


def _enqueue(event_id: int, countdown: float | None = None) -> None:
    from channels_app.tasks import process_inbound_event

    try:
        process_inbound_event.apply_async(args=[event_id], countdown=countdown)
    except Exception:  # noqa: BLE001 - the broker being down must not fail the webhook; the sweeper has it
        log.warning("could not enqueue inbound event; the sweeper will pick it up", extra={"event": event_id})


# --- processing ------------------------------------------------------------------------------


def _backoff(attempts: int) -> timedelta:
    return timedelta(seconds=min(2 ** attempts, 300))


def process_event(event_id: int) -> str:
    """Apply one inbox event. Returns its status afterwards; safe to call any number of times."""
    result = _process("e.id = %s", [event_id], limit=1)
    return result[0][1] if result else "busy"


def _process(candidates: str, params: list, *, limit: int) -> list[tuple[int, str]]:
    """Lock up to ``limit`` events ``candidates`` (a WHERE clause and its order, on the inbox as ``e``) names that
    no other transaction holds and apply them in one transaction: (id, status after) of each, none if every
    candidate is locked or there is none."""
    token = applying_behind_ms.set(0.0)
    try:
        return _claim_and_apply(candidates, params, limit)
    finally:
        applying_behind_ms.reset(token)
        _resolved_lines.set(None)


def _claim_and_apply(candidates: str, params: list, limit: int) -> list[tuple[int, str]]:
    started = time.perf_counter()
    applied: list[tuple[InboundEvent, Channel]] = []
    with transaction.atomic(), wakes_together():
        # Plain SQL: building the claim through the ORM took a fifth of a drain's CPU. The channel's
        # configuration comes along to check this process's copy of it (no model built, nothing decrypted).
        # Only the events are locked: locking the channel row too would serialise every event of a channel
        # and stall webhook inserts (KEY SHARE).
        rows = fetch(_claim_sql(candidates), [*params, limit])
        results: list[tuple[int, str]] = []
        work: list[tuple[InboundEvent, Channel, list[Command] | Exception]] = []
        for event, row in zip(instances(InboundEvent, rows), rows, strict=True):
            if event.status not in (InboundStatus.PENDING, InboundStatus.RETRYING):
                results.append((event.pk, event.status))
                continue
            channel = channel_from_config(event.channel_id, row[_EVENT_WIDTH:])
            _EVENT_CHANNEL.set_cached_value(event, channel)
            try:
                parsed: list[Command] | Exception = adapter_for(channel).commands(event.topic, json.loads(event.body))
            except Exception as exc:  # noqa: BLE001 - judged in _apply, with the event's other failures
                parsed = exc
            work.append((event, channel, parsed))
        if not work:
            return results
        # How far behind the drain is: the pushers this batch's stock changes wake (on commit) space their
        # pushes out accordingly (channels_app.sync.push_interval_ms). From when each event fell due: a retry
        # (a cancel waiting for its order) is not a backlog. The claim is oldest first.
        now = timezone.now()
        applying_behind_ms.set(max(max((now - max(e.received_at, e.next_attempt_at or e.received_at)).total_seconds()
                                       * 1000 for e, _, _ in work), 0))
        work = _within_subtransactions(work)
        # Orders alone (nearly every batch) write their listings at the end, all at once (sync.listing_writes_at_end):
        # they are then locked for the commit's round trip, not for the whole batch.
        at_end = connection.features.has_select_for_update and all(
            isinstance(parsed, Exception) or all(isinstance(c, OrderPlaced | Ignored) for c in parsed)
            for _, _, parsed in work)
        writes = Statements()
        with contextlib.ExitStack() as scope:
            listings = scope.enter_context(listing_writes_at_end()) if at_end else None
            if len(work) > 1 or _subtransactions(work[0][2]) > 2:  # one stock operation alone locks in order itself
                skus = _lock_ahead(work, held=at_end)
                if at_end:  # the sales then work on the rows locked here, with no read of their own
                    scope.enter_context(stock.rows_held(skus))
            for event, channel, parsed in work:
                _apply(event, channel, parsed)
                _record(writes, event)
                results.append((event.pk, event.status))
                applied.append((event, channel))
            if listings is not None:
                write_listings_at_end(listings, writes)
        writes.run()
    share = (time.perf_counter() - started) / len(applied) if applied else 0.0
    for event, channel in applied:
        metrics.INBOUND_PROCESSED.labels(channel=channel.slug, outcome=event.status).inc()
        metrics.INBOUND_SECONDS.labels(channel=channel.slug).observe(share)
        # One line per event, not per task: the drain applies many events per task, and this line is what
        # ties a webhook's correlation id to what it did in the worker log.
        log.log(_OUTCOME_LEVEL.get(event.status, logging.INFO), "inbound event %s", event.status,
                extra={"event": event.pk, "channel": channel.slug, "topic": event.topic, "outcome": event.last_error,
                       "attempts": event.attempts, "correlation_id": str(event.correlation_id)})
        if event.status == InboundStatus.RETRYING and event.next_attempt_at is not None:
            delay = (event.next_attempt_at - timezone.now()).total_seconds()
            if delay <= 60:  # longer waits belong to the sweeper, not to broker countdowns
                transaction.on_commit(lambda pk=event.pk, delay=delay: _enqueue(pk, countdown=max(delay, 0)))
    return results


_OUTCOME_LEVEL = {InboundStatus.PARKED: logging.WARNING, InboundStatus.FAILED: logging.WARNING,
                  InboundStatus.DEAD: logging.ERROR}


def _apply(event: InboundEvent, channel: Channel, parsed: list[Command] | Exception) -> None:
    """Apply one claimed event inside its own savepoint and set its outcome on ``event`` (not saved)."""
    correlation_id.set(str(event.correlation_id))
    event.attempts += 1
    try:
        with savepoint("tally_event"):
            if isinstance(parsed, Exception):
                raise parsed
            outcomes = [apply_command(channel, command) for command in parsed]
        event.status = (InboundStatus.IGNORED if parsed and all(isinstance(c, Ignored) for c in parsed)
                        else InboundStatus.PROCESSED)
        event.processed_at = timezone.now()
        event.last_error = "; ".join(o for o in outcomes if o)[:2000]
        event.next_attempt_at = None
    except (PayloadError, ValueError) as exc:
        event.status, event.last_error = InboundStatus.FAILED, f"bad payload: {exc}"[:2000]
    except (ParkEvent, StockError) as exc:
        event.status, event.last_error = InboundStatus.PARKED, str(exc)[:2000]
        metrics.DEAD_LETTERS.labels(kind="parked", channel=channel.slug).inc()
    except WaitForOrder as exc:
        if event.attempts >= WAIT_FOR_ORDER_ATTEMPTS:
            event.status, event.last_error = InboundStatus.PARKED, f"{exc} (gave up waiting)"[:2000]
        else:
            event.status, event.last_error = InboundStatus.RETRYING, str(exc)[:2000]
            event.next_attempt_at = timezone.now() + _backoff(event.attempts)
    except Exception as exc:  # noqa: BLE001 - anything else is retried, then dead-lettered
        log.exception("inbound event failed", extra={"event": event.pk, "channel": channel.slug})
        if event.attempts >= MAX_ATTEMPTS:
            event.status = InboundStatus.DEAD
            metrics.DEAD_LETTERS.labels(kind="inbound", channel=channel.slug).inc()
        else:
            event.status = InboundStatus.RETRYING
            event.next_attempt_at = timezone.now() + _backoff(event.attempts)
            metrics.RETRIES.labels(kind="inbound", channel=channel.slug).inc()
        event.last_error = f"{type(exc).__name__}: {exc}"[:2000]


_RECORD_SQL = (f"UPDATE {InboundEvent._meta.db_table} SET status = %s, attempts = %s, last_error = %s, "
               f"next_attempt_at = %s, processed_at = %s WHERE id = %s")


def _record(writes: Statements, event: InboundEvent) -> None:
    adapt = connection.ops.adapt_datetimefield_value
    writes.add(_RECORD_SQL, [event.status, event.attempts, storable(event.last_error), adapt(event.next_attempt_at),
                             adapt(event.processed_at), event.pk])


def storable(text: str) -> str:
    """``text`` as PostgreSQL can store it: a reason quoting a payload (a line id, a product id) may hold a NUL or a
    lone surrogate, which the driver refuses. A batch's outcomes go out in its last round trip: one such reason
    failed the whole batch, and the drain, which claims the oldest events first, claimed it again for ever."""
    return text.replace("\x00", "\\x00").encode("utf-8", "backslashreplace").decode("utf-8")


def _subtransactions(parsed: list[Command] | Exception) -> int:
    """About how many savepoints applying an event takes: its own, and one per stock operation (a cancel's
    restocks are not known before its order is read: counted as four)."""
    return 1 + (1 if isinstance(parsed, Exception) else sum(
        len(c.lines) if isinstance(c, OrderPlaced | RefundCreated) else 4 if isinstance(c, OrderCancelled) else 1
        for c in parsed))


def _within_subtransactions(work: list) -> list:
    """The first events of the claim whose savepoints fit ``SUBTRANSACTIONS`` (at least one); the rest are left
    pending for the next claim."""
    used, kept = 0, []
    for item in work:
        cost = _subtransactions(item[2])
        if kept and used + cost > SUBTRANSACTIONS:
            break
        kept.append(item)
        used += cost
    return kept


def _lock_ahead(work: list[tuple[InboundEvent, Channel, list[Command] | Exception]], *, held: bool = False) -> list[int]:
    """Before a transaction applies its events, lock the stock rows and listings they will write, each
    table in id order, stock rows first: the order every stock operation takes them in. One event's writes
    lock them as they go, which is safe for one operation but not for several in one transaction: two drains
    (or a drain and a pusher recording what it sent) would take the same rows in different orders and
    deadlock. Locked here, the events' own locks find them held. The SKUs are read off the payloads, the
    listings they name and the orders they cancel or refund; an event whose SKUs cannot be told (a listing not
    mapped yet) locks nothing here and fails or parks as it would alone. The order lines' listings are kept
    for ``apply_command``, so each is looked up once. Done for one event too when it makes more than one stock
    operation: an order of two lines sells them one after the other, which against a batch holding the second
    line's rows is the same cycle. ``held``: for a batch of orders, which writes its listings at its end
    (``sync.listing_writes_at_end``) and has its stock rows locked by ``stock.rows_held``: nothing is locked here.
    Returns the SKUs whose stock rows the batch locks."""
    if not connection.features.has_select_for_update:
        return []  # SQLite: one writer at a time, no row locks to order
    sku_ids: set[int] = set()
    resolved: dict[tuple[int, ListingRef], Listing] = {}
    orders_named: set[tuple[str, str]] = set()
    named = {(channel.pk, ref): (channel, ref) for _, channel, parsed in work if not isinstance(parsed, Exception)
             for command in parsed for ref in _listing_refs(command)}
    resolved.update(_find_listings(list(named.values())))
    for _, channel, parsed in work:
        if isinstance(parsed, Exception):
            continue
        for command in parsed:
            for ref in _listing_refs(command):
                key = (channel.pk, ref)
                if key not in resolved:
                    try:
                        resolved[key] = find_listing(channel, ref)
                    except (ParkEvent, DatabaseError, UnicodeError):
                        # Not mapped, or a value the driver refuses to send (a NUL, a lone surrogate; refused
                        # before it reaches the server, so the transaction goes on): the event fails or parks
                        # in its own savepoint, as it would alone, instead of failing every batch it is in.
                        continue
                sku_ids.add(resolved[key].sku_id)
            if isinstance(command, OrderCancelled):
                orders_named.add((channel.slug, command.external_id))
            elif isinstance(command, RefundCreated):
                orders_named.add((channel.slug, command.external_order_id))
    if orders_named:
        pairs = sorted(orders_named)
        try:
            found = fetch(_ORDER_SKUS_SQL, [[c for c, _ in pairs], [o for _, o in pairs]])
        except (DatabaseError, UnicodeError):  # as above: one refused order id, and these lock as they go
            found = []
        for line_sku, held_sku in found:
            sku_ids.add(line_sku)  # what forget_what_channel_shows names, short lines (nothing held) included
            if held_sku is not None:
                sku_ids.add(held_sku)  # what the restock puts back: a bundle's components
    # Order lines use only their listing's id and SKU from it; an inventory report reads the listing's state,
    # which an earlier event of the batch may have changed, and looks it up again.
    _resolved_lines.set(resolved)
    skus = sorted(sku_ids)
    if not skus or held:
        return skus
    locks = Statements()
    locks.add(_LOCK_STOCK_SQL, [skus, skus])  # the rows are locked as the statements run; nobody reads them
    locks.add(_LOCK_LISTINGS_SQL, [skus, skus, skus, skus])
    locks.run()
    return skus


_COMPONENTS = BundleComponent._meta.db_table
# The SKUs of the orders a batch cancels or refunds: each line's own, and the ones its units were taken from.
_ORDER_SKUS_SQL = (f"SELECT ol.sku_id, rl.sku_id FROM {Order._meta.db_table} o "
                   f"JOIN {OrderLine._meta.db_table} ol ON ol.order_id = o.id "
                   f"LEFT JOIN {ReservationLine._meta.db_table} rl ON rl.reservation_id = ol.reservation_id "
                   f"WHERE (o.channel, o.external_id) IN (SELECT * FROM unnest(%s::text[], %s::text[]))")
# The SKUs whose stock rows an operation on these SKUs locks: their own and, for bundles, the components'.
_STOCK_SKUS = (f"SELECT id FROM {Sku._meta.db_table} WHERE id = ANY(%s) "
               f"UNION SELECT component_id FROM {_COMPONENTS} WHERE bundle_id = ANY(%s)")
_LOCK_STOCK_SQL = (f"SELECT id FROM {StockLevel._meta.db_table} WHERE sku_id IN ({_STOCK_SKUS}) "
                   f"ORDER BY id FOR UPDATE")
# The listings their stock changes mark (sync.mark_listings_dirty): those SKUs' and the bundles' made of them.
_LOCK_LISTINGS_SQL = (f"SELECT id FROM {Listing._meta.db_table} WHERE sku_id IN ({_STOCK_SKUS}) OR sku_id IN "
                      f"(SELECT bundle_id FROM {_COMPONENTS} WHERE component_id IN ({_STOCK_SKUS})) "
                      f"ORDER BY id FOR UPDATE")


@lru_cache(maxsize=8)
def _claim_sql(candidates: str) -> str:
    lock = " FOR UPDATE OF e SKIP LOCKED" if connection.features.has_select_for_update_skip_locked else ""
    return (f"SELECT {columns(InboundEvent, 'e')}, {channel_config_columns('c')} FROM {InboundEvent._meta.db_table} e "
            f"JOIN {Channel._meta.db_table} c ON c.id = e.channel_id WHERE {candidates} LIMIT %s{lock}")


@lru_cache(maxsize=8)
def _listing_sql(condition: str) -> str:
    return (f"SELECT {columns(Listing, 'l')}, {columns(Sku, 's')} FROM {Listing._meta.db_table} l "
            f"JOIN {Sku._meta.db_table} s ON s.id = l.sku_id WHERE l.channel_id = %s AND {condition} "
            f"ORDER BY l.id LIMIT 1")


def find_listing(channel: Channel, ref: ListingRef) -> Listing:
    """The listing a payload names, looked up only among this channel's listings: by the most specific id the
    payload carries first (inventory item, variant, a product without variants, then the SKU code)."""
    for condition, params in listing_conditions(ref):
        # Plain SQL: one per order line, and building it through the ORM cost more than answering it.
        rows = fetch(_listing_sql(condition), [channel.pk, *params])
        if rows:
            return _listing_from(rows)
    raise ParkEvent(f"No listing on {channel.slug} for {ref.describe()}; add the mapping and replay.")


def _listing_from(rows: list[tuple]) -> Listing:
    listing = instances(Listing, rows)[0]
    _LISTING_SKU.set_cached_value(listing, instances(Sku, rows, start=_LISTING_WIDTH)[0])
    return listing


def _listing_refs(command: Command) -> list[ListingRef]:
    if isinstance(command, OrderPlaced):
        return [line.listing for line in command.lines]
    return [command.listing] if isinstance(command, InventoryReported) else []


def _find_listings(named: list[tuple[Channel, ListingRef]]) -> dict[tuple[int, ListingRef], Listing]:
    """``find_listing``'s first lookup for each of a batch's listings, all in one round trip (one each, in turn,
    was a round trip per order line before the batch could lock anything). What the first lookup does not find,
    and a value the driver would refuse to send (a NUL, a lone surrogate: it would fail the whole round trip), are
    left to ``find_listing``."""
    found: dict[tuple[int, ListingRef], Listing] = {}
    reads = Statements()
    for channel, ref in named:
        conditions = listing_conditions(ref)
        if not conditions or not all(_sendable(value) for value in conditions[0][1]):
            continue
        condition, params = conditions[0]
        reads.add(_listing_sql(condition), [channel.pk, *params],
                  on_rows=lambda rows, key=(channel.pk, ref): rows and found.__setitem__(key, _listing_from(rows)))
    reads.run()
    return found


def _sendable(value) -> bool:
    if not isinstance(value, str):
        return True
    try:
        value.encode()
    except UnicodeEncodeError:
        return False
    return "\x00" not in value


def listing_conditions(ref: ListingRef) -> list[tuple[str, list]]:
    """``find_listing``'s lookups in the order it tries them, each a condition on the listing ``l`` (joined to
    its SKU ``s``) and its parameters. Each is answered from an index (``Listing.Meta``), so a lookup reads the
    listing it finds, not the channel's other listings."""
    conditions = []
    if ref.inventory_item_id:
        conditions.append(("l.external_inventory_item_id = %s", [ref.inventory_item_id]))
    if ref.variant_id:
        conditions.append(("l.external_variant_id = %s", [ref.variant_id]))
    if ref.product_id and not ref.variant_id:
        conditions.append(("l.external_product_id = %s AND l.external_variant_id = ''", [ref.product_id]))
    if ref.sku:
        # Two lookups, not one OR across both tables: an OR over the listing and its SKU can use neither's
        # index, and read every listing of the channel. The channel's own code for a listing goes first.
        conditions.append(("l.external_sku = %s", [ref.sku]))
        conditions.append(("l.external_sku = '' AND s.code = %s", [ref.sku]))
    return conditions


def _location_for(channel: Channel, external_id: str):
    link = ChannelLocation.objects.filter(channel=channel, external_id=external_id).select_related("location").first()
    if link is None:
        raise ParkEvent(f"{channel.slug} location {external_id!r} is not mapped to a Tally location; map it and replay.")
    return link


def apply_command(channel: Channel, command: Command) -> str:
    if isinstance(command, Ignored):
        return command.reason
    if isinstance(command, OrderPlaced):
        known = _resolved_lines.get() or {}
        resolved = [(line, known.get((channel.pk, line.listing)) or find_listing(channel, line.listing))
                    for line in command.lines]
        listings: dict[str, Listing] = {}
        for line, listing in resolved:
            listings.setdefault(line.external_id, listing)  # a line named twice is recorded once, the first
        # The channel's note of each sale goes with the line's own writes, only for the lines this delivery records:
        # an orders/paid after its orders/create names the same lines, and noting them again took the sale off what
        # the channel shows twice.
        result = orders.place_order(
            channel=channel.slug, external_id=command.external_id, name=command.name, currency=command.currency,
            total=command.total, placed_at=command.placed_at,
            lines=[orders.OrderLineRequest(external_id=line.external_id, sku=listing.sku, quantity=line.quantity,
                                           unit_price=Decimal(line.unit_price)) for line, listing in resolved],
            also_write=lambda line, writes: note_channel_sale(listings[line.external_id], line.quantity, writes,
                                                              sold_at=command.placed_at),
            from_locations=rules.selling_locations(channel.pk))
        if result.get("short"):
            metrics.OVERSOLD_UNITS.labels(channel=channel.slug).inc(result["short"])
            return f"oversold: {result['short']} unit(s) on lines {', '.join(result['short_lines'])}"
        return ""
    if isinstance(command, OrderCancelled):
        try:
            result = orders.cancel_order(channel=channel.slug, external_id=command.external_id, restock=command.restock)
        except OrderNotFound as exc:
            raise WaitForOrder(exc.message) from None
        if command.restock and not result.get("already"):
            forget_what_channel_shows(channel, result["order"])
        return ""
    if isinstance(command, RefundCreated):
        lines = []
        for line in command.lines:
            location = _location_for(channel, line.external_location_id).location if (
                line.restock and line.external_location_id) else None
            lines.append(orders.RefundLineRequest(external_line_id=line.external_line_id, quantity=line.quantity,
                                                  restock=line.restock, location=location))
        try:
            result = orders.refund(channel=channel.slug, external_order_id=command.external_order_id,
                                   refund_id=command.refund_id, lines=lines)
        except OrderNotFound as exc:
            raise WaitForOrder(exc.message) from None
        except StockError as exc:
            raise ParkEvent(exc.message) from None
        if any(line.restock for line in command.lines):
            forget_what_channel_shows(channel, result["order"])
        return ""
    if isinstance(command, InventoryReported):
        return _inventory_reported(channel, command)
    raise PayloadError(f"Unknown command {command!r}")


def note_channel_sale(listing: Listing, quantity: int, writes: Statements, *, sold_at=None) -> None:
    """The selling channel already took these units off its own count: remember what it shows now,
    so the next push does not send it the number it already has (no echo). Added to ``writes``: it goes out
    with the sale's own writes.

    Only if the sale came after our last push. A push made after it (say the event was parked and replayed)
    set an absolute number that no longer carries the channel's own decrement: left as it is. A sale within
    ``SALE_TIME_MARGIN`` of our last push may have come before our number landed or after: the decrement is
    noted as a guess (``remote_unsure``), so the next push is sent whatever it is, with the guess as its
    compare-and-set expectation. The platforms stamp orders to the second (Amazon's ``EventTime``, Shopify's
    ``created_at``) with clocks that are not ours: a sale made a few hundred milliseconds after our number
    landed read as older than our push, was skipped, and the channel showed one unit less than the hub, for
    good (chaos run, amazon-1: 221 against 222).

    Worked out in the statement, from the row as it is when locked, not from the listing as read earlier: a
    push recorded since, or an earlier sale in the same drain transaction, would otherwise be overwritten."""
    adapt = connection.ops.adapt_datetimefield_value
    now = adapt(timezone.now())
    writes_listing_of(listing.sku_id)  # a drain's batch writes it at its end, under the lock it takes then
    if sold_at is None:
        writes.defer(_NOTE_SALE_SQL, [quantity, quantity, now, listing.pk])
    else:
        near = adapt(sold_at - SALE_TIME_MARGIN)  # {unsure} is in the statement twice
        writes.defer(_NOTE_TIMED_SALE_SQL, [near, near, quantity, quantity, now, listing.pk,
                                            adapt(sold_at + SALE_TIME_MARGIN)])


SALE_TIME_MARGIN = timedelta(seconds=2)
# {unsure}: the sale may have come before our number landed; {when}: it is not older than our last push. A
# guess stays a guess while later sales are taken off it: only a push (or the channel's own report) makes
# what the channel shows known again. Cleared by a later sale, a guess that was wrong read as known, and the
# push that would have put it right was skipped.
_NOTE_SALE = (f"UPDATE {Listing._meta.db_table} SET remote_unsure = CASE WHEN remote_quantity IS NULL THEN {{unsure}} "
              f"ELSE remote_unsure OR {{unsure}} END, remote_quantity = CASE WHEN "
              f"COALESCE(remote_quantity, pushed_quantity) > %s THEN COALESCE(remote_quantity, pushed_quantity) - %s "
              f"ELSE 0 END, remote_seen_at = %s WHERE id = %s AND COALESCE(remote_quantity, pushed_quantity) IS NOT NULL "
              f"AND {{when}}")
_NOTE_SALE_SQL = _NOTE_SALE.format(unsure="FALSE", when="TRUE")
_NOTE_TIMED_SALE_SQL = _NOTE_SALE.format(unsure="COALESCE(pushed_at >= %s, FALSE)",
                                         when="(pushed_at IS NULL OR pushed_at <= %s)")


def forget_what_channel_shows(channel: Channel, order_id: int) -> None:
    """A cancel or refund the channel made may have put units back on its own count, by an amount its
    settings decide (WooCommerce restocks a cancelled order, Shopify only if asked). Our idea of what it
    shows for the order's SKUs is no longer sure, so the next push for them is sent, never skipped as
    "the channel already has it": skipped, a sale elsewhere that brought our number back to the last one
    pushed left the channel showing the units its cancel had put back."""
    update_listings_in_order(Listing.objects.filter(
        channel=channel, sku__in=OrderLine.objects.filter(order_id=order_id).values("sku_id")), remote_quantity=None)


def _inventory_reported(channel: Channel, command: InventoryReported) -> str:
    listing = find_listing(channel, command.listing)
    link = None
    if command.external_location_id:
        link = ChannelLocation.objects.filter(channel=channel, external_id=command.external_location_id,
                                              channel_owns_stock=True).select_related("location").first()
    if link is not None:
        result = stock.count(sku=listing.sku, location=link.location, on_hand=command.available, as_of=command.as_of,
                             source=channel.slug, reference=f"{channel.slug}:inventory")
        return "stale count ignored" if result.get("stale") else ""
    # Not a location the channel owns: it is the channel echoing our push, or someone editing stock
    # on the channel. Remember it; never overwrite our truth with it, and do not push back at once
    # (a sale on the channel may be on its way to us) - reconciliation heals real drift.
    if command.as_of is not None and listing.pushed_at is not None and command.as_of < listing.pushed_at:
        # Older than our last acknowledged push (platforms do not deliver in order): it may report a number of ours
        # since replaced. Kept, the push of a later number equal to it was skipped as "the channel has it" while the
        # channel showed our newer one.
        return "report older than our last push: ignored"
    now = timezone.now()
    echo = listing.pushed_quantity == command.available
    Listing.objects.filter(pk=listing.pk).update(
        remote_quantity=command.available, remote_seen_at=now, remote_unsure=False,
        edited_on_channel_at=listing.edited_on_channel_at if echo else now)
    return "" if echo else f"channel shows {command.available}, we last pushed {listing.pushed_quantity}"


def sweep_inbox(*, older_than_seconds: float = 5, limit: int = 500) -> int:
    """Wake what a lost message left waiting; returns the messages it sent. Pending events older than
    ``older_than_seconds`` while no message waits in the inbound queue: one drain (a drain's message lost, or
    held unacked by a worker that died; one waiting in the queue will drain them, and under a backlog the
    drains are busy, not lost). Retries overdue by as much: their countdown message should have run them."""
    now = timezone.now()
    cutoff = now - timedelta(seconds=older_than_seconds)
    sent = 0
    if (InboundEvent.objects.filter(status=InboundStatus.PENDING, received_at__lte=cutoff).exists()
            and missing_messages("inbound", 1) and wake_drain(force=True)):
        sent += 1
    due = list(InboundEvent.objects.filter(status=InboundStatus.RETRYING, next_attempt_at__lte=cutoff)
               .order_by("next_attempt_at").values_list("id", flat=True)[:limit])
    for event_id in due:
        _enqueue(event_id)
    return sent + len(due)


def replay(event_ids: list[int]) -> int:
    """Put parked, failed or dead events back in line (after the operator fixed the cause)."""
    count = InboundEvent.objects.filter(
        pk__in=event_ids, status__in=[InboundStatus.PARKED, InboundStatus.DEAD, InboundStatus.FAILED]
    ).exclude(dedup_key__startswith="unreadable:").update(status=InboundStatus.PENDING, attempts=0, next_attempt_at=None)
    if count:
        transaction.on_commit(wake_drain)
    return count
