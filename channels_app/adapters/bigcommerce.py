"""BigCommerce: hooks signed the Standard Webhooks way; absolute inventory adjustments (<= 2,000 items)."""

from __future__ import annotations

import json
from collections.abc import Iterator, Mapping
from decimal import Decimal
from typing import Any

import requests

from channels_app.adapters.base import ChannelAdapter, Delivery, PayloadError, PushItem, PushResult, RemoteLevel, parse_time
from channels_app.adapters.http import PermanentError
from channels_app.commands import Command, Ignored, InventoryReported, ListingRef, OrderCancelled, OrderLineIn, OrderPlaced

CANCELLED_STATUSES = {"cancelled", "declined", "refunded", "5", "6", "4"}


class BigCommerceAdapter(ChannelAdapter):
    kind = "bigcommerce"
    max_batch = 2000

    @property
    def store_hash(self) -> str:
        return self.channel.credentials.get("store_hash") or self.channel.external_id

    def _headers(self) -> dict[str, str]:
        return {"X-Auth-Token": self.channel.credentials.get("access_token", ""), "Accept": "application/json"}

    # -- inbound --------------------------------------------------------------------------
    def delivery(self, headers: Mapping[str, str], payload: Any) -> Delivery:
        if not isinstance(payload, dict) or not payload.get("hash") or not payload.get("scope"):
            raise PayloadError("A BigCommerce hook body {scope, store_id, data, hash, created_at} is required.")
        return Delivery(dedup_key=str(payload["hash"]), delivery_id=headers.get("webhook-id", str(payload["hash"])),
                        topic=str(payload["scope"]), occurred_at=parse_time(payload.get("created_at")))

    def commands(self, topic: str, payload: Any) -> list[Command]:
        data = payload.get("data") or {}
        try:
            if topic == "store/order/created":
                items = data.get("items")
                if items is None:
                    raise PayloadError("store/order/created without items: fetch-on-receipt is not enabled.")
                return [OrderPlaced(
                    external_id=str(data["id"]), name=str(data.get("id")),
                    currency=str(data.get("currency_code", "USD"))[:3], total=Decimal(str(data.get("total_inc_tax", "0"))),
                    placed_at=parse_time(payload.get("created_at")),
                    lines=[OrderLineIn(external_id=str(item["id"]), quantity=int(item["quantity"]),
                                       unit_price=Decimal(str(item.get("price_inc_tax", item.get("price", "0")))),
                                       listing=ListingRef(sku=str(item.get("sku") or ""),
                                                          product_id=str(item.get("product_id") or ""),
                                                          variant_id=str(item.get("variant_id") or "")))
                           for item in items],
                )]
            if topic == "store/order/statusUpdated":
                status = data.get("status") or {}
                new = str(status.get("new_status_id", status) if isinstance(status, dict) else status).lower()
                if new in CANCELLED_STATUSES:
                    return [OrderCancelled(external_id=str(data["id"]), restock=True)]
                return [Ignored(f"order status {new!r} does not move stock")]
            if topic == "store/product/inventory/updated":
                inventory = data.get("inventory") or {}
                if inventory.get("method") == "absolute":
                    return [InventoryReported(listing=ListingRef(product_id=str(inventory["product_id"])),
                                              available=int(inventory["value"]),
                                              as_of=parse_time(payload.get("created_at")) or parse_time(0))]
                return [Ignored("relative inventory changes are caught by reconciliation")]
        except (KeyError, TypeError, ValueError, ArithmeticError) as exc:
            raise PayloadError(f"{topic}: {type(exc).__name__} {exc}") from None
        return [Ignored(f"scope {topic} does not change stock or orders")]

    # -- outbound -------------------------------------------------------------------------
    def observe(self, response: requests.Response) -> None:
        left = response.headers.get("X-Rate-Limit-Requests-Left")
        if left is not None and left.isdigit():
            self.limiter.observe_remaining(int(left))

    def push(self, items: list[PushItem]) -> list[PushResult]:
        location = self.channel.publish_location_id
        if not location:
            raise PermanentError("No BigCommerce location id: set the channel's publish location.")
        results = []
        for start in range(0, len(items), self.max_batch):
            chunk = items[start:start + self.max_batch]
            body = {"reason": "Tally sync", "items": [
                {"location_id": int(location), "variant_id": int(i.listing.external_variant_id), "quantity": i.quantity}
                if i.listing.external_variant_id else
                {"location_id": int(location), "sku": i.listing.external_sku or i.listing.sku.code, "quantity": i.quantity}
                for i in chunk]}
            results += self._adjust(chunk, body)
        return results

    def _adjust(self, chunk: list[PushItem], body: dict, *, again: bool = True) -> list[PushResult]:
        """One absolute adjustment. A 422 names the rows it refused (``items.3.quantity``): those fail, with its
        reason, and the others go again in a request of their own (if a token is there; else they are retried),
        where one deleted variant failed, and parked, all of up to 2,000 rows."""
        try:
            response = self.request("PUT", f"/stores/{self.store_hash}/v3/inventory/adjustments/absolute",
                                    headers=self._headers(), json=body)
        except PermanentError as exc:
            named = _refused_rows(exc, len(chunk))
            if not named or len(named) == len(chunk) or not again:
                raise
            results = [PushResult(listing_id=chunk[i].listing.id, ok=False, error=f"refused: {reason}"[:500],
                                  http_status=exc.status, retryable=False) for i, reason in named.items()]
            rest = [i for i in range(len(chunk)) if i not in named]
            if self.limiter.try_acquire() != 0:
                return results + [PushResult(listing_id=chunk[i].listing.id, ok=False, http_status=exc.status,
                                             error="not sent: its request had an item refused") for i in rest]
            try:
                return results + self._adjust([chunk[i] for i in rest],
                                              {**body, "items": [body["items"][i] for i in rest]}, again=False)
            except PermanentError as second:
                return results + [PushResult(listing_id=chunk[i].listing.id, ok=False, error=str(second)[:500],
                                             http_status=second.status, retryable=False) for i in rest]
        return [PushResult(listing_id=i.listing.id, ok=True, quantity=i.quantity, http_status=response.status_code)
                for i in chunk]

    def read_stock(self) -> Iterator[RemoteLevel]:
        location = self.channel.publish_location_id
        page = 1
        while True:
            response = self.read("GET", f"/stores/{self.store_hash}/v3/inventory/items", headers=self._headers(),
                                    params={"location_id:in": location, "page": page, "limit": 250})
            body = response.json()
            for item in body.get("data", []):
                identity = item.get("identity") or item
                for loc in item.get("locations", [item]):
                    if str(loc.get("location_id", location)) != str(location):
                        continue
                    quantity = loc.get("available_to_sell", loc.get("total_inventory_onhand", loc.get("quantity", 0)))
                    yield RemoteLevel(ref={"variant_id": str(identity.get("variant_id", "")),
                                           "sku": str(identity.get("sku", ""))}, quantity=int(quantity or 0))
            pagination = (body.get("meta") or {}).get("pagination") or {}
            if page >= int(pagination.get("total_pages", 1) or 1):
                return
            page += 1


def _refused_rows(exc: PermanentError, count: int) -> dict[int, str]:
    """Row index -> reason, of the rows a 422's ``errors`` name (``items.3``, ``items.3.quantity``); {} if none."""
    if exc.status != 422:
        return {}
    try:
        errors = json.loads(exc.body).get("errors") or {}
    except (ValueError, AttributeError):
        return {}
    named: dict[int, str] = {}
    for key, reason in errors.items() if isinstance(errors, dict) else ():
        parts = str(key).split(".")
        if len(parts) >= 2 and parts[0] == "items" and parts[1].isdigit() and int(parts[1]) < count:
            named.setdefault(int(parts[1]), f"{key}: {reason}")
    return named
