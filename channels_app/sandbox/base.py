"""What every sandbox channel shares: catalog state, faults, the control API, API dispatch and webhooks.

A platform kind subclasses :class:`SandboxState` and supplies its routes, its auth check, its error body
shape, its rate limiter and the payloads and signatures of its webhooks. Everything mutable lives on the
state object behind ``state.lock``; nothing sleeps while holding it.
"""

from __future__ import annotations

import base64
import collections
import itertools
import json
import random
import re
import socket
import sys
import threading
import time
import uuid
from collections.abc import Iterable
from dataclasses import dataclass, field
from datetime import UTC, datetime
from decimal import Decimal, InvalidOperation
from email.message import Message
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from typing import Any
from urllib.parse import parse_qs, urlsplit

from .webhooks import Delivery, WebhookSender

CLOSE = object()
"""Returned instead of a :class:`Response` to drop the connection without answering."""


def utcnow() -> datetime:
    return datetime.now(UTC)


def iso(moment: datetime) -> str:
    return moment.isoformat(timespec="seconds")


def money(value: Any) -> str:
    """Money as the platforms print it: a string with two decimals, never a float."""
    try:
        amount = Decimal(str(value))
    except InvalidOperation as exc:
        raise BadRequest(f"not an amount: {value!r}") from exc
    return str(amount.quantize(Decimal("0.01")))


class BadRequest(Exception):
    """Invalid control-API input; answered 400 with the message."""


@dataclass
class Request:
    method: str
    path: str
    query: dict[str, list[str]]
    headers: Message
    body: bytes
    raw_query: str = ""

    def arg(self, name: str, default: str | None = None) -> str | None:
        values = self.query.get(name)
        return values[0] if values else default

    def header(self, name: str) -> str | None:
        return self.headers.get(name)

    def json(self) -> Any:
        if not self.body:
            return None
        return json.loads(self.body)


@dataclass
class Response:
    status: int
    body: Any = None
    headers: dict[str, str] = field(default_factory=dict)

    def encode(self) -> bytes:
        if self.body is None:
            return b""
        if isinstance(self.body, bytes):
            return self.body
        return json.dumps(self.body, separators=(",", ":")).encode()


class ApiError(Exception):
    """Lets a platform handler stop early with a ready platform-shaped response."""

    def __init__(self, response: Response):
        super().__init__(response.status)
        self.response = response


@dataclass
class Item:
    sku: str
    quantity: int
    product_id: int | None = None
    variant_id: int | None = None
    inventory_item_id: int | None = None
    location_id: int | None = None
    price: str = "19.99"
    name: str | None = None
    manage_stock: bool | None = None
    stock_status: str | None = None
    active: bool = True
    updated_at: datetime = field(default_factory=utcnow)

    def public(self) -> dict:
        out: dict[str, Any] = {"sku": self.sku, "quantity": self.quantity}
        for key in ("product_id", "variant_id", "inventory_item_id", "location_id", "manage_stock", "stock_status"):
            value = getattr(self, key)
            if value is not None:
                out[key] = value
        out["price"] = self.price
        out["name"] = self.name
        out["active"] = self.active
        out["updated_at"] = iso(self.updated_at)
        return out

    def touch(self, quantity: int) -> None:
        self.quantity = quantity
        self.updated_at = utcnow()


@dataclass
class OrderLine:
    line_id: Any
    sku: str
    quantity: int
    price: str
    name: str
    product_id: int | None
    variant_id: int | None
    inventory_item_id: int | None
    location_id: int | None
    tracked: bool = True


@dataclass
class Order:
    order_id: Any
    number: int
    lines: list[OrderLine]
    currency: str
    created_at: datetime
    updated_at: datetime
    status: str = "open"
    refunds: list[dict] = field(default_factory=list)

    def total(self) -> str:
        return money(sum((Decimal(line.price) * line.quantity for line in self.lines), Decimal("0")))

    def refunded(self, line_id: Any) -> int:
        return sum(r_line["quantity"] for refund in self.refunds for r_line in refund["lines"] if r_line["line_id"] == line_id)


@dataclass
class Faults:
    latency_ms: float = 0
    error_rate: float = 0.0
    burst_429: int = 0
    retry_after: float = 2
    down_for: float = 0
    timeout_rate: float = 0.0
    timeout_s: float = 10.0
    reorder_window_ms: float = 0
    duplicate_rate: float = 0.0
    # The next N calls are handled (a write is applied) and the connection then dropped without an answer: the
    # answer lost on its way back, which a client cannot tell from a request that never arrived.
    lost_answers: int = 0
    # The status of the errors error_rate draws: 0, any of 500, 502, 503; or 409, a conflict with the resource's
    # state (another writer holds it), which the platform answers again a moment later otherwise.
    error_status: int = 0

    def public(self, down_until: float) -> dict:
        out = {k: getattr(self, k) for k in self.__dataclass_fields__}
        out["down_for"] = round(max(0.0, down_until - time.monotonic()), 3)
        return out


FAULT_FIELDS = set(Faults.__dataclass_fields__)


@dataclass
class Route:
    method: str
    pattern: re.Pattern
    handler: str
    endpoint: str


def _int(value: Any, name: str, *, minimum: int | None = None) -> int:
    if isinstance(value, int) and not isinstance(value, bool):
        number = value
    elif isinstance(value, str) and re.fullmatch(r"\s*-?\d+\s*", value):
        number = int(value)
    else:
        raise BadRequest(f"{name} must be an integer")
    if minimum is not None and number < minimum:
        raise BadRequest(f"{name} must be >= {minimum}")
    return number


class SandboxState:
    """State and behaviour of one imitation platform account."""

    kind = "base"
    #: (method, path regex, handler method name, endpoint name used in request counts)
    ROUTES: list[tuple[str, str, str, str]] = []
    DEFAULT_PLAN: dict[str, Any] = {}
    PLANS: dict[str, dict[str, Any]] = {}
    DEFAULT_LOCATION_ID: int | None = None
    ORDER_ID_BASE = 1000
    LINE_ID_BASE = 1
    ORDER_NUMBER_BASE = 1000
    #: whether inventory is keyed per (item, location) on this platform
    MULTI_LOCATION = False

    def __init__(
        self,
        *,
        hub_url: str | None = None,
        channel_slug: str | None = None,
        webhook_secret: str | None = None,
        credentials: dict | None = None,
        plan: str | dict | None = None,
    ):
        self.hub_url = hub_url.rstrip("/") if hub_url else None
        self.channel_slug = channel_slug or f"sandbox-{self.kind}"
        self.webhook_secret = webhook_secret
        self.credentials = dict(credentials or {})
        self.plan = self._resolve_plan(plan)
        self.currency = self.plan.get("currency", "USD")
        self.base_url = ""
        self.lock = threading.Lock()
        self.rng = random.Random(self.plan.get("seed"))
        self.sender = WebhookSender(
            workers=int(self.plan.get("webhook_workers", 1)),
            queue_size=int(self.plan.get("webhook_queue", 64)),
            on_attempt=self._on_attempt,
            rng=random.Random(self.plan.get("seed")),
            retries=int(self.plan.get("webhook_retries", 0)),
            retry_backoff_s=float(self.plan.get("webhook_retry_backoff_s", 1.0)),
            is_success=self.delivery_succeeded,
        )
        self._routes = [Route(m, re.compile(p), h, e) for m, p, h, e in self.ROUTES]
        self._init_runtime()

    # -- setup ---------------------------------------------------------------------------------------------

    def _resolve_plan(self, plan: str | dict | None) -> dict:
        resolved = dict(self.DEFAULT_PLAN)
        if isinstance(plan, str):
            plan = {"name": plan}
        plan = dict(plan or {})
        name = plan.get("name")
        if name:
            if name not in self.PLANS:
                raise ValueError(f"unknown {self.kind} plan {name!r}; known: {sorted(self.PLANS)}")
            resolved.update(self.PLANS[name])
        resolved.update(plan)
        return resolved

    def _init_runtime(self) -> None:
        self.items: list[Item] = []
        self.orders: dict[str, Order] = {}
        self.deliveries: dict[str, dict] = {}
        self.request_counts: collections.Counter[str] = collections.Counter()
        self.rate_limited = 0
        self.injected = {"5xx": 0, "409": 0, "429": 0, "down": 0, "timeout": 0, "lost_answer": 0}
        self.webhooks_sent = 0
        self.in_flight = 0
        self.max_in_flight = 0
        self.accepted: collections.deque[float] = collections.deque(maxlen=200_000)
        self.faults = Faults()
        self.down_until = 0.0
        self.started = time.monotonic()
        self._ids: dict[str, itertools.count] = {}
        self.sender.reorder_window_s = 0.0
        self.sender.duplicate_rate = 0.0
        self.init_limits()

    def init_limits(self) -> None:
        """Create the platform's rate limiters from ``self.plan`` (kinds without a limit do nothing)."""

    def next_id(self, sequence: str, base: int) -> int:
        counter = self._ids.setdefault(sequence, itertools.count(base))
        return next(counter)

    def close(self) -> None:
        self.sender.close()

    # -- catalog -------------------------------------------------------------------------------------------

    def assign_ids(self, item: Item, same_sku: list[Item]) -> None:
        """Fill the platform ids the caller left out; rows of one SKU at several locations share them."""
        if item.location_id is None:
            item.location_id = self.DEFAULT_LOCATION_ID

    def set_catalog(self, rows: Iterable[dict]) -> list[dict]:
        items: list[Item] = []
        for i, row in enumerate(rows):
            if not isinstance(row, dict) or not row.get("sku"):
                raise BadRequest(f"items[{i}] needs a sku")
            item = Item(
                sku=str(row["sku"]),
                quantity=_int(row.get("quantity", 0), f"items[{i}].quantity"),
                product_id=row.get("product_id"),
                variant_id=row.get("variant_id"),
                inventory_item_id=row.get("inventory_item_id"),
                location_id=row.get("location_id"),
                price=money(row.get("price", "19.99")),
                name=row.get("name") or str(row["sku"]),
                manage_stock=row.get("manage_stock"),
                stock_status=row.get("stock_status"),
            )
            items.append(item)
        with self.lock:
            self.items = []
            for item in items:
                self.assign_ids(item, [other for other in self.items if other.sku == item.sku])
                if any(self.same_slot(item, other) for other in self.items):
                    raise BadRequest(f"duplicate catalog row for sku {item.sku} at location {item.location_id}")
                self.items.append(item)
            return [item.public() for item in self.items]

    def same_slot(self, a: Item, b: Item) -> bool:
        return a.sku == b.sku and a.location_id == b.location_id

    def items_for_sku(self, sku: str, location_id: Any = None) -> list[Item]:
        return [
            item for item in self.items if item.sku == sku and (location_id is None or str(item.location_id) == str(location_id))
        ]

    def patch_inventory(self, rows: Iterable[dict]) -> list[dict]:
        """Drift injection: change remote stock as if edited by hand on the channel, without any webhook."""
        with self.lock:
            # Resolve every row before writing any, so a bad row leaves the catalog as it was.
            planned = [(self._one_item(row, i), _int(row.get("quantity"), f"items[{i}].quantity")) for i, row in enumerate(rows)]
            for item, quantity in planned:
                item.touch(quantity)
                self.after_stock_write(item)
            return [item.public() for item, _ in planned]

    def _one_item(self, row: dict, i: int = 0) -> Item:
        if not isinstance(row, dict) or not row.get("sku"):
            raise BadRequest(f"items[{i}] needs a sku")
        found = self.items_for_sku(str(row["sku"]), row.get("location_id"))
        if not found:
            raise BadRequest(
                f"unknown sku {row['sku']!r}" + (f" at location {row['location_id']}" if row.get("location_id") else "")
            )
        return found[0]

    def after_stock_write(self, item: Item) -> None:
        """Hook for platforms that derive fields from the quantity (WooCommerce stock_status)."""

    def quantity(self, sku: str, location_id: Any = None) -> int:
        with self.lock:
            return sum(item.quantity for item in self.items_for_sku(sku, location_id))

    # -- faults --------------------------------------------------------------------------------------------

    def set_faults(self, spec: dict | None = None, **kwargs) -> dict:
        spec = dict(spec or {}, **kwargs)
        unknown = set(spec) - FAULT_FIELDS
        if unknown:
            raise BadRequest(f"unknown fault(s): {sorted(unknown)}")
        try:
            counts = ("burst_429", "lost_answers", "error_status")
            faults = Faults(**{k: int(v) if k in counts else float(v) for k, v in spec.items()})
        except (TypeError, ValueError) as exc:
            raise BadRequest(str(exc)) from exc
        for rate in ("error_rate", "timeout_rate", "duplicate_rate"):
            if not 0 <= getattr(faults, rate) <= 1:
                raise BadRequest(f"{rate} must be within 0..1")
        if faults.error_status not in (0, 409, 500, 502, 503):
            raise BadRequest("error_status must be 409, 500, 502 or 503 (0: any of the 5xx)")
        with self.lock:
            self.faults = faults
            self.down_until = time.monotonic() + faults.down_for if faults.down_for > 0 else 0.0
            self.sender.reorder_window_s = faults.reorder_window_ms / 1000.0
            self.sender.duplicate_rate = faults.duplicate_rate
            return faults.public(self.down_until)

    def _draw_faults(self) -> dict:
        """Decide under the lock what happens to this call; the caller sleeps after releasing it."""
        f = self.faults
        now = time.monotonic()
        plan: dict[str, Any] = {"latency": f.latency_ms / 1000.0}
        if now < self.down_until:
            self.injected["down"] += 1
            plan["down"] = True
            return plan
        if f.timeout_rate and self.rng.random() < f.timeout_rate:
            self.injected["timeout"] += 1
            plan["latency"] += f.timeout_s
        if f.burst_429 > 0:
            f.burst_429 -= 1
            self.injected["429"] += 1
            plan["429"] = f.retry_after
        elif f.error_rate and self.rng.random() < f.error_rate:
            if f.error_status == 409:
                self.injected["409"] += 1
                plan["409"] = True
            else:
                self.injected["5xx"] += 1
                plan["5xx"] = f.error_status or self.rng.choice((500, 502, 503))
        if f.lost_answers > 0:
            f.lost_answers -= 1
            self.injected["lost_answer"] += 1
            plan["lost_answer"] = True
        return plan

    # -- platform hooks ------------------------------------------------------------------------------------

    def error(self, status: int, code: str, message: str) -> Response:
        return Response(status, {"error": code, "message": message})

    def authenticate(self, req: Request, params: dict) -> Response | None:
        return None

    def admit(self, req: Request, route: Route, now: float) -> Response | None:
        """Apply the platform's real rate limit (called under the lock). None means admitted."""
        return None

    def finalize(self, req: Request, route: Route | None, resp: Response) -> None:
        """Add the headers the platform puts on every API reply (called under the lock)."""

    def too_many(self, retry_after: float, *, injected: bool) -> Response:
        resp = self.error(429, "too_many_requests", "Too many requests")
        resp.headers["Retry-After"] = _seconds(retry_after)
        return resp

    def server_error(self, status: int) -> Response:
        messages = {500: "Internal Server Error", 502: "Bad Gateway", 503: "Service Unavailable"}
        return self.error(status, "internal_server_error" if status == 500 else "service_unavailable", messages[status])

    def record_accepted(self, now: float) -> None:
        self.accepted.append(now)

    def record_refused(self) -> None:
        self.rate_limited += 1

    # -- API dispatch --------------------------------------------------------------------------------------

    def dispatch(self, req: Request) -> Response | object:
        if req.path.startswith("/_sandbox/"):
            return self.control(req)
        return self.api(req)

    def match(self, req: Request) -> tuple[Route | None, dict]:
        for route in self._routes:
            if route.method != req.method:
                continue
            found = route.pattern.match(req.path)
            if found:
                return route, found.groupdict()
        return None, {}

    def api(self, req: Request) -> Response | object:
        route, params = self.match(req)
        with self.lock:
            self.request_counts[route.endpoint if route else "unmatched"] += 1
            self.in_flight += 1
            self.max_in_flight = max(self.max_in_flight, self.in_flight)
            plan = self._draw_faults()
        try:
            if plan.get("down"):
                return CLOSE
            if plan["latency"] > 0:
                time.sleep(plan["latency"])
            resp = self._api_reply(req, route, params, plan)
            with self.lock:
                self.finalize(req, route, resp)
            return CLOSE if plan.get("lost_answer") else resp
        finally:
            with self.lock:
                self.in_flight -= 1

    def _api_reply(self, req: Request, route: Route | None, params: dict, plan: dict) -> Response:
        if "429" in plan:
            return self.too_many(plan["429"], injected=True)
        if "5xx" in plan:
            return self.server_error(plan["5xx"])
        if "409" in plan:
            return self.error(409, "conflict", "The request conflicts with the current state of the resource.")
        if route is None:
            return self.error(404, "not_found", f"No route for {req.method} {req.path}")
        refused = self.authenticate(req, params)
        if refused is not None:
            return refused
        with self.lock:
            refused = self.admit(req, route, time.monotonic())
        if refused is not None:
            return refused
        try:
            return getattr(self, route.handler)(req, **params)
        except ApiError as exc:
            return exc.response
        except (json.JSONDecodeError, UnicodeDecodeError):
            return self.error(400, "invalid_json", "The request body is not valid JSON.")

    # -- control API ---------------------------------------------------------------------------------------

    CONTROL = {
        ("PUT", "/_sandbox/catalog"): "_c_catalog",
        ("GET", "/_sandbox/state"): "_c_state",
        ("PATCH", "/_sandbox/inventory"): "_c_inventory",
        ("POST", "/_sandbox/reset"): "_c_reset",
        ("POST", "/_sandbox/faults"): "_c_faults",
        ("GET", "/_sandbox/faults"): "_c_get_faults",
        ("POST", "/_sandbox/orders"): "_c_orders",
        ("POST", "/_sandbox/cancel"): "_c_cancel",
        ("POST", "/_sandbox/refund"): "_c_refund",
        ("POST", "/_sandbox/inventory_level"): "_c_inventory_level",
        ("POST", "/_sandbox/webhook"): "_c_webhook",
        ("POST", "/_sandbox/flush"): "_c_flush",
        ("GET", "/_sandbox/deliveries"): "_c_deliveries",
        ("GET", "/_sandbox/calls"): "_c_calls",
    }

    def control(self, req: Request) -> Response:
        name = self.CONTROL.get((req.method, req.path.rstrip("/")))
        if name is None:
            return Response(404, {"error": "not_found", "detail": f"no control endpoint {req.method} {req.path}"})
        try:
            body = req.json() if req.body else {}
            if body is None:
                body = {}
            if not isinstance(body, dict):
                raise BadRequest("the body must be a JSON object")
            return getattr(self, name)(req, body)
        except (json.JSONDecodeError, UnicodeDecodeError):
            return Response(400, {"error": "bad_request", "detail": "invalid JSON"})
        except BadRequest as exc:
            return Response(400, {"error": "bad_request", "detail": str(exc)})

    def _c_catalog(self, req: Request, body: dict) -> Response:
        items = body.get("items")
        if not isinstance(items, list):
            raise BadRequest("items must be a list")
        return Response(200, {"inventory": self.set_catalog(items)})

    def _c_state(self, req: Request, body: dict) -> Response:
        return Response(200, self.snapshot(calls=req.arg("calls") in ("1", "true")))

    def _c_inventory(self, req: Request, body: dict) -> Response:
        items = body.get("items")
        if not isinstance(items, list):
            raise BadRequest("items must be a list")
        return Response(200, {"inventory": self.patch_inventory(items)})

    def _c_reset(self, req: Request, body: dict) -> Response:
        self.reset()
        return Response(200, {"reset": True})

    def _c_faults(self, req: Request, body: dict) -> Response:
        return Response(200, {"faults": self.set_faults(body)})

    def _c_get_faults(self, req: Request, body: dict) -> Response:
        with self.lock:
            return Response(200, {"faults": self.faults.public(self.down_until)})

    def _c_orders(self, req: Request, body: dict) -> Response:
        status, payload = self.place_order(
            body.get("lines"),
            order_id=body.get("order_id"),
            duplicates=_int(body.get("duplicates", 0), "duplicates", minimum=0),
            delay_ms=_int(body.get("delay_ms", 0), "delay_ms", minimum=0),
            wait=body.get("wait"),
        )
        return Response(status, payload)

    def _c_cancel(self, req: Request, body: dict) -> Response:
        status, payload = self.cancel_order(
            body.get("order_id"),
            restock=bool(body.get("restock", True)),
            duplicates=_int(body.get("duplicates", 0), "duplicates", minimum=0),
            wait=body.get("wait"),
        )
        return Response(status, payload)

    def _c_refund(self, req: Request, body: dict) -> Response:
        status, payload = self.refund(
            body.get("order_id"),
            body.get("lines"),
            restock=bool(body.get("restock", True)),
            location_id=body.get("location_id"),
            duplicates=_int(body.get("duplicates", 0), "duplicates", minimum=0),
            wait=body.get("wait"),
        )
        return Response(status, payload)

    def _c_inventory_level(self, req: Request, body: dict) -> Response:
        status, payload = self.set_inventory_level(
            body.get("sku"),
            body.get("quantity"),
            location_id=body.get("location_id"),
            duplicates=_int(body.get("duplicates", 0), "duplicates", minimum=0),
            wait=body.get("wait"),
        )
        return Response(status, payload)

    def _c_webhook(self, req: Request, body: dict) -> Response:
        topic = body.get("topic")
        if not topic or "payload" not in body:
            raise BadRequest("topic and payload are required")
        delivery = self.deliver(
            str(topic),
            body["payload"],
            duplicates=_int(body.get("duplicates", 0), "duplicates", minimum=0),
            delay_ms=_int(body.get("delay_ms", 0), "delay_ms", minimum=0),
            wrap=bool(body.get("wrap", False)),
        )
        return Response(201, self._delivered([delivery], body.get("wait"), delay_ms=body.get("delay_ms", 0)))

    def _c_flush(self, req: Request, body: dict) -> Response:
        timeout = float(body.get("timeout", 10))
        done = self.flush(timeout)
        return Response(200 if done else 504, {"flushed": done, "pending": self.sender.pending()})

    def _c_deliveries(self, req: Request, body: dict) -> Response:
        with self.lock:
            return Response(200, {"deliveries": list(self.deliveries.values())})

    def _c_calls(self, req: Request, body: dict) -> Response:
        with self.lock:
            return Response(200, {"accepted": [round(t - self.started, 4) for t in self.accepted]})

    # -- state ---------------------------------------------------------------------------------------------

    def snapshot(self, *, calls: bool = False) -> dict:
        with self.lock:
            out = {
                "kind": self.kind,
                "inventory": [item.public() for item in self.items],
                "requests": dict(self.request_counts),
                "rate_limited": self.rate_limited,
                "injected": dict(self.injected),
                "orders": len(self.orders),
                "webhooks_sent": self.webhooks_sent,
                "webhooks_pending": self.sender.pending(),
                "max_in_flight": self.max_in_flight,
                "accepted": len(self.accepted),
                "faults": self.faults.public(self.down_until),
            }
            if calls:
                out["accepted_at"] = [round(t - self.started, 4) for t in self.accepted]
            return out

    def reset(self) -> None:
        self.sender.drop_pending()
        with self.lock:
            self._init_runtime()

    def flush(self, timeout: float = 10.0) -> bool:
        return self.sender.flush(timeout)

    def accepted_times(self) -> list[float]:
        with self.lock:
            return list(self.accepted)

    def max_accepted_in_window(self, window_s: float) -> int:
        """Most calls the real limiter let through within any ``window_s``-long stretch."""
        times = self.accepted_times()
        best = start = 0
        for end, moment in enumerate(times):
            while moment - times[start] >= window_s:
                start += 1
            best = max(best, end - start + 1)
        return best

    # -- selling -------------------------------------------------------------------------------------------

    def new_order_id(self) -> Any:
        return self.next_id("order", self.ORDER_ID_BASE)

    def new_line_id(self) -> Any:
        return self.next_id("line", self.LINE_ID_BASE)

    def tracked(self, item: Item) -> bool:
        return True

    def place_order(self, lines: Any, *, order_id: Any = None, duplicates: int = 0, delay_ms: int = 0, wait: Any = None):
        if not isinstance(lines, list) or not lines:
            raise BadRequest("lines must be a non-empty list of {sku, quantity}")
        wanted: list[tuple[str, int, str | None]] = []
        for i, line in enumerate(lines):
            if not isinstance(line, dict) or not line.get("sku"):
                raise BadRequest(f"lines[{i}] needs a sku")
            price = money(line["price"]) if line.get("price") is not None else None
            wanted.append((str(line["sku"]), _int(line.get("quantity"), f"lines[{i}].quantity", minimum=1), price))
        with self.lock:
            if order_id is not None and self._order_key(order_id) in self.orders:
                raise BadRequest(f"order {order_id} already exists")
            need: collections.Counter[str] = collections.Counter()
            for sku, qty, _ in wanted:
                need[sku] += qty
            for sku, qty in need.items():
                items = self.items_for_sku(sku)
                if not items:
                    return 409, {"error": "insufficient_stock", "sku": sku, "available": 0, "detail": "unknown sku"}
                if all(self.tracked(item) for item in items):
                    available = sum(max(0, item.quantity) for item in items)
                    if available < qty:
                        return 409, {"error": "insufficient_stock", "sku": sku, "available": available}
            order_lines = []
            for sku, qty, price in wanted:
                items = self.items_for_sku(sku)
                tracked = all(self.tracked(item) for item in items)
                first = None
                remaining = qty if tracked else 0
                for item in items:
                    take = min(remaining, max(0, item.quantity))
                    if take:
                        first = first or item
                        item.touch(item.quantity - take)
                        self.after_stock_write(item)
                        remaining -= take
                first = first or items[0]
                order_lines.append(
                    OrderLine(
                        line_id=self.new_line_id(),
                        sku=sku,
                        quantity=qty,
                        price=price or first.price,
                        name=first.name or sku,
                        product_id=first.product_id,
                        variant_id=first.variant_id,
                        inventory_item_id=first.inventory_item_id,
                        location_id=first.location_id,
                        tracked=tracked,
                    )
                )
            now = utcnow()
            order = Order(
                order_id=order_id if order_id is not None else self.new_order_id(),
                number=self.next_id("order_number", self.ORDER_NUMBER_BASE + 1),
                lines=order_lines,
                currency=self.currency,
                created_at=now,
                updated_at=now,
            )
            self.orders[self._order_key(order.order_id)] = order
            events = self.order_created_events(order)
        sent = [self.deliver(topic, payload, duplicates=duplicates, delay_ms=delay_ms) for topic, payload in events]
        body = {
            "order_id": order.order_id,
            "lines": [{"line_id": ln.line_id, "sku": ln.sku, "quantity": ln.quantity} for ln in order_lines],
        }
        body.update(self._delivered(sent, wait, delay_ms=delay_ms))
        return 201, body

    @staticmethod
    def _order_key(order_id: Any) -> str:
        return str(order_id)

    def _find_order(self, order_id: Any) -> Order:
        if order_id is None:
            raise BadRequest("order_id is required")
        order = self.orders.get(self._order_key(order_id))
        if order is None:
            raise BadRequest(f"unknown order {order_id}")
        return order

    def _restock(self, sku: str, location_id: Any, quantity: int) -> None:
        items = self.items_for_sku(sku, location_id) or self.items_for_sku(sku)
        if items and self.tracked(items[0]):
            items[0].touch(items[0].quantity + quantity)
            self.after_stock_write(items[0])

    def cancel_order(self, order_id: Any, *, restock: bool = True, duplicates: int = 0, wait: Any = None):
        with self.lock:
            order = self._find_order(order_id)
            if order.status == "cancelled":
                return 409, {"error": "already_cancelled", "order_id": order.order_id}
            order.status = "cancelled"
            order.updated_at = utcnow()
            if restock:
                for line in order.lines:
                    if line.tracked:
                        self._restock(line.sku, line.location_id, line.quantity - order.refunded(line.line_id))
            events = self.order_cancelled_events(order, restock)
        sent = [self.deliver(topic, payload, duplicates=duplicates) for topic, payload in events]
        return 200, {"order_id": order.order_id, **self._delivered(sent, wait)}

    def refund(self, order_id: Any, lines: Any, *, restock: bool = True, location_id: Any = None, duplicates: int = 0, wait=None):
        if not isinstance(lines, list) or not lines:
            raise BadRequest("lines must be a non-empty list of {line_id, quantity}")
        with self.lock:
            order = self._find_order(order_id)
            by_id = {str(line.line_id): line for line in order.lines}
            refund_lines = []
            for i, row in enumerate(lines):
                line = by_id.get(str(row.get("line_id"))) if isinstance(row, dict) else None
                if line is None:
                    raise BadRequest(f"lines[{i}].line_id is not a line of order {order.order_id}")
                qty = _int(row.get("quantity", line.quantity), f"lines[{i}].quantity", minimum=1)
                if qty > line.quantity - order.refunded(line.line_id):
                    raise BadRequest(f"lines[{i}] refunds more than was sold and not yet refunded")
                refund_lines.append({"line_id": line.line_id, "quantity": qty, "line": line})
            refund = {
                "refund_id": self.next_id("refund", self.ORDER_ID_BASE * 10 + 1),
                "lines": [{"line_id": r["line_id"], "quantity": r["quantity"]} for r in refund_lines],
                "restock": restock,
                "location_id": location_id,
                "created_at": utcnow(),
            }
            if restock:
                for r in refund_lines:
                    if r["line"].tracked:
                        self._restock(r["line"].sku, location_id or r["line"].location_id, r["quantity"])
            order.refunds.append(refund)
            order.updated_at = utcnow()
            events = self.refund_events(order, refund)
        sent = [self.deliver(topic, payload, duplicates=duplicates) for topic, payload in events]
        return 201, {"order_id": order.order_id, "refund_id": refund["refund_id"], **self._delivered(sent, wait)}

    def set_inventory_level(self, sku: Any, quantity: Any, *, location_id: Any = None, duplicates: int = 0, wait=None):
        if not sku:
            raise BadRequest("sku is required")
        qty = _int(quantity, "quantity")
        with self.lock:
            item = self._one_item({"sku": sku, "location_id": location_id})
            item.touch(qty)
            self.after_stock_write(item)
            events = self.inventory_level_events(item)
            public = item.public()
        sent = [self.deliver(topic, payload, duplicates=duplicates) for topic, payload in events]
        return 200, {"inventory": public, **self._delivered(sent, wait)}

    def order_created_events(self, order: Order) -> list[tuple[str, dict]]:
        return []

    def order_cancelled_events(self, order: Order, restock: bool) -> list[tuple[str, dict]]:
        return []

    def refund_events(self, order: Order, refund: dict) -> list[tuple[str, dict]]:
        return []

    def inventory_level_events(self, item: Item) -> list[tuple[str, dict]]:
        return []

    # -- webhooks ------------------------------------------------------------------------------------------

    @property
    def webhook_url(self) -> str | None:
        return f"{self.hub_url}/webhooks/{self.channel_slug}/" if self.hub_url else None

    def new_delivery_id(self) -> str:
        return str(uuid.uuid4())

    def delivery_succeeded(self, status: int) -> bool:
        return 200 <= status < 300

    def sign_webhook(self, topic: str, body: bytes, delivery_id: str, payload: Any) -> dict[str, str]:
        return {}

    def wrap_payload(self, topic: str, payload: Any, delivery_id: str) -> Any:
        """Put a resource into the platform's delivery envelope (BigCommerce, Amazon, Standard Webhooks)."""
        return payload

    def deliver(self, topic: str, payload: Any, *, duplicates: int = 0, delay_ms: int = 0, wrap: bool = True) -> Delivery:
        delivery_id = self.new_delivery_id()
        if wrap:
            payload = self.wrap_payload(topic, payload, delivery_id)
        body = json.dumps(payload, separators=(",", ":")).encode()
        headers = {"Content-Type": "application/json", "User-Agent": f"Tally-Sandbox/{self.kind}"}
        headers.update(self.sign_webhook(topic, body, delivery_id, payload))
        delivery = Delivery(delivery_id, topic, self.webhook_url, body, headers, copies=1 + duplicates)
        with self.lock:
            self.deliveries[delivery_id] = {
                "delivery_id": delivery_id,
                "topic": topic,
                "copies": delivery.copies,
                "attempts": 0,
                "statuses": [],
                "errors": [],
            }
        self.sender.submit(delivery, delay_ms=delay_ms)
        return delivery

    def _on_attempt(self, delivery: Delivery, status: int | None, error: str | None) -> None:
        with self.lock:
            record = self.deliveries.get(delivery.delivery_id)
            if delivery.url:
                self.webhooks_sent += 1
            if record is not None:
                record["attempts"] += 1
                record["copies"] = delivery.copies
                if status is not None:
                    record["statuses"].append(status)
                if error:
                    record["errors"].append(error)

    def _delivered(self, sent: list[Delivery], wait: Any, *, delay_ms: Any = 0) -> dict:
        """Wait for the hub's answer to the first delivery unless that would mean waiting on purpose."""
        out: dict[str, Any] = {"delivery_ids": [d.delivery_id for d in sent], "delivered": None}
        if not sent:
            return out
        if wait is None:
            wait = not delay_ms and not self.sender.reorder_window_s and self.webhook_url is not None
        if wait:
            try:
                out["delivered"] = sent[0].future.result(timeout=15)
            except TimeoutError:
                out["delivered"] = None
        return out


def encode_cursor(data: dict) -> str:
    return base64.urlsafe_b64encode(json.dumps(data, separators=(",", ":")).encode()).decode().rstrip("=")


def decode_cursor(token: str) -> dict | None:
    try:
        data = json.loads(base64.urlsafe_b64decode(token + "=" * (-len(token) % 4)))
    except (ValueError, UnicodeDecodeError):
        return None
    return data if isinstance(data, dict) else None


def page_bounds(raw: str | None, default: int, maximum: int) -> int | None:
    """A page size from a query string, or None when it is not a number within 1..maximum."""
    if raw is None or raw == "":
        return default
    if not raw.isdigit() or not 1 <= int(raw) <= maximum:
        return None
    return int(raw)


def _seconds(value: float) -> str:
    return str(int(value)) if float(value).is_integer() else f"{value:.1f}"


# -- HTTP plumbing -----------------------------------------------------------------------------------------


class SandboxHandler(BaseHTTPRequestHandler):
    protocol_version = "HTTP/1.1"
    server_version = "TallySandbox/1.0"
    # Idle keep-alive connections otherwise hold a thread forever.
    timeout = 60

    def setup(self) -> None:
        super().setup()
        # Headers and body leave in separate writes; without this, Nagle plus delayed ACK adds ~40 ms a reply.
        self.connection.setsockopt(socket.IPPROTO_TCP, socket.TCP_NODELAY, 1)
        self.server.track(self.connection, True)  # type: ignore[attr-defined]

    def finish(self) -> None:
        try:
            super().finish()
        finally:
            self.server.track(self.connection, False)  # type: ignore[attr-defined]

    def log_message(self, format: str, *args: Any) -> None:  # noqa: A002 - stdlib signature
        if getattr(self.server, "verbose", False):
            super().log_message(format, *args)

    def _serve(self) -> None:
        state: SandboxState = self.server.state  # type: ignore[attr-defined]
        length = int(self.headers.get("Content-Length") or 0)
        body = self.rfile.read(length) if length else b""
        split = urlsplit(self.path)
        req = Request(self.command, split.path, parse_qs(split.query, keep_blank_values=True), self.headers, body, split.query)
        try:
            resp = state.dispatch(req)
        except Exception as exc:  # a sandbox bug must still answer, or the client hangs on keep-alive
            resp = Response(500, {"error": "sandbox_bug", "detail": f"{type(exc).__name__}: {exc}"})
        if resp is CLOSE:
            # A connection-level failure as a platform outage looks: no status line at all.
            self.close_connection = True
            try:
                self.connection.shutdown(socket.SHUT_RDWR)
            except OSError:
                pass
            return
        payload = resp.encode()
        self.send_response(resp.status)
        headers = {"Content-Type": "application/json; charset=utf-8", **resp.headers}
        for name, value in headers.items():
            self.send_header(name, value)
        self.send_header("Content-Length", str(len(payload)))
        self.end_headers()
        if self.command != "HEAD":
            self.wfile.write(payload)

    do_GET = do_POST = do_PUT = do_PATCH = do_DELETE = do_HEAD = _serve


class SandboxHTTPServer(ThreadingHTTPServer):
    daemon_threads = True
    allow_reuse_address = True
    request_queue_size = 256

    def __init__(self, address: tuple[str, int], state: SandboxState, verbose: bool = False):
        self.state = state
        self.verbose = verbose
        self._connections: set[socket.socket] = set()
        self._connections_lock = threading.Lock()
        super().__init__(address, SandboxHandler)

    def handle_error(self, request, client_address) -> None:
        # A client that hung up mid-response (a pusher killed, a timeout) is normal traffic for a platform.
        if isinstance(sys.exc_info()[1], (BrokenPipeError, ConnectionResetError)):
            return
        super().handle_error(request, client_address)

    def track(self, connection: socket.socket, alive: bool) -> None:
        with self._connections_lock:
            if alive:
                self._connections.add(connection)
            else:
                self._connections.discard(connection)

    def close_connections(self) -> None:
        """Cut idle keep-alive connections too, so a stopped sandbox really stops answering."""
        with self._connections_lock:
            connections = list(self._connections)
        for connection in connections:
            try:
                connection.shutdown(socket.SHUT_RDWR)
            except OSError:
                pass
