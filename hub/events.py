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
    """One attempt, if due. Safe to call concurrently and repeatedly."""
    from channels_app.adapters.http import parse_retry_after, session_for
    from channels_app.adapters.standard import signed_headers
    from channels_app.inbound import storable

    with transaction.atomic():
        delivery = (EventDelivery.objects.select_for_update(skip_locked=True, of=("self",)).select_related("subscription")
                    .filter(pk=delivery_id, status=DeliveryStatus.PENDING, next_attempt_at__lte=timezone.now()).first())
        if delivery is None:
            return "not due"
        subscription = delivery.subscription
        body = json.dumps(delivery.payload, separators=(",", ":")).encode()
        started = time.perf_counter()
        status, error, retry_after = None, "", None
        if not subscription.enabled:
            error = f"subscription disabled: {subscription.disabled_reason}"
        else:
            try:
                response = session_for(f"subscription:{subscription.pk}").post(
                    subscription.url, data=body, timeout=TIMEOUT,
                    headers=signed_headers(subscription.secret, body, msg_id=delivery.message_id), allow_redirects=False)
                status = response.status_code
                if status in (429, 502, 504):
                    retry_after = parse_retry_after(response.headers.get("Retry-After"), default=0) or None
                if not 200 <= status < 300:
                    error = f"HTTP {status}: {response.text[:200]}"
            except requests.RequestException as exc:
                error = f"{type(exc).__name__}: {exc}"[:500]
        # The receiver's words, as the database can store them (a NUL refused the record, and the attempt with it).
        error = storable(error)
        DeliveryAttempt.objects.create(delivery=delivery, status_code=status, error=error[:500],
                                       duration_ms=int((time.perf_counter() - started) * 1000))
        delivery.attempts += 1
        delivery.last_status, delivery.last_error = status, error
        if status is not None and 200 <= status < 300:
            delivery.status, delivery.delivered_at = DeliveryStatus.DELIVERED, timezone.now()
        elif status == 410:
            # The receiver says the endpoint is gone: stop sending, as the spec asks.
            Subscription.objects.filter(pk=subscription.pk).update(enabled=False, disabled_reason="endpoint answered 410")
            forget_subscribers()
            delivery.status = DeliveryStatus.DEAD
        elif delivery.attempts > len(RETRY_SCHEDULE) or not subscription.enabled:
            delivery.status = DeliveryStatus.DEAD
        else:
            wait = max(retry_after or 0, RETRY_SCHEDULE[delivery.attempts - 1])
            delivery.next_attempt_at = timezone.now() + timedelta(seconds=wait)
        delivery.save()
        result, next_at = delivery.status, delivery.next_attempt_at
    if result == DeliveryStatus.PENDING:
        delay = (next_at - timezone.now()).total_seconds()
        if delay <= 60:
            _enqueue([delivery_id], countdown=max(delay, 0))
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
