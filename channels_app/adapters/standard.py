"""Standard Webhooks channels (POS, generic sources): signed envelopes both ways."""

from __future__ import annotations

import collections
import json
import time
import uuid
from collections.abc import Iterator, Mapping
from decimal import Decimal
from typing import Any

import requests

from channels_app.adapters.base import ChannelAdapter, Delivery, PayloadError, PushItem, PushResult, RemoteLevel, parse_time
from channels_app.adapters.http import PermanentError
from channels_app.commands import (
    Command,
    Ignored,
    InventoryReported,
    ListingRef,
    OrderCancelled,
    OrderLineIn,
    OrderPlaced,
    RefundCreated,
    RefundLineIn,
)
from channels_app.signatures import sign_standard

# Per-row statuses of a stock batch's answer that the same row would get again (an item the channel does not have
# there, a row it cannot read): parked for the operator, not retried. Any other status but "ok" is retried.
REFUSED = frozenset({"unknown_sku", "unknown_location", "invalid"})


def _item_results(items: list[PushItem], response: requests.Response) -> list[PushResult]:
    """What became of each item of a stock batch: the channel answers 200 ``{accepted, results: [{sku, status}]}``,
    a row per item in their order, and takes only the rows it says "ok" (taken all on a 200, an item it did not
    have was recorded as pushed and in sync, and nobody saw it). Rows are matched by SKU, in order (the same SKU
    may come twice). A 2xx without results (a source that does not answer per row) took the whole batch."""
    try:
        answer = response.json()
    except ValueError:
        answer = None
    rows = answer.get("results") if isinstance(answer, dict) else None
    status = response.status_code
    if not isinstance(rows, list):
        return [PushResult(listing_id=i.listing.id, ok=True, quantity=i.quantity, http_status=status) for i in items]
    by_sku: dict[str, collections.deque] = collections.defaultdict(collections.deque)
    for row in rows:
        if isinstance(row, dict) and row.get("sku") is not None:
            by_sku[str(row["sku"])].append(row)
    results = []
    for item in items:
        sku = item.listing.external_sku or item.listing.sku.code
        row = by_sku[sku].popleft() if by_sku.get(sku) else None
        if row is None:
            # Taken or not, we cannot tell: sent again (an absolute number, so a second time changes nothing).
            results.append(PushResult(listing_id=item.listing.id, ok=False, http_status=status,
                                      error=f"{sku}: not in the channel's answer"))
        elif row.get("status") == "ok":
            quantity = row.get("quantity")
            taken = quantity if isinstance(quantity, int) and not isinstance(quantity, bool) else item.quantity
            results.append(PushResult(listing_id=item.listing.id, ok=True, quantity=taken, http_status=status))
        else:
            said = " ".join(str(part) for part in (row.get("status"), row.get("detail")) if part)
            results.append(PushResult(listing_id=item.listing.id, ok=False, http_status=status,
                                      error=f"refused {sku}: {said}"[:500], retryable=row.get("status") not in REFUSED))
    return results


def signed_headers(secret: str, body: bytes, msg_id: str | None = None) -> dict[str, str]:
    msg_id = msg_id or f"msg_{uuid.uuid4().hex}"
    timestamp = int(time.time())
    return {"webhook-id": msg_id, "webhook-timestamp": str(timestamp),
            "webhook-signature": sign_standard(secret, msg_id, timestamp, body), "Content-Type": "application/json"}


class StandardAdapter(ChannelAdapter):
    kind = "standard"
    max_batch = 100

    def delivery(self, headers: Mapping[str, str], payload: Any) -> Delivery:
        if not isinstance(payload, dict) or not payload.get("type"):
            raise PayloadError("A Standard Webhooks envelope {type, timestamp, data} is required.")
        msg_id = headers.get("webhook-id", "")
        return Delivery(dedup_key=msg_id, delivery_id=msg_id, topic=str(payload["type"]),
                        occurred_at=parse_time(payload.get("timestamp")))

    def commands(self, topic: str, payload: Any) -> list[Command]:
        data = payload.get("data")
        if not isinstance(data, dict):
            raise PayloadError("The envelope's data must be an object.")
        try:
            if topic in ("order.created", "order.paid"):
                return [OrderPlaced(
                    external_id=str(data["order_id"]), name=str(data.get("name", data["order_id"])),
                    currency=str(data.get("currency", "USD"))[:3], total=Decimal(str(data.get("total", "0"))),
                    placed_at=parse_time(payload.get("timestamp")),
                    lines=[OrderLineIn(external_id=str(line["line_id"]), quantity=int(line["quantity"]),
                                       unit_price=Decimal(str(line.get("price", "0"))),
                                       listing=ListingRef(sku=str(line["sku"])))
                           for line in data.get("lines", [])],
                )]
            if topic == "order.cancelled":
                return [OrderCancelled(external_id=str(data["order_id"]), restock=bool(data.get("restock", True)))]
            if topic in ("order.refunded", "refund.created"):
                restock = bool(data.get("restock", True))
                location = str(data.get("location") or "")
                return [RefundCreated(
                    external_order_id=str(data["order_id"]), refund_id=str(data["refund_id"]),
                    lines=[RefundLineIn(external_line_id=str(line["line_id"]), quantity=int(line["quantity"]),
                                        restock=bool(line.get("restock", restock)),
                                        external_location_id=str(line.get("location") or location))
                           for line in data.get("lines", [])],
                )]
            if topic == "inventory.level":
                as_of = parse_time(data.get("as_of") or payload.get("timestamp"))
                if as_of is None:
                    raise PayloadError("inventory.level needs as_of.")
                return [InventoryReported(listing=ListingRef(sku=str(data["sku"])), available=int(data["available"]),
                                          as_of=as_of, external_location_id=str(data.get("location") or ""))]
        except (KeyError, TypeError, ValueError, ArithmeticError) as exc:
            raise PayloadError(f"{topic}: {type(exc).__name__} {exc}") from None
        return [Ignored(f"type {topic} does not change stock or orders")]

    # -- outbound -------------------------------------------------------------------------
    def push(self, items: list[PushItem]) -> list[PushResult]:
        secret = self.channel.credentials.get("signing_secret", "")
        body = json.dumps({"type": "stock.batch_updated", "timestamp": int(time.time()),
                           "data": {"items": [{"sku": i.listing.external_sku or i.listing.sku.code,
                                               "quantity": i.quantity} for i in items]}}).encode()
        response = self.request("POST", "/stock", data=body, headers=signed_headers(secret, body))
        return _item_results(items, response)

    publishes_catalog = True
    catalog_batch = 500

    def publish_catalog(self, items: list) -> None:
        secret = self.channel.credentials.get("signing_secret", "")
        rows = []
        for item in items:
            row: dict = {"sku": item.listing.external_sku or item.listing.sku.code}
            if item.price is not None:
                row["price"], row["currency"] = f"{item.price:.2f}", item.currency
            if item.name is not None:
                row["name"] = item.name
            if item.active is not None:
                row["active"] = item.active
            rows.append(row)
        body = json.dumps({"type": "catalog.batch_updated", "timestamp": int(time.time()), "data": {"items": rows}}).encode()
        response = self.request("POST", "/catalog", data=body, headers=signed_headers(secret, body))
        # Answered per row as a stock batch is: a row refused (a SKU the channel does not have) failed the run
        # nowhere, the price never shown and nobody told.
        answer = response.json() if response.content else {}
        refused = [row for row in (answer.get("results") or []) if isinstance(row, dict) and row.get("status") != "ok"] \
            if isinstance(answer, dict) else []
        if refused:
            raise PermanentError(f"catalog batch refused {len(refused)} item(s): {refused[:3]}"[:500],
                                 status=response.status_code)

    def read_stock(self) -> Iterator[RemoteLevel]:
        cursor = ""
        while True:
            secret = self.channel.credentials.get("signing_secret", "")
            # Reads are signed too (over the empty body), so the source knows it is us.
            response = self.read("GET", "/stock", params={"cursor": cursor, "limit": 500},
                                    headers=signed_headers(secret, b""))
            body = response.json()
            for item in body.get("items", []):
                yield RemoteLevel(ref={"sku": str(item["sku"])}, quantity=int(item["quantity"]))
            cursor = body.get("next_cursor") or ""
            if not cursor:
                return
