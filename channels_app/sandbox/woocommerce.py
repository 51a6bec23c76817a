"""WooCommerce REST API v3 imitation: product and variation stock, batch updates, listing, webhooks.

WooCommerce documents no rate limit (it depends on the host), so only injected faults refuse calls.
Catalog rows without ``variant_id`` are simple products; rows with one are variations of ``product_id``.
"""

from __future__ import annotations

import base64
import hashlib
import math
import time
from decimal import Decimal
from typing import Any

from .base import ApiError, Item, Order, Request, Response, Route, SandboxState, money, page_bounds, utcnow
from .signing import hmac_sha256_b64

API = "/wp-json/wc/v3"
STOCK_STATUSES = ("instock", "outofstock", "onbackorder")
WEBHOOK_IDS = {"order.created": 11, "order.updated": 12, "product.updated": 13, "product.created": 14}


def _gmt(moment) -> str:
    return moment.strftime("%Y-%m-%dT%H:%M:%S")


class WooCommerceState(SandboxState):
    kind = "woocommerce"
    ORDER_ID_BASE = 7001
    LINE_ID_BASE = 301
    ROUTES = [
        ("POST", rf"^{API}/products/batch/?$", "batch_products", "products/batch"),
        ("POST", rf"^{API}/products/(?P<pid>\d+)/variations/batch/?$", "batch_variations", "variations/batch"),
        ("GET", rf"^{API}/products/?$", "list_products", "products/list"),
        ("GET", rf"^{API}/products/(?P<pid>\d+)/?$", "get_product", "products/get"),
        ("GET", rf"^{API}/products/(?P<pid>\d+)/variations/?$", "list_variations", "variations/list"),
        ("GET", rf"^{API}/products/(?P<pid>\d+)/variations/(?P<vid>\d+)/?$", "get_variation", "variations/get"),
    ]
    # WordPress routes accept POST, PUT and PATCH alike for edits.
    for _method in ("PUT", "POST", "PATCH"):
        ROUTES.append((_method, rf"^{API}/products/(?P<pid>\d+)/?$", "update_product", "products/update"))
        ROUTES.append(
            (_method, rf"^{API}/products/(?P<pid>\d+)/variations/(?P<vid>\d+)/?$", "update_variation", "variations/update")
        )
    del _method
    DEFAULT_PLAN = {"batch_limit": 100}

    # -- catalog -------------------------------------------------------------------------------------------

    def assign_ids(self, item: Item, same_sku: list[Item]) -> None:
        if item.product_id is None:
            item.product_id = self.next_id("product", 101)
        if item.manage_stock is None:
            item.manage_stock = True
        self.after_stock_write(item)

    def same_slot(self, a: Item, b: Item) -> bool:
        return a.sku == b.sku or (a.product_id == b.product_id and a.variant_id == b.variant_id)

    def after_stock_write(self, item: Item) -> None:
        if item.manage_stock:
            # With managed stock WooCommerce derives the status from the quantity (backorders not modelled).
            item.stock_status = "instock" if item.quantity > 0 else "outofstock"
        elif item.stock_status is None:
            item.stock_status = "instock"

    def tracked(self, item: Item) -> bool:
        return bool(item.manage_stock)

    def _product(self, pid: int) -> Item | None:
        return next((it for it in self.items if it.product_id == pid and it.variant_id is None), None)

    def _variation(self, pid: int, vid: int) -> Item | None:
        return next((it for it in self.items if it.product_id == pid and it.variant_id == vid), None)

    # -- platform hooks ------------------------------------------------------------------------------------

    def error(self, status: int, code: str, message: str) -> Response:
        codes = {404: "rest_no_route", 429: "woocommerce_rest_too_many_requests"}
        if code in ("not_found", "too_many_requests"):
            code = codes.get(status, code)
        if status >= 500:
            code = "internal_server_error"
        return Response(status, {"code": code, "message": message, "data": {"status": status}})

    def authenticate(self, req: Request, params: dict) -> Response | None:
        key, secret = self.credentials.get("consumer_key"), self.credentials.get("consumer_secret")
        if key is None:
            return None
        given_key, given_secret = req.arg("consumer_key"), req.arg("consumer_secret")
        auth = req.header("Authorization") or ""
        if auth.startswith("Basic "):
            try:
                given_key, _, given_secret = base64.b64decode(auth[6:]).decode().partition(":")
            except (ValueError, UnicodeDecodeError):
                given_key = given_secret = None
        if not given_key:
            if req.method == "GET":
                return self.error(401, "woocommerce_rest_cannot_view", "Sorry, you cannot list resources.")
            return self.error(401, "woocommerce_rest_cannot_edit", "Sorry, you are not allowed to edit this resource.")
        if given_key != key:
            return self.error(401, "woocommerce_rest_authentication_error", "Consumer key is invalid.")
        if given_secret != secret:
            return self.error(401, "woocommerce_rest_authentication_error", "Consumer secret is invalid.")
        return None

    def admit(self, req: Request, route: Route, now: float) -> Response | None:
        self.record_accepted(now)  # no documented limit: every authenticated call is accepted
        return None

    # -- JSON ----------------------------------------------------------------------------------------------

    def _stock_fields(self, item: Item) -> dict:
        return {
            "sku": item.sku,
            "price": item.price,
            "regular_price": item.price,
            "sale_price": "",
            "manage_stock": bool(item.manage_stock),
            "stock_quantity": item.quantity if item.manage_stock else None,
            "stock_status": item.stock_status,
            "backorders": "no",
            "status": "publish" if item.active else "draft",
            "date_modified": _gmt(item.updated_at),
            "date_modified_gmt": _gmt(item.updated_at),
        }

    def _product_json(self, pid: int) -> dict | None:
        simple = self._product(pid)
        if simple is not None:
            return {
                "id": pid,
                "name": simple.name,
                "type": "simple",
                "status": "publish",
                **self._stock_fields(simple),
                "variations": [],
            }
        variations = sorted((it for it in self.items if it.product_id == pid), key=lambda it: it.variant_id)
        if not variations:
            return None
        newest = max(it.updated_at for it in variations)
        return {
            "id": pid,
            "name": f"Product {pid}",
            "type": "variable",
            "status": "publish",
            "sku": "",
            "price": str(min(Decimal(it.price) for it in variations)),
            "manage_stock": False,
            "stock_quantity": None,
            "stock_status": "instock" if any(it.stock_status == "instock" for it in variations) else "outofstock",
            "date_modified": _gmt(newest),
            "date_modified_gmt": _gmt(newest),
            "variations": [it.variant_id for it in variations],
        }

    def _variation_json(self, item: Item) -> dict:
        return {
            "id": item.variant_id,
            "parent_id": item.product_id,
            "name": item.name,
            "status": "publish" if item.active else "private",
            **self._stock_fields(item),
        }

    # -- stock writes --------------------------------------------------------------------------------------

    def _apply(self, item: Item, data: dict) -> None:
        """Validate everything first, then write: a bad field leaves the object untouched."""
        bad = {}
        if "manage_stock" in data and not isinstance(data["manage_stock"], bool):
            bad["manage_stock"] = "manage_stock is not of type boolean."
        quantity = data.get("stock_quantity")
        if "stock_quantity" in data and quantity is not None and (isinstance(quantity, bool) or not isinstance(quantity, int)):
            if isinstance(quantity, str) and quantity.lstrip("-").isdigit():
                quantity = int(quantity)
            else:
                bad["stock_quantity"] = "stock_quantity is not of type integer,null."
        if "stock_status" in data and data["stock_status"] not in STOCK_STATUSES:
            bad["stock_status"] = f"stock_status is not one of {', '.join(STOCK_STATUSES)}."
        if "regular_price" in data:
            try:
                Decimal(str(data["regular_price"]))
            except ArithmeticError:
                bad["regular_price"] = "regular_price is not of type string."
            if not isinstance(data["regular_price"], str):
                bad["regular_price"] = "regular_price is not of type string."
        if "status" in data and data["status"] not in ("draft", "pending", "private", "publish"):
            bad["status"] = "status is not one of draft, pending, private, publish."
        if bad:
            raise ApiError(
                Response(
                    400,
                    {
                        "code": "rest_invalid_param",
                        "message": f"Invalid parameter(s): {', '.join(bad)}",
                        "data": {"status": 400, "params": bad},
                    },
                )
            )
        if "regular_price" in data:
            item.price = money(data["regular_price"])
        if "name" in data and isinstance(data["name"], str):
            item.name = data["name"]
        if "status" in data:
            item.active = data["status"] == "publish"
        if "manage_stock" in data:
            item.manage_stock = data["manage_stock"]
        if "stock_status" in data and not item.manage_stock:
            item.stock_status = data["stock_status"]
        if "stock_quantity" in data and quantity is not None:
            item.touch(quantity)
        else:
            item.updated_at = utcnow()
        self.after_stock_write(item)

    def _invalid_id(self, status: int = 404) -> Response:
        return Response(
            status, {"code": "woocommerce_rest_product_invalid_id", "message": "Invalid ID.", "data": {"status": status}}
        )

    def update_product(self, req: Request, pid: str) -> Response:
        data = req.json()
        if not isinstance(data, dict):
            return Response(400, {"code": "rest_invalid_json", "message": "Invalid JSON body passed.", "data": {"status": 400}})
        with self.lock:
            item = self._product(int(pid))
            if item is None:
                return self._invalid_id()
            self._apply(item, data)
            return Response(200, self._product_json(int(pid)))

    def update_variation(self, req: Request, pid: str, vid: str) -> Response:
        data = req.json()
        if not isinstance(data, dict):
            return Response(400, {"code": "rest_invalid_json", "message": "Invalid JSON body passed.", "data": {"status": 400}})
        with self.lock:
            item = self._variation(int(pid), int(vid))
            if item is None:
                return Response(
                    404,
                    {"code": "woocommerce_rest_product_variation_invalid_id", "message": "Invalid ID.", "data": {"status": 404}},
                )
            self._apply(item, data)
            return Response(200, self._variation_json(item))

    def _batch(self, req: Request, find, render) -> Response:
        data = req.json()
        if not isinstance(data, dict):
            return Response(400, {"code": "rest_invalid_json", "message": "Invalid JSON body passed.", "data": {"status": 400}})
        limit = int(self.plan["batch_limit"])
        total = sum(len(data.get(key) or []) for key in ("create", "update", "delete"))
        if total > limit:
            return Response(
                413,
                {
                    "code": "woocommerce_rest_request_entity_too_large",
                    "message": f"Unable to accept more than {limit} items for this request.",
                    "data": {"status": 413},
                },
            )
        out: dict[str, list] = {}
        with self.lock:
            for key in ("create", "delete"):
                if data.get(key):
                    out[key] = [
                        {
                            "id": row.get("id", 0) if isinstance(row, dict) else row,
                            "error": {
                                "code": "woocommerce_rest_sandbox_unsupported",
                                "message": f"The sandbox does not {key} products.",
                                "data": {"status": 400},
                            },
                        }
                        for row in data[key]
                    ]
            if data.get("update") is not None:
                results = []
                for row in data["update"]:
                    item = find(row.get("id")) if isinstance(row, dict) else None
                    if item is None:
                        results.append(
                            {
                                "id": row.get("id", 0) if isinstance(row, dict) else 0,
                                "error": {
                                    "code": "woocommerce_rest_product_invalid_id",
                                    "message": "Invalid ID.",
                                    "data": {"status": 400},
                                },
                            }
                        )
                        continue
                    try:
                        self._apply(item, row)
                    except ApiError as exc:
                        results.append({"id": row.get("id"), "error": exc.response.body})
                        continue
                    results.append(render(item))
                out["update"] = results
        return Response(200, out)

    def batch_products(self, req: Request) -> Response:
        def find(pid: Any) -> Item | None:
            return self._product(int(pid)) if str(pid).isdigit() else None

        return self._batch(req, find, lambda item: self._product_json(item.product_id))

    def batch_variations(self, req: Request, pid: str) -> Response:
        def find(vid: Any) -> Item | None:
            return self._variation(int(pid), int(vid)) if str(vid).isdigit() else None

        return self._batch(req, find, self._variation_json)

    # -- reads ---------------------------------------------------------------------------------------------

    def _paged(self, req: Request, rows: list[dict], path: str) -> Response:
        per_page = page_bounds(req.arg("per_page"), 10, 100)
        page_raw = req.arg("page", "1") or "1"
        if per_page is None or not page_raw.isdigit() or int(page_raw) < 1:
            return Response(
                400,
                {
                    "code": "rest_invalid_param",
                    "message": "Invalid parameter(s): per_page, page",
                    "data": {"status": 400, "params": {"per_page": "per_page must be between 1 (inclusive) and 100 (inclusive)"}},
                },
            )
        page = int(page_raw)
        total_pages = max(1, math.ceil(len(rows) / per_page)) if rows else 0
        body = rows[(page - 1) * per_page : page * per_page]
        headers = {"X-WP-Total": str(len(rows)), "X-WP-TotalPages": str(total_pages)}
        links = []
        base = f"{self.base_url}{path}?per_page={per_page}"
        if page > 1:
            links.append(f'<{base}&page={page - 1}>; rel="prev"')
        if page < total_pages:
            links.append(f'<{base}&page={page + 1}>; rel="next"')
        if links:
            headers["Link"] = ", ".join(links)
        return Response(200, body, headers)

    def list_products(self, req: Request) -> Response:
        skus = set(filter(None, (req.arg("sku") or "").split(",")))
        include = {int(x) for x in (req.arg("include") or "").split(",") if x.strip().isdigit()}
        with self.lock:
            pids = sorted({it.product_id for it in self.items})
            rows = [self._product_json(pid) for pid in pids if not include or pid in include]
        rows = [row for row in rows if row and (not skus or row["sku"] in skus)]
        return self._paged(req, rows, f"{API}/products")

    def get_product(self, req: Request, pid: str) -> Response:
        with self.lock:
            product = self._product_json(int(pid))
        return Response(200, product) if product else self._invalid_id()

    def list_variations(self, req: Request, pid: str) -> Response:
        with self.lock:
            rows = [
                self._variation_json(it)
                for it in sorted(self.items, key=lambda it: it.variant_id or 0)
                if it.product_id == int(pid) and it.variant_id is not None
            ]
        return self._paged(req, rows, f"{API}/products/{pid}/variations")

    def get_variation(self, req: Request, pid: str, vid: str) -> Response:
        with self.lock:
            item = self._variation(int(pid), int(vid))
            if item is None:
                return self._invalid_id()
            return Response(200, self._variation_json(item))

    # -- webhooks ------------------------------------------------------------------------------------------

    def delivery_succeeded(self, status: int) -> bool:
        return 200 <= status <= 302  # WooCommerce counts redirects as delivered

    def sign_webhook(self, topic: str, body: bytes, delivery_id: str, payload: Any) -> dict[str, str]:
        resource, _, event = topic.partition(".")
        webhook_id = WEBHOOK_IDS.get(topic, 100 + int(hashlib.md5(topic.encode()).hexdigest()[:4], 16) % 900)
        # Like wp_hash(id . time): two deliveries of one hook within a second share this id.
        salt = self.webhook_secret or ""
        delivery = hashlib.md5(f"{salt}{webhook_id}{int(time.time())}".encode()).hexdigest()
        return {
            "User-Agent": "WooCommerce/9.8.0 Hookshot (WordPress/6.8)",
            "X-WC-Webhook-Source": f"{self.base_url}/",
            "X-WC-Webhook-Topic": topic,
            "X-WC-Webhook-Resource": resource,
            "X-WC-Webhook-Event": event,
            "X-WC-Webhook-Signature": hmac_sha256_b64(self.webhook_secret, body),
            "X-WC-Webhook-ID": str(webhook_id),
            "X-WC-Webhook-Delivery-ID": delivery,
        }

    def _order_json(self, order: Order, status: str) -> dict:
        refunds = []
        for refund in order.refunds:
            by_id = {line.line_id: line for line in order.lines}
            total = sum((Decimal(by_id[r["line_id"]].price) * r["quantity"] for r in refund["lines"]), Decimal("0"))
            refunds.append(
                {
                    "id": refund["refund_id"],
                    "reason": "",
                    "total": money(-total),
                    # The refund resource's own line items, inlined so the hub need not fetch /orders/<id>/refunds.
                    "line_items": [
                        {
                            "id": self.next_id("refund_line", 9001),
                            "product_id": by_id[r["line_id"]].product_id,
                            "variation_id": by_id[r["line_id"]].variant_id or 0,
                            "sku": by_id[r["line_id"]].sku,
                            "quantity": -r["quantity"],
                            "meta_data": [{"key": "_refunded_item_id", "value": r["line_id"]}],
                        }
                        for r in refund["lines"]
                    ],
                    "restock": refund["restock"],
                }
            )
        return {
            "id": order.order_id,
            "parent_id": 0,
            "number": str(order.order_id),
            "order_key": f"wc_order_{hashlib.md5(str(order.order_id).encode()).hexdigest()[:13]}",
            "created_via": "checkout",
            "status": status,
            "currency": order.currency,
            "date_created": _gmt(order.created_at),
            "date_created_gmt": _gmt(order.created_at),
            "date_modified": _gmt(order.updated_at),
            "date_modified_gmt": _gmt(order.updated_at),
            "prices_include_tax": False,
            "total": order.total(),
            "total_tax": "0.00",
            "payment_method": "bacs",
            "line_items": [
                {
                    "id": line.line_id,
                    "name": line.name,
                    "product_id": line.product_id,
                    "variation_id": line.variant_id or 0,
                    "quantity": line.quantity,
                    "tax_class": "",
                    "subtotal": money(Decimal(line.price) * line.quantity),
                    "subtotal_tax": "0.00",
                    "total": money(Decimal(line.price) * line.quantity),
                    "total_tax": "0.00",
                    "taxes": [],
                    "meta_data": [],
                    "sku": line.sku,
                    # WooCommerce itself prints this one as a JSON number; the sandbox keeps money as strings.
                    "price": line.price,
                }
                for line in order.lines
            ],
            "refunds": refunds,
        }

    def order_created_events(self, order: Order) -> list[tuple[str, dict]]:
        return [("order.created", self._order_json(order, "processing"))]

    def order_cancelled_events(self, order: Order, restock: bool) -> list[tuple[str, dict]]:
        return [("order.updated", self._order_json(order, "cancelled"))]

    def refund_events(self, order: Order, refund: dict) -> list[tuple[str, dict]]:
        fully = all(order.refunded(line.line_id) >= line.quantity for line in order.lines)
        status = "cancelled" if order.status == "cancelled" else ("refunded" if fully else "processing")
        return [("order.updated", self._order_json(order, status))]

    def inventory_level_events(self, item: Item) -> list[tuple[str, dict]]:
        if item.variant_id is not None:
            return [("product.updated", self._variation_json(item))]
        return [("product.updated", self._product_json(item.product_id))]
