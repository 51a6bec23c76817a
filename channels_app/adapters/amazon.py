"""Amazon Selling Partner API: no webhooks (notifications are relayed from a queue); stock per SKU by PATCH."""

from __future__ import annotations

from collections.abc import Mapping
from decimal import Decimal
from typing import Any
from urllib.parse import quote

from channels_app.adapters.base import ChannelAdapter, Delivery, PayloadError, PushItem, PushResult, parse_time
from channels_app.adapters.http import PermanentError
from channels_app.commands import Command, Ignored, ListingRef, OrderCancelled, OrderLineIn, OrderPlaced


def _money(value) -> Decimal:
    """SP-API money is an object {"CurrencyCode", "Amount"}; tolerate a bare amount too."""
    if isinstance(value, dict):
        value = value.get("Amount")
    return Decimal(str(value or "0"))


class AmazonAdapter(ChannelAdapter):
    kind = "amazon"
    max_batch = 1  # patchListingsItem is one SKU per call, 5 per second

    def _headers(self) -> dict[str, str]:
        return {"x-amz-access-token": self.channel.credentials.get("access_token", ""),
                "Content-Type": "application/json"}

    @property
    def seller_id(self) -> str:
        return self.channel.credentials.get("seller_id") or self.channel.external_id

    # -- inbound (relayed notifications) --------------------------------------------------
    def delivery(self, headers: Mapping[str, str], payload: Any) -> Delivery:
        meta = payload.get("NotificationMetadata") if isinstance(payload, dict) else None
        if not isinstance(meta, dict) or not meta.get("NotificationId") or not payload.get("NotificationType"):
            raise PayloadError("An SP-API notification envelope with NotificationMetadata.NotificationId is required.")
        return Delivery(dedup_key=str(meta["NotificationId"]), delivery_id=str(meta["NotificationId"]),
                        topic=str(payload["NotificationType"]), occurred_at=parse_time(payload.get("EventTime")))

    def commands(self, topic: str, payload: Any) -> list[Command]:
        body = payload.get("Payload") or {}
        try:
            if topic == "ORDER_CHANGE":
                change = body.get("OrderChangeNotification") or body
                order_id = str(change["AmazonOrderId"])
                summary = change.get("Summary") or {}
                status = str(summary.get("OrderStatus", change.get("OrderStatus", "Unshipped")))
                if status.lower() in ("canceled", "cancelled"):
                    return [OrderCancelled(external_id=order_id, restock=True)]
                items = summary.get("OrderItems", change.get("OrderItems", []))
                return [OrderPlaced(
                    external_id=order_id, name=order_id, placed_at=parse_time(payload.get("EventTime")),
                    lines=[OrderLineIn(external_id=str(item.get("OrderItemId", item.get("SellerSKU"))),
                                       quantity=int(item.get("Quantity", item.get("QuantityOrdered", 0))),
                                       unit_price=_money(item.get("ItemPrice")),
                                       listing=ListingRef(sku=str(item["SellerSKU"])))
                           for item in items],
                )]
        except (KeyError, TypeError, ValueError, ArithmeticError) as exc:
            raise PayloadError(f"{topic}: {type(exc).__name__} {exc}") from None
        return [Ignored(f"notification {topic} does not change stock or orders")]

    # -- outbound -------------------------------------------------------------------------
    def push(self, items: list[PushItem]) -> list[PushResult]:
        marketplace = self.channel.credentials.get("marketplace_id", "ATVPDKIKX0DER")
        results = []
        for item in items:
            sku = item.listing.external_sku or item.listing.sku.code
            body = {"productType": self.channel.credentials.get("product_type", "PRODUCT"), "patches": [
                {"op": "replace", "path": "/attributes/fulfillment_availability",
                 "value": [{"fulfillment_channel_code": "DEFAULT", "quantity": item.quantity}]}]}
            # The SKU is a path segment: one with a "/", "#" or a space went to another path (404: parked).
            response = self.request("PATCH", f"/listings/2021-08-01/items/{quote(self.seller_id, safe='')}/"
                                             f"{quote(sku, safe='')}",
                                    params={"marketplaceIds": marketplace}, headers=self._headers(), json=body)
            answer = response.json()
            if answer.get("status") != "ACCEPTED":
                raise PermanentError(f"patchListingsItem {sku}: {answer.get('status')} {answer.get('issues')}"[:500],
                                     status=response.status_code)
            results.append(PushResult(listing_id=item.listing.id, ok=True, quantity=item.quantity,
                                      http_status=response.status_code))
        return results
