"""A generic channel (store POS, custom shop) that speaks Standard Webhooks both ways.

Inbound: the hub pushes ``POST /stock`` signed with ``credentials["signing_secret"]`` and the sandbox
verifies it with the ``standardwebhooks`` library (timestamp tolerance 5 minutes). ``webhook-id`` is the
idempotency key: a repeat is answered with the first answer and changes nothing. Reads (``GET /stock``)
carry no body, so they are accepted with either a valid signature over the empty body or
``Authorization: Bearer <credentials["api_key"]>``. A stock batch is answered 200
``{accepted, results: [{sku, status, quantity?, detail?}]}``, a row per item in order, status ``ok``,
``unknown_sku``, ``unknown_location`` or ``invalid``.
Outbound: ``{type, timestamp, data}`` envelopes signed with the webhook secret.

``close_for(seconds, status=503)`` (control: ``POST /_sandbox/unavailable {seconds, status?}``) answers every
API call with that 502, 503 or 504 and a ``Retry-After`` of the whole seconds until it reopens, as a store
closed for maintenance does; ``seconds: 0`` reopens it.
"""

from __future__ import annotations

import collections
import math
import time
import uuid
from typing import Any

from standardwebhooks import WebhookVerificationError

from .base import (
    BadRequest,
    Item,
    Order,
    Request,
    Response,
    Route,
    SandboxState,
    decode_cursor,
    encode_cursor,
    iso,
    money,
    page_bounds,
    utcnow,
)
from .signing import standard_headers, standard_webhook


class StandardState(SandboxState):
    kind = "standard"
    ORDER_ID_BASE = 50_001
    LINE_ID_BASE = 1
    ROUTES = [
        ("POST", r"^/stock/?$", "push_stock", "stock/push"),
        ("POST", r"^/catalog/?$", "push_stock", "catalog/push"),
        ("GET", r"^/stock/?$", "read_stock", "stock/read"),
    ]
    DEFAULT_PLAN = {"location": "store-1"}
    CONTROL = {**SandboxState.CONTROL, ("POST", "/_sandbox/unavailable"): "_c_unavailable"}

    def init_limits(self) -> None:
        self.seen: collections.OrderedDict[str, Response] = collections.OrderedDict()
        self.closed_until = 0.0
        self.closed_status = 503

    def close_for(self, seconds: float, *, status: int = 503) -> None:
        """Answer every API call ``status`` with Retry-After for ``seconds`` (Standard Webhooks' senders honour
        Retry-After on 429, 502 and 504; a 503's is HTTP's own "come back then")."""
        if status not in (502, 503, 504):
            raise BadRequest("status must be 502, 503 or 504")
        if not math.isfinite(seconds) or seconds < 0:
            raise BadRequest("seconds must be a finite number >= 0")
        with self.lock:
            self.closed_until = time.monotonic() + seconds
            self.closed_status = status

    def _c_unavailable(self, req: Request, body: dict) -> Response:
        try:
            seconds, status = float(body.get("seconds", 0)), int(body.get("status", 503))
        except (TypeError, ValueError) as exc:
            raise BadRequest(str(exc)) from exc
        self.close_for(seconds, status=status)
        return Response(200, {"seconds": seconds, "status": status})

    def new_order_id(self) -> str:
        return f"SO-{self.next_id('order', self.ORDER_ID_BASE)}"

    def new_line_id(self) -> str:
        return f"L{self.next_id('line', 1)}"

    def new_delivery_id(self) -> str:
        return f"msg_{uuid.uuid4().hex}"

    # -- platform hooks ------------------------------------------------------------------------------------

    def error(self, status: int, code: str, message: str) -> Response:
        return Response(status, {"error": code, "message": message})

    def authenticate(self, req: Request, params: dict) -> Response | None:
        secret = self.credentials.get("signing_secret")
        api_key = self.credentials.get("api_key")
        if req.method == "GET" and api_key and req.header("Authorization") == f"Bearer {api_key}":
            return None
        if not secret:
            if req.method == "GET" and api_key:
                return self.error(401, "unauthorized", "A bearer API key or a signed request is required.")
            return None
        headers = {name.lower(): value for name, value in req.headers.items()}
        try:
            standard_webhook(secret).verify(req.body.decode(), headers, json_parse=False)
        except (WebhookVerificationError, ValueError, UnicodeDecodeError) as exc:
            return self.error(401, "invalid_signature", f"Standard Webhooks verification failed: {exc}")
        return None

    def admit(self, req: Request, route: Route, now: float) -> Response | None:
        if now < self.closed_until:
            resp = self.error(self.closed_status, "unavailable", "Closed for maintenance.")
            resp.headers["Retry-After"] = str(math.ceil(self.closed_until - now))  # delta-seconds: whole
            return resp
        self.record_accepted(now)
        return None

    # -- stock ---------------------------------------------------------------------------------------------

    def _apply_one(self, row: Any) -> dict:
        if not isinstance(row, dict) or not row.get("sku"):
            return {"sku": None, "status": "invalid", "detail": "sku is required"}
        quantity = row.get("quantity")
        if isinstance(quantity, bool) or not isinstance(quantity, int):
            return {"sku": row["sku"], "status": "invalid", "detail": "quantity must be an integer"}
        found = self.items_for_sku(str(row["sku"]), row.get("location"))
        if not found:
            status = "unknown_location" if self.items_for_sku(str(row["sku"])) else "unknown_sku"
            return {"sku": row["sku"], "status": status}
        found[0].touch(quantity)
        return {"sku": row["sku"], "status": "ok", "quantity": quantity}

    def _apply_catalog(self, row: Any) -> dict:
        if not isinstance(row, dict) or not row.get("sku"):
            return {"sku": None, "status": "invalid", "detail": "sku is required"}
        found = self.items_for_sku(str(row["sku"]))
        if not found:
            return {"sku": row["sku"], "status": "unknown_sku"}
        for item in found:
            if "price" in row:
                item.price = money(row["price"])
            if "name" in row:
                item.name = str(row["name"])
            if "active" in row:
                item.active = bool(row["active"])
        return {"sku": row["sku"], "status": "ok"}

    def push_stock(self, req: Request) -> Response:
        msg_id = req.header("webhook-id")
        with self.lock:
            if msg_id and msg_id in self.seen:
                replay = self.seen[msg_id]
                return Response(replay.status, replay.body, {"Idempotent-Replayed": "true"})
        envelope = req.json()
        if not isinstance(envelope, dict) or not isinstance(envelope.get("data"), dict):
            return self.error(400, "invalid_body", "Expected a {type, timestamp, data} envelope.")
        kind, data = envelope.get("type"), envelope["data"]
        with self.lock:
            if kind == "stock.updated":
                results = [self._apply_one(data)]
            elif kind == "catalog.batch_updated":
                rows = data.get("items")
                if not isinstance(rows, list):
                    return self.error(400, "invalid_body", "data.items must be a list.")
                results = [self._apply_catalog(row) for row in rows]
            elif kind == "stock.batch_updated":
                rows = data.get("items")
                if not isinstance(rows, list):
                    return self.error(400, "invalid_body", "data.items must be a list.")
                results = [self._apply_one(row) for row in rows]
            else:
                return self.error(400, "unsupported_type", f"Unsupported event type {kind!r}.")
            resp = Response(200, {"accepted": sum(r["status"] == "ok" for r in results), "results": results})
            if msg_id:
                self.seen[msg_id] = resp
                while len(self.seen) > 50_000:
                    self.seen.popitem(last=False)
        return resp

    def read_stock(self, req: Request) -> Response:
        limit = page_bounds(req.arg("limit"), 100, 1000)
        if limit is None:
            return self.error(400, "invalid_limit", "limit must be within 1..1000")
        offset = 0
        if req.arg("cursor"):
            cursor = decode_cursor(req.arg("cursor"))
            if cursor is None:
                return self.error(400, "invalid_cursor", "Unknown cursor.")
            offset = int(cursor.get("o", 0))
        with self.lock:
            rows = sorted(self.items, key=lambda it: it.sku)
            page = [
                {"sku": it.sku, "quantity": it.quantity, "location": it.location_id, "updated_at": iso(it.updated_at)}
                for it in rows[offset : offset + limit]
            ]
            more = offset + limit < len(rows)
        return Response(200, {"items": page, "next_cursor": encode_cursor({"o": offset + limit}) if more else None})

    # -- catalog -------------------------------------------------------------------------------------------

    def assign_ids(self, item: Item, same_sku: list[Item]) -> None:
        if item.location_id is None:
            item.location_id = self.plan["location"]

    # -- webhooks ------------------------------------------------------------------------------------------

    def wrap_payload(self, topic: str, payload: Any, delivery_id: str) -> Any:
        return {"type": topic, "timestamp": iso(utcnow()).replace("+00:00", "Z"), "data": payload}

    def sign_webhook(self, topic: str, body: bytes, delivery_id: str, payload: Any) -> dict[str, str]:
        return standard_headers(self.webhook_secret, delivery_id, body) if self.webhook_secret else {"webhook-id": delivery_id}

    def order_created_events(self, order: Order) -> list[tuple[str, dict]]:
        lines = [{"line_id": ln.line_id, "sku": ln.sku, "quantity": ln.quantity, "price": ln.price} for ln in order.lines]
        data = {
            "order_id": order.order_id,
            "currency": order.currency,
            "total": order.total(),
            "created_at": iso(order.created_at),
            "lines": lines,
        }
        return [("order.created", data)]

    def order_cancelled_events(self, order: Order, restock: bool) -> list[tuple[str, dict]]:
        return [("order.cancelled", {"order_id": order.order_id, "restock": restock, "cancelled_at": iso(order.updated_at)})]

    def refund_events(self, order: Order, refund: dict) -> list[tuple[str, dict]]:
        skus = {ln.line_id: ln.sku for ln in order.lines}
        lines = [{"line_id": r["line_id"], "sku": skus[r["line_id"]], "quantity": r["quantity"]} for r in refund["lines"]]
        data = {
            "order_id": order.order_id,
            "refund_id": refund["refund_id"],
            "lines": lines,
            "restock": refund["restock"],
            "location": refund["location_id"],
        }
        return [("order.refunded", data)]

    def inventory_level_events(self, item: Item) -> list[tuple[str, dict]]:
        data = {"sku": item.sku, "location": item.location_id, "available": item.quantity, "as_of": iso(item.updated_at)}
        return [("inventory.level", data)]
