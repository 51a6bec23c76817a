"""Tally's own outgoing events: a transactional outbox delivered the Standard Webhooks way.

``emit`` writes one delivery row per interested subscription inside the caller's transaction (so
an event exists exactly when what it describes committed) and wakes the deliverer after commit.
Deliveries are signed (webhook-id, webhook-timestamp, webhook-signature), retried on the schedule
the Standard Webhooks spec suggests, logged per attempt, and replayable from the admin. A 410
answer disables the subscription; 429/502/504 honour Retry-After.
"""

from __future__ import annotations

import json
import logging
import time
import uuid
from datetime import timedelta

import requests
from django.db import connection, transaction
from django.utils import timezone

from hub.addresses import GuardedAdapter, refused_address
from hub.broker import missing_messages
from hub.models import DeliveryAttempt, DeliveryStatus, EventDelivery, Subscription

log = logging.getLogger(__name__)

# Seconds after each failed attempt: immediately, 5 s, 5 min, 30 min, 2 h, 5 h, 10 h, 10 h, then give up.
RETRY_SCHEDULE = [5, 300, 1800, 7200, 18000, 36000, 36000]
TIMEOUT = (3.05, 10)
_cache: dict[str, tuple[float, list[int]]] = {}
CACHE_SECONDS = 5


def _subscribers(event_type: str) -> list[int]:
    # Stock events fire on every write: a few seconds of caching keeps the no-subscriber case free.
    cached = _cache.get(event_type)
    if cached and time.monotonic() - cached[0] < CACHE_SECONDS:
        return cached[1]
    ids = [s.pk for s in Subscription.objects.filter(enabled=True) if s.wants(event_type)]
    _cache[event_type] = (time.monotonic(), ids)
    return ids


def new_secret() -> str:
    import base64
    import secrets

    return "whsec_" + base64.b64encode(secrets.token_bytes(32)).decode()


def _still_there(subscribers: list[int]) -> list[int]:
    """Of the cached subscribers, those still there and enabled, held (FOR KEY SHARE) until this transaction ends.
    The cache is per process: a subscription deleted in another was still named here, and the caller's whole
    transaction (an order, a stock write) failed at commit on the deliveries' foreign key. The lock does not
    block other emits, only the subscription's deletion, until then."""
    if connection.vendor != "postgresql":
        return list(Subscription.objects.filter(pk__in=subscribers, enabled=True).values_list("pk", flat=True))
    with connection.cursor() as cursor:
        cursor.execute(f"SELECT id FROM {Subscription._meta.db_table} WHERE id = ANY(%s) AND enabled FOR KEY SHARE",
                       [list(subscribers)])
        return [row[0] for row in cursor.fetchall()]


def forget_subscribers() -> None:
    _cache.clear()


def emit(event_type: str, data: dict) -> int:
    subscribers = _subscribers(event_type)
    if not subscribers:
        return 0
    subscribers = _still_there(subscribers)
    if not subscribers:
        return 0
    now = timezone.now()
    payload = {"type": event_type, "timestamp": now.isoformat(), "data": data}
    rows = EventDelivery.objects.bulk_create(
        EventDelivery(subscription_id=sid, message_id=f"msg_{uuid.uuid4().hex}", event_type=event_type,
                      payload=payload, next_attempt_at=now) for sid in subscribers)
    ids = [row.pk for row in rows]
    transaction.on_commit(lambda: _enqueue(ids))
    return len(ids)


def _enqueue(ids: list[int], countdown: float | None = None) -> None:
    from hub.tasks import deliver_event

    for delivery_id in ids:
        try:
            deliver_event.apply_async(args=[delivery_id], countdown=countdown)
        except Exception:  # noqa: BLE001 - the sweeper finds due deliveries
            log.warning("could not enqueue an event delivery", extra={"delivery": delivery_id})


def deliver(delivery_id: int) -> str:
    """One attempt, if due. Safe to call concurrently and repeatedly.

    The attempt is claimed and counted in a transaction of its own, sent outside any, and its answer recorded in a
    third. Sent inside the claim's transaction, a receiver that answered a byte every few seconds held the row and
    the transaction open until Celery's time limit killed the task, which rolled the attempt back unrecorded: the
    sweeper sent it again seconds later, for ever. Now an attempt whose sender never came back is already counted,
    and tried again on the schedule until the schedule runs out."""
    claimed = _claim(delivery_id)
    if claimed is None:
        return "not due"
    delivery, attempt_id = claimed
    if attempt_id is None:
        return delivery.status
    started = time.perf_counter()
    status, error, retry_after = _post(delivery)
    return _record(delivery, attempt_id, status, error, retry_after, int((time.perf_counter() - started) * 1000))


# A receiver's answer costs us its status, and of a failure's body at most ERROR_BYTES read within ANSWER_SECONDS (each
# read also within the read timeout); a success's body is never read. An attempt whose sender never recorded its
# answer (killed, timed out) is tried again no sooner than CLAIM_SECONDS after it began.
ERROR_BYTES = 512
ANSWER_SECONDS = 5.0
CLAIM_SECONDS = 60
NO_ANSWER = "no answer recorded: the sender stopped before the receiver answered"


def _claim(delivery_id: int) -> tuple[EventDelivery, int | None] | None:
    """The due delivery with this attempt counted and logged as unanswered, or None if not due. The attempt id is
    None when nothing is to be sent (the subscription is disabled, or the last attempt's sender never came back)."""
    from channels_app.inbound import storable

    with transaction.atomic():
        delivery = (EventDelivery.objects.select_for_update(skip_locked=True, of=("self",)).select_related("subscription")
                    .filter(pk=delivery_id, status=DeliveryStatus.PENDING, next_attempt_at__lte=timezone.now()).first())
        if delivery is None:
            return None
        now = timezone.now()
        if not delivery.subscription.enabled or delivery.attempts > len(RETRY_SCHEDULE):
            if not delivery.subscription.enabled:
                delivery.last_error = f"subscription disabled: {delivery.subscription.disabled_reason}"
                DeliveryAttempt.objects.create(delivery=delivery, error=storable(delivery.last_error)[:500])
            delivery.status = DeliveryStatus.DEAD
            delivery.save(update_fields=["status", "last_error"])
            return delivery, None
        delivery.attempts += 1
        delivery.next_attempt_at = now + timedelta(
            seconds=max(CLAIM_SECONDS, RETRY_SCHEDULE[min(delivery.attempts, len(RETRY_SCHEDULE)) - 1]))
        delivery.last_status, delivery.last_error = None, NO_ANSWER
        delivery.save(update_fields=["attempts", "next_attempt_at", "last_status", "last_error"])
        attempt = DeliveryAttempt.objects.create(delivery=delivery, error=NO_ANSWER)
    return delivery, attempt.pk


def _post(delivery: EventDelivery) -> tuple[int | None, str, float | None]:
    """Send the delivery: (status, error, Retry-After seconds)."""
    from channels_app.adapters.http import parse_retry_after
    from channels_app.adapters.standard import signed_headers

    subscription = delivery.subscription
    refused = refused_address(subscription.url)
    if refused:
        return None, f"not sent: {refused}", None
    body = json.dumps(delivery.payload, separators=(",", ":")).encode()
    status, error, retry_after = None, "", None
    try:
        with _session(subscription).post(
                subscription.url, data=body, timeout=TIMEOUT, stream=True, allow_redirects=False,
                headers=signed_headers(subscription.secret, body, msg_id=delivery.message_id)) as response:
            status = response.status_code
            if status in (429, 502, 504):
                retry_after = parse_retry_after(response.headers.get("Retry-After"), default=0) or None
            if not 200 <= status < 300:
                error = f"HTTP {status}: {_some_of(response)[:200]}"
    except requests.RequestException as exc:
        error = f"{type(exc).__name__}: {exc}"[:500]
    return status, error, retry_after


def _session(subscription) -> requests.Session:
    from channels_app.adapters.http import session_for

    session = session_for(f"subscription:{subscription.pk}")
    if not isinstance(session.get_adapter("https://"), GuardedAdapter):
        session.mount("http://", GuardedAdapter())
        session.mount("https://", GuardedAdapter())
    return session


def _some_of(response: requests.Response) -> str:
    """The start of an answer's body: at most ERROR_BYTES, as much as arrives within ANSWER_SECONDS."""
    deadline, chunks, size = time.monotonic() + ANSWER_SECONDS, [], 0
    while size < ERROR_BYTES and time.monotonic() < deadline:
        chunk = response.raw.read1(ERROR_BYTES - size, decode_content=True)
        if not chunk:
            break
        chunks.append(chunk)
        size += len(chunk)
    return b"".join(chunks)[:ERROR_BYTES].decode(response.encoding or "utf-8", errors="replace")


def _record(delivery: EventDelivery, attempt_id: int, status: int | None, error: str, retry_after: float | None,
            duration_ms: int) -> str:
    from channels_app.inbound import storable

    # The receiver's words, as the database can store them (a NUL refused the record, and the attempt with it).
    error = storable(error)
    with transaction.atomic():
        DeliveryAttempt.objects.filter(pk=attempt_id).update(status_code=status, error=error[:500],
                                                             duration_ms=duration_ms)
        current = (EventDelivery.objects.select_for_update()
                   .filter(pk=delivery.pk, status=DeliveryStatus.PENDING, attempts=delivery.attempts).first())
        if current is None:  # replayed (or given up on) while we were sending: the attempt is logged, nothing more
            return "superseded"
        current.last_status, current.last_error = status, error
        if status is not None and 200 <= status < 300:
            current.status, current.delivered_at = DeliveryStatus.DELIVERED, timezone.now()
        elif status == 410:
            # The receiver says the endpoint is gone: stop sending, as the spec asks.
            Subscription.objects.filter(pk=current.subscription_id).update(
                enabled=False, disabled_reason="endpoint answered 410")
            forget_subscribers()
            current.status = DeliveryStatus.DEAD
        elif current.attempts > len(RETRY_SCHEDULE):
            current.status = DeliveryStatus.DEAD
        else:
            wait = max(retry_after or 0, RETRY_SCHEDULE[current.attempts - 1])
            current.next_attempt_at = timezone.now() + timedelta(seconds=wait)
        current.save()
        result, next_at = current.status, current.next_attempt_at
    if result == DeliveryStatus.PENDING:
        delay = (next_at - timezone.now()).total_seconds()
        if delay <= 60:
            _enqueue([delivery.pk], countdown=max(delay, 0))
    return result


def sweep(limit: int = 500) -> int:
    """Enqueue deliveries that are due and have no message waiting (see hub.broker)."""
    due_rows = EventDelivery.objects.filter(status=DeliveryStatus.PENDING, next_attempt_at__lte=timezone.now())
    take = min(missing_messages("batch", due_rows.count()), limit)
    due = list(due_rows.order_by("next_attempt_at").values_list("id", flat=True)[:take])
    _enqueue(due)
    return len(due)


def replay(delivery_ids: list[int]) -> int:
    count = EventDelivery.objects.filter(pk__in=delivery_ids).exclude(status=DeliveryStatus.PENDING).update(
        status=DeliveryStatus.PENDING, next_attempt_at=timezone.now(), attempts=0)
    transaction.on_commit(lambda: _enqueue(list(delivery_ids)))
    return count


def on_stock_changed(sku_ids: set[int], context: dict) -> None:
    """Stock listener: one ``stock.changed`` event per SKU, only when someone subscribes."""
    if not _subscribers("stock.changed"):
        return
    from inventory_app.availability import availability_for_skus
    from inventory_app.models import Sku

    def emit_changes() -> None:
        for availability in availability_for_skus(Sku.objects.filter(pk__in=sku_ids)).values():
            emit("stock.changed", {"sku": availability.sku, "on_hand": availability.on_hand,
                                   "reserved": availability.reserved, "available": availability.available,
                                   "sellable": availability.sellable, "source": context.get("source", "")})

    # The numbers are read once the operation's writes have run (still inside its transaction).
    context["writes"].after(emit_changes)
