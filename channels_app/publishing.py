"""Scheduled catalog and price publishing by watermark.

Each (channel, stream) keeps a cursor (updated_at, id) of the last row sent. A run reads rows
after it in (updated_at, id) order, page by page, sends each page through the adapter (batched to
the platform's limits) and advances the cursor after each page, so a run that dies half-way
resends at most one page (absolute values: harmless) and skips nothing. Rows younger than
``SETTLE_SECONDS`` wait for the next run: a transaction that stamped its updated_at before our
read but commits after it would otherwise fall behind the cursor for ever. Prices that start or
end by the clock alone (future-dated rows) are picked up from ``last_run_at``.
"""

from __future__ import annotations

from dataclasses import dataclass
from datetime import datetime, timedelta
from decimal import Decimal

from django.db.models import Q
from django.utils import timezone

from channels_app.adapters import adapter_for
from channels_app.models import Channel, Listing, PublishCursor
from channels_app.ratelimit import request_sized
from hub.models import JobRun
from hub.runs import record_run
from inventory_app.models import Price, Sku
from inventory_app.pricing import effective_prices

SETTLE_SECONDS = 5
PAGE_SIZE = 500


@dataclass
class CatalogItem:
    listing: Listing
    name: str | None = None
    active: bool | None = None
    price: Decimal | None = None
    currency: str = "USD"


def _after(qs, cursor: PublishCursor, horizon: datetime):
    return qs.filter(Q(updated_at__gt=cursor.updated_at) | Q(updated_at=cursor.updated_at, id__gt=cursor.last_id)).filter(
        updated_at__lte=horizon).order_by("updated_at", "id")


def publish(channel: Channel, stream: str, *, now: datetime | None = None, page_size: int = PAGE_SIZE) -> JobRun:
    if stream not in ("prices", "catalog"):
        raise ValueError(f"Unknown stream {stream!r}.")
    now = now or timezone.now()
    horizon = now - timedelta(seconds=SETTLE_SECONDS)
    adapter = adapter_for(channel)
    with record_run(f"publish_{stream}", channel=channel) as run:
        cursor, _ = PublishCursor.objects.get_or_create(channel=channel, stream=stream)
        listings = {x.sku_id: x for x in Listing.objects.filter(channel=channel).select_related("sku")}
        sent = rejected = read = 0
        errors: list[str] = []
        source = Price.objects.filter(Q(channel="") | Q(channel=channel.slug)) if stream == "prices" else Sku.objects.all()
        due_by_clock: set[int] = set()
        if stream == "prices" and cursor.last_run_at is not None:
            due_by_clock = set(Price.objects.filter(Q(channel="") | Q(channel=channel.slug)).filter(
                Q(valid_from__gt=cursor.last_run_at, valid_from__lte=now)
                | Q(valid_to__gt=cursor.last_run_at, valid_to__lte=now)).values_list("sku_id", flat=True))
        while True:
            page = list(_after(source, cursor, horizon)[:page_size])
            sku_ids = {row.sku_id if stream == "prices" else row.id for row in page}
            if due_by_clock:
                sku_ids |= due_by_clock
                due_by_clock = set()
            read += len(page)
            items = _items(stream, channel, [listings[s] for s in sorted(sku_ids) if s in listings], now)
            if items:
                ok, failed, problems = _send(adapter, stream, items)
                sent, rejected = sent + ok, rejected + failed
                errors += problems
                if failed:
                    break  # keep the cursor before this page: the next run sends it again
            if not page:
                break
            last = page[-1]
            cursor.updated_at, cursor.last_id = last.updated_at, last.id
            cursor.save(update_fields=["updated_at", "last_id"])
        cursor.last_run_at = now
        cursor.save(update_fields=["last_run_at"])
        run.count_in, run.count_out, run.count_rejected = read, sent, rejected
        run.details = {"stream": stream, "cursor": [cursor.updated_at.isoformat(), cursor.last_id],
                       "errors": errors[:50], "supported": adapter.publishes_catalog}
        run.ok = not rejected and not errors
    return run


def _items(stream: str, channel: Channel, listings: list[Listing], now: datetime) -> list[CatalogItem]:
    if stream == "catalog":
        return [CatalogItem(listing=x, name=x.sku.name, active=x.sku.is_active) for x in listings]
    prices = effective_prices([x.sku_id for x in listings], channel=channel.slug, at=now)
    return [CatalogItem(listing=x, price=prices[x.sku_id].amount, currency=prices[x.sku_id].currency)
            for x in listings if x.sku_id in prices]


def _send(adapter, stream: str, items: list[CatalogItem]) -> tuple[int, int, list[str]]:
    from channels_app.adapters.http import ChannelError

    if not adapter.publishes_catalog:
        return 0, len(items), [f"{adapter.kind}: catalog and price publishing is not supported for this platform"]
    ok = failed = 0
    errors = []
    limiter = adapter.catalog_limiter
    for batch in request_sized(items, adapter.catalog_batch, adapter.catalog_requests_needed, limiter.capacity):
        wait = limiter.acquire(adapter.catalog_requests_needed(batch), max_wait=30)
        if wait:
            failed += len(batch)
            errors.append(f"rate limited for {wait:.1f}s; the rest waits for the next run")
            continue
        try:
            adapter.publish_catalog(batch)
            ok += len(batch)
        except ChannelError as exc:
            failed += len(batch)
            errors.append(str(exc)[:300])
    return ok, failed, errors
