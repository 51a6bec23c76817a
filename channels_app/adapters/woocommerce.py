"""WooCommerce: HMAC-signed webhooks without retries; stock through the products batch endpoint."""

from __future__ import annotations

import hashlib
import json
from collections.abc import Iterator, Mapping
from decimal import Decimal
from typing import Any

from channels_app.adapters.base import ChannelAdapter, Delivery, PayloadError, PushItem, PushResult, RemoteLevel, parse_time
from channels_app.adapters.http import ChannelError, PermanentError, RateLimited
from channels_app.commands import Command, Ignored, InventoryReported, ListingRef, OrderCancelled, OrderLineIn, OrderPlaced

CANCELLED = {"cancelled", "refunded", "failed"}
PLACED = {"pending", "processing", "on-hold", "completed"}


class WooCommerceAdapter(ChannelAdapter):
    kind = "woocommerce"
    max_batch = 100  # the batch endpoint refuses more (woocommerce_rest_request_entity_too_large)

    @property
    def _auth(self) -> tuple[str, str]:
        creds = self.channel.credentials
        return creds.get("consumer_key", ""), creds.get("consumer_secret", "")

    # -- inbound --------------------------------------------------------------------------
    def is_ping(self, headers: Mapping[str, str], body: bytes) -> bool:
        # WooCommerce announces a new hook with an unsigned form post "webhook_id=<id>".
        return not headers.get("X-WC-Webhook-Signature") and body.startswith(b"webhook_id=") and len(body) < 64

    def delivery(self, headers: Mapping[str, str], payload: Any) -> Delivery:
        topic = headers.get("X-WC-Webhook-Topic", "")
        if not topic or not isinstance(payload, dict) or "id" not in payload:
            raise PayloadError("X-WC-Webhook-Topic and a resource with an id are required.")
        modified = payload.get("date_modified_gmt") or payload.get("date_created_gmt") or ""
        # The delivery id is a hash of hook id + unix second and collides within a second, so the resource's own
        # identity and modification time make the key, and what the resource says: WooCommerce stamps the time to
        # the second, and an order processing then cancelled within one came twice with the same stamp; the cancel
        # was answered "duplicate" and lost (WooCommerce does not retry). A body sent again unchanged is still one.
        said = hashlib.sha256(json.dumps(payload, sort_keys=True, separators=(",", ":")).encode()).hexdigest()[:16]
        return Delivery(dedup_key=f"{headers.get('X-WC-Webhook-Resource', '')}:{payload['id']}:{topic}:{modified}:{said}",
                        delivery_id=headers.get("X-WC-Webhook-Delivery-ID", ""), topic=topic,
                        occurred_at=parse_time(modified))

    def commands(self, topic: str, payload: Any) -> list[Command]:
        try:
            if topic in ("order.created", "order.updated"):
                status = str(payload.get("status", ""))
                if status in CANCELLED:
                    return [OrderCancelled(external_id=str(payload["id"]), restock=True)]
                if status not in PLACED:
                    return [Ignored(f"order status {status!r} does not move stock")]
                return [OrderPlaced(
                    external_id=str(payload["id"]), name=str(payload.get("number", payload["id"])),
                    currency=str(payload.get("currency", "USD"))[:3], total=Decimal(str(payload.get("total", "0"))),
                    placed_at=parse_time(payload.get("date_created_gmt")),
                    lines=[OrderLineIn(
                        external_id=str(item["id"]), quantity=int(item["quantity"]),
                        unit_price=Decimal(str(item.get("price", "0"))),
                        listing=ListingRef(sku=str(item.get("sku") or ""), product_id=str(item.get("product_id") or ""),
                                           variant_id=str(item.get("variation_id") or "") if item.get("variation_id")
                                           else ""),
                    ) for item in payload.get("line_items", [])],
                )]
            if topic == "product.updated" and payload.get("manage_stock") and payload.get("stock_quantity") is not None:
                as_of = parse_time(payload.get("date_modified_gmt"))
                if as_of is not None:
                    return [InventoryReported(listing=ListingRef(product_id=str(payload["id"])),
                                              available=int(payload["stock_quantity"]), as_of=as_of)]
        except (KeyError, TypeError, ValueError, ArithmeticError) as exc:
            raise PayloadError(f"{topic}: {type(exc).__name__} {exc}") from None
        return [Ignored(f"topic {topic} does not change stock or orders")]

    # -- outbound -------------------------------------------------------------------------
    def requests_needed(self, items: list[PushItem]) -> int:
        simple = [i for i in items if not i.listing.external_variant_id]
        return (-(-len(simple) // self.max_batch)) + (len(items) - len(simple)) or 1

    def push(self, items: list[PushItem]) -> list[PushResult]:
        results = []
        simple = [i for i in items if not i.listing.external_variant_id]
        for start in range(0, len(simple), self.max_batch):
            results += self._push_batch(simple[start:start + self.max_batch])
        variations = [i for i in items if i.listing.external_variant_id]
        for index, item in enumerate(variations):
            # A request each: one failing is that listing's failure, not the batch's. Raised, it threw away the
            # results of the products already set, and every one of them was failed (and parked on a 404).
            try:
                response = self.request(
                    "PUT", f"/wp-json/wc/v3/products/{item.listing.external_product_id}/variations/"
                           f"{item.listing.external_variant_id}", auth=self._auth, json=self._body(item))
            except RateLimited as exc:
                if not results:
                    raise
                self.limiter.block_for(exc.retry_after)  # the rest wait for it, as after any 429
                results += [PushResult(listing_id=rest.listing.id, ok=False, error=str(exc), http_status=exc.status)
                            for rest in variations[index:]]
                break
            except ChannelError as exc:
                results.append(PushResult(listing_id=item.listing.id, ok=False, error=str(exc)[:500],
                                          http_status=exc.status, retryable=not isinstance(exc, PermanentError)))
                continue
            results.append(PushResult(listing_id=item.listing.id, ok=True,
                                      quantity=int(response.json().get("stock_quantity", item.quantity)),
                                      http_status=response.status_code))
        return results

    @staticmethod
    def _body(item: PushItem) -> dict:
        return {"manage_stock": True, "stock_quantity": item.quantity,
                "stock_status": "instock" if item.quantity > 0 else "outofstock"}

    def _push_batch(self, items: list[PushItem]) -> list[PushResult]:
        if not items:
            return []
        by_product: dict[str, PushItem] = {}
        # A second listing naming the same product had no answer of its own: left leased, then retried for ever.
        results = []
        for item in items:
            product = str(item.listing.external_product_id)
            if product in by_product:
                results.append(PushResult(listing_id=item.listing.id, ok=False, retryable=False,
                                          error=f"another listing of this channel names WooCommerce product {product}"))
            else:
                by_product[product] = item
        response = self.request("POST", "/wp-json/wc/v3/products/batch", auth=self._auth,
                                json={"update": [{"id": int(pid), **self._body(i)} for pid, i in by_product.items()]})
        answered = {str(entry.get("id")): entry for entry in response.json().get("update", [])}
        for pid, item in by_product.items():
            entry = answered.get(pid)
            if entry is None or entry.get("error"):
                error = (entry or {}).get("error") or {"message": "missing from the batch reply"}
                results.append(PushResult(listing_id=item.listing.id, ok=False, error=str(error)[:500],
                                          http_status=response.status_code, retryable=False))
            else:
                results.append(PushResult(listing_id=item.listing.id, ok=True,
                                          quantity=int(entry.get("stock_quantity", item.quantity)),
                                          http_status=response.status_code))
        return results

    publishes_catalog = True
    catalog_batch = 100

    def catalog_requests_needed(self, items: list) -> int:
        simple = [item for item in items if not item.listing.external_variant_id]
        parents = {item.listing.external_product_id for item in items if item.listing.external_variant_id}
        return max(1, -(-len(simple) // self.catalog_batch) + len(parents))

    def publish_catalog(self, items: list) -> None:
        """Simple products through ``products/batch``; a variation through its parent's ``variations/batch``: a price
        sent to a variable product's parent id is not the variation's (WooCommerce prices each variation; the parent
        shows the range), and the variation kept its old price. A variation has no name of its own to set."""
        simple = [item for item in items if not item.listing.external_variant_id]
        by_parent: dict[str, list] = {}
        for item in items:
            if item.listing.external_variant_id:
                by_parent.setdefault(item.listing.external_product_id, []).append(item)
        errors: list = []
        if simple:
            errors += self._catalog_batch("/wp-json/wc/v3/products/batch",
                                          [self._catalog_row(item, item.listing.external_product_id, named=True)
                                           for item in simple])
        for parent, variations in by_parent.items():
            rows = [self._catalog_row(item, item.listing.external_variant_id, named=False) for item in variations]
            rows = [row for row in rows if len(row) > 1]  # a name alone: nothing to send
            if rows:
                errors += self._catalog_batch(f"/wp-json/wc/v3/products/{parent}/variations/batch", rows)
        if errors:
            from channels_app.adapters.http import PermanentError

            raise PermanentError(f"batch refused {len(errors)} product(s): {errors[:3]}"[:500])

    @staticmethod
    def _catalog_row(item, object_id: str, *, named: bool) -> dict:
        row: dict = {"id": int(object_id)}
        if item.price is not None:
            row["regular_price"] = f"{item.price:.2f}"
        if named and item.name is not None:
            row["name"] = item.name
        if item.active is not None:
            # A variation is hidden as "private"; "draft" is a product's.
            row["status"] = "publish" if item.active else ("draft" if named else "private")
        return row

    def _catalog_batch(self, path: str, rows: list[dict]) -> list:
        response = self.request("POST", path, auth=self._auth, json={"update": rows})
        return [entry for entry in response.json().get("update", []) if entry.get("error")]

    def read_stock(self) -> Iterator[RemoteLevel]:
        """Every product's stock, and a variable product's variations' (read from its own list: the product shows
        none, and a drift on a variation went unseen)."""
        for product in self._pages("/wp-json/wc/v3/products"):
            if product.get("manage_stock"):
                yield RemoteLevel(ref={"product_id": str(product["id"])},
                                  quantity=int(product.get("stock_quantity") or 0))
            if product.get("type") == "variable" or product.get("variations"):
                for variation in self._pages(f"/wp-json/wc/v3/products/{product['id']}/variations"):
                    if variation.get("manage_stock"):
                        yield RemoteLevel(ref={"product_id": str(product["id"]), "variant_id": str(variation["id"])},
                                          quantity=int(variation.get("stock_quantity") or 0))

    def _pages(self, path: str) -> Iterator[dict]:
        page = 1
        while True:
            response = self.read("GET", path, auth=self._auth, params={"per_page": 100, "page": page})
            yield from response.json()
            if page >= int(response.headers.get("X-WP-TotalPages", "1") or 1):
                return
            page += 1
