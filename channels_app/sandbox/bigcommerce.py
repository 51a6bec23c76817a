"""BigCommerce v3 Inventory API imitation: absolute/relative adjustments, inventory items, webhooks.

Rate limit: a fixed window of 150 requests per 30 s (standard plan) with BigCommerce's four
``X-Rate-Limit-*`` headers on every reply; over it, 429 (BigCommerce sends no Retry-After: the reset time
is in ``X-Rate-Limit-Time-Reset-Ms``).

Webhooks: the body is ``{scope, store_id, data, hash, created_at, producer}``, signed the Standard Webhooks
way with the webhook secret, plus the custom header ``X-Tally-Hook-Token`` that BigCommerce echoes back
from the hook registration. Real order hooks carry only ``data: {type, id}`` and the receiver fetches the
order; the sandbox also inlines the order's products as ``data.items`` so the hub need not call back.
"""

from __future__ import annotations

import hashlib
import json
import math
import time
import uuid
from typing import Any

from .base import Item, Order, Request, Response, Route, SandboxState, page_bounds
from .limits import FixedWindow
from .signing import standard_headers

STATUS_DOCS = "https://developer.bigcommerce.com/api-docs/getting-started/api-status-codes"
STORE = r"^/stores/(?P<store_hash>[^/]+)/v3"
AWAITING_FULFILLMENT, CANCELLED = 11, 5


class BigCommerceState(SandboxState):
    kind = "bigcommerce"
    MULTI_LOCATION = True
    DEFAULT_LOCATION_ID = 1
    ORDER_ID_BASE = 101
    LINE_ID_BASE = 1
    ROUTES = [
        ("PUT", rf"{STORE}/inventory/adjustments/absolute/?$", "absolute", "inventory/adjustments/absolute"),
        ("POST", rf"{STORE}/inventory/adjustments/relative/?$", "relative", "inventory/adjustments/relative"),
        ("GET", rf"{STORE}/inventory/items/?$", "list_items", "inventory/items"),
    ]
    DEFAULT_PLAN = {"window_quota": 150, "window_ms": 30_000, "max_adjustment_items": 2000, "store_id": "1001234"}
    PLANS = {
        "standard": {},
        "plus": {"window_quota": 150, "window_ms": 30_000},
        "pro": {"window_quota": 450, "window_ms": 30_000},
    }

    def init_limits(self) -> None:
        self.window = FixedWindow(int(self.plan["window_quota"]), float(self.plan["window_ms"]) / 1000.0)

    @property
    def store_hash(self) -> str:
        return self.credentials.get("store_hash") or self.plan.get("store_hash") or "sandbox"

    # -- catalog -------------------------------------------------------------------------------------------

    def assign_ids(self, item: Item, same_sku: list[Item]) -> None:
        super().assign_ids(item, same_sku)
        sibling = same_sku[0] if same_sku else None
        if item.product_id is None:
            item.product_id = sibling.product_id if sibling else self.next_id("product", 111)
        if item.variant_id is None:
            item.variant_id = sibling.variant_id if sibling else self.next_id("variant", 201)

    def known_location(self, location_id: Any) -> bool:
        return location_id == self.DEFAULT_LOCATION_ID or any(item.location_id == location_id for item in self.items)

    # -- platform hooks ------------------------------------------------------------------------------------

    def error(self, status: int, code: str, message: str, errors: dict | None = None) -> Response:
        return Response(status, {"status": status, "title": message, "type": STATUS_DOCS, "errors": errors or {}})

    def authenticate(self, req: Request, params: dict) -> Response | None:
        token = self.credentials.get("access_token")
        if token is not None and req.header("X-Auth-Token") != token:
            return self.error(401, "unauthorized", "No valid credential was found.")
        expected_hash = self.credentials.get("store_hash")
        if expected_hash is not None and params.get("store_hash") != expected_hash:
            return self.error(401, "unauthorized", "The store hash does not match the credential.")
        return None

    def admit(self, req: Request, route: Route, now: float) -> Response | None:
        if not self.window.take(now):
            self.record_refused()
            return self.error(429, "too_many_requests", "Too many requests")
        self.record_accepted(now)
        return None

    def finalize(self, req: Request, route: Route | None, resp: Response) -> None:
        now = time.monotonic()
        resp.headers["X-Rate-Limit-Requests-Left"] = str(self.window.left(now))
        resp.headers["X-Rate-Limit-Time-Reset-Ms"] = str(self.window.reset_ms(now))
        resp.headers["X-Rate-Limit-Requests-Quota"] = str(self.window.quota)
        resp.headers["X-Rate-Limit-Time-Window-Ms"] = str(int(self.window.window_s * 1000))

    # -- adjustments ---------------------------------------------------------------------------------------

    def _find(self, row: dict) -> list[Item]:
        if row.get("variant_id") is not None:
            return [it for it in self.items if it.variant_id == row["variant_id"]]
        if row.get("sku") is not None:
            return [it for it in self.items if it.sku == row["sku"]]
        if row.get("product_id") is not None:
            return [it for it in self.items if it.product_id == row["product_id"]]
        return []

    def _adjust(self, req: Request, relative: bool) -> Response:
        body = req.json()
        items = body.get("items") if isinstance(body, dict) else None
        if not isinstance(items, list) or not items:
            return self.error(422, "invalid", "Input is invalid", {"items": "items must be a non-empty array"})
        limit = int(self.plan["max_adjustment_items"])
        if len(items) > limit:
            return self.error(
                422, "too_many_items", f"Input is invalid: at most {limit} items per request", {"items": f"max {limit} items"}
            )
        errors: dict[str, str] = {}
        planned: list[tuple[Item | None, Item, Any, int]] = []
        with self.lock:
            for i, row in enumerate(items):
                if not isinstance(row, dict):
                    errors[f"items.{i}"] = "must be an object"
                    continue
                quantity = row.get("quantity")
                if isinstance(quantity, bool) or not isinstance(quantity, int):
                    errors[f"items.{i}.quantity"] = "quantity must be an integer"
                    continue
                if not relative and quantity < 0:
                    errors[f"items.{i}.quantity"] = "quantity must be >= 0"
                    continue
                location_id = row.get("location_id")
                if not self.known_location(location_id):
                    errors[f"items.{i}.location_id"] = f"location {location_id} does not exist"
                    continue
                matches = self._find(row)
                if not matches:
                    errors[f"items.{i}"] = "no variant matches variant_id/sku/product_id"
                    continue
                here = next((it for it in matches if it.location_id == location_id), None)
                current = here.quantity if here else 0
                target = current + quantity if relative else quantity
                if target < 0:
                    # (unconfirmed) BigCommerce refuses to take tracked stock below zero.
                    errors[f"items.{i}.quantity"] = f"would leave {target} in stock"
                    continue
                planned.append((here, matches[0], location_id, target))
            if errors:
                return self.error(422, "invalid", "Input is invalid", errors)
            for here, template, location_id, target in planned:
                if here is None:
                    # Adjusting at an assigned location that had no record yet creates it, as BigCommerce does.
                    here = Item(
                        sku=template.sku,
                        quantity=0,
                        product_id=template.product_id,
                        variant_id=template.variant_id,
                        location_id=location_id,
                        price=template.price,
                        name=template.name,
                    )
                    self.items.append(here)
                here.touch(target)
        return Response(200, {"transaction_id": str(uuid.uuid4())})

    def absolute(self, req: Request, store_hash: str) -> Response:
        return self._adjust(req, relative=False)

    def relative(self, req: Request, store_hash: str) -> Response:
        return self._adjust(req, relative=True)

    # -- reads ---------------------------------------------------------------------------------------------

    def list_items(self, req: Request, store_hash: str) -> Response:
        limit = page_bounds(req.arg("limit"), 50, 1000)
        page_raw = req.arg("page", "1") or "1"
        if limit is None or not page_raw.isdigit() or int(page_raw) < 1:
            return self.error(422, "invalid", "Invalid page or limit", {"limit": "1..1000", "page": ">= 1"})
        page = int(page_raw)

        def ids(name: str) -> set[int] | None:
            raw = req.arg(name)
            return {int(x) for x in raw.split(",") if x.strip().isdigit()} if raw else None

        locations, variants, products = ids("location_id:in"), ids("variant_id:in"), ids("product_id:in")
        skus = set((req.arg("sku:in") or "").split(",")) - {""}
        with self.lock:
            grouped: dict[int, list[Item]] = {}
            for item in self.items:
                if locations and item.location_id not in locations:
                    continue
                if (variants and item.variant_id not in variants) or (products and item.product_id not in products):
                    continue
                if skus and item.sku not in skus:
                    continue
                grouped.setdefault(item.variant_id, []).append(item)
            keys = sorted(grouped)
            total = len(keys)
            rows = [
                {
                    "identity": {
                        "sku": grouped[k][0].sku,
                        "variant_id": k,
                        "product_id": grouped[k][0].product_id,
                        "sku_id": None,
                    },
                    "locations": [
                        {
                            "location_id": it.location_id,
                            "location_code": f"LOC-{it.location_id}",
                            "location_name": "Default location"
                            if it.location_id == self.DEFAULT_LOCATION_ID
                            else f"Location {it.location_id}",
                            "available_to_sell": max(0, it.quantity),
                            "total_inventory_onhand": it.quantity,
                            "settings": {
                                "safety_stock": 0,
                                "is_in_stock": it.quantity > 0,
                                "warning_level": 0,
                                "bin_picking_number": "",
                            },
                        }
                        for it in sorted(grouped[k], key=lambda it: it.location_id)
                    ],
                }
                for k in keys[(page - 1) * limit : page * limit]
            ]
        total_pages = math.ceil(total / limit) if total else 0
        links = {"current": f"?page={page}&limit={limit}"}
        if page > 1:
            links["previous"] = f"?page={page - 1}&limit={limit}"
        if page < total_pages:
            links["next"] = f"?page={page + 1}&limit={limit}"
        meta = {
            "pagination": {
                "total": total,
                "count": len(rows),
                "per_page": limit,
                "current_page": page,
                "total_pages": total_pages,
                "links": links,
            }
        }
        return Response(200, {"data": rows, "meta": meta})

    # -- webhooks ------------------------------------------------------------------------------------------

    def wrap_payload(self, topic: str, payload: Any, delivery_id: str) -> Any:
        created_at = int(time.time())
        digest = hashlib.sha1(json.dumps([topic, payload, created_at, delivery_id], sort_keys=True).encode()).hexdigest()
        return {
            "scope": topic,
            "store_id": str(self.plan["store_id"]),
            "data": payload,
            "hash": digest,
            "created_at": created_at,
            "producer": f"stores/{self.store_hash}",
        }

    def sign_webhook(self, topic: str, body: bytes, delivery_id: str, payload: Any) -> dict[str, str]:
        if not self.webhook_secret:
            return {}
        return {**standard_headers(self.webhook_secret, delivery_id, body), "X-Tally-Hook-Token": self.webhook_secret}

    def _items(self, order: Order) -> list[dict]:
        return [
            {
                "id": line.line_id,
                "product_id": line.product_id,
                "variant_id": line.variant_id,
                "sku": line.sku,
                "name": line.name,
                "quantity": line.quantity,
                "base_price": line.price,
                "price_ex_tax": line.price,
                "price_inc_tax": line.price,
            }
            for line in order.lines
        ]

    def order_created_events(self, order: Order) -> list[tuple[str, dict]]:
        return [("store/order/created", {"type": "order", "id": order.order_id, "items": self._items(order)})]

    def order_cancelled_events(self, order: Order, restock: bool) -> list[tuple[str, dict]]:
        status = {"previous_status_id": AWAITING_FULFILLMENT, "new_status_id": CANCELLED}
        return [("store/order/statusUpdated", {"type": "order", "id": order.order_id, "status": status})]

    def refund_events(self, order: Order, refund: dict) -> list[tuple[str, dict]]:
        by_id = {line.line_id: line for line in order.lines}
        items = [
            {
                "item_id": r["line_id"],
                "item_type": "PRODUCT",
                "quantity": r["quantity"],
                "sku": by_id[r["line_id"]].sku,
                "variant_id": by_id[r["line_id"]].variant_id,
                "product_id": by_id[r["line_id"]].product_id,
            }
            for r in refund["lines"]
        ]
        data = {
            "type": "order",
            "id": order.order_id,
            "refund": {"refund_id": refund["refund_id"]},
            "items": items,
            "restock": refund["restock"],
            "location_id": refund["location_id"],
        }
        return [("store/order/refund/created", data)]

    def inventory_level_events(self, item: Item) -> list[tuple[str, dict]]:
        inventory = {
            "product_id": item.product_id,
            "method": "absolute",
            "value": item.quantity,
            "variant_id": item.variant_id,
            "location_id": item.location_id,
        }
        has_siblings = any(other.product_id == item.product_id and other.variant_id != item.variant_id for other in self.items)
        if has_siblings:
            return [("store/sku/inventory/updated", {"type": "sku", "id": item.variant_id, "inventory": inventory})]
        return [("store/product/inventory/updated", {"type": "product", "id": item.product_id, "inventory": inventory})]
