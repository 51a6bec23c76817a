"""Shopify Admin API imitation: REST inventory levels, GraphQL inventory mutations, webhooks.

Rate limits (per app and store, as on Shopify): REST is a leaky bucket of 40 calls draining 2/s; GraphQL a
cost bucket of 1,000 points restored at 100 points/s (the figure WIRE_FORMATS.md and shopify.dev give for
the standard plan today; older posts say 50/s). A throttled GraphQL call is answered 200 with a
``THROTTLED`` error, as Shopify does. Inventory mutations cost 10 points, level reads 2 + ``first``.
"""

from __future__ import annotations

import math
import re
import time
import uuid
from decimal import Decimal
from typing import Any

from .base import (
    ApiError,
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
from .limits import CostBucket, LeakyBucket
from .signing import hmac_sha256_b64

VERSION = r"(?P<version>\d{4}-\d{2}|unstable)"
INVALID_TOKEN = "[API] Invalid API key or access token (unrecognized login or wrong password)"
GID = re.compile(r"^gid://shopify/(?P<type>\w+)/(?P<id>\d+)(?:\?.*)?$")
IDEMPOTENT = re.compile(r"@idempotent\(\s*key:\s*(?:\"(?P<literal>[^\"]*)\"|\$(?P<var>\w+))\s*\)")
REASONS = {
    "correction",
    "cycle_count_available",
    "damaged",
    "movement_canceled",
    "movement_created",
    "movement_received",
    "movement_updated",
    "other",
    "promotion",
    "quality_control",
    "received",
    "reservation_created",
    "reservation_deleted",
    "reservation_updated",
    "restock",
    "safety_stock",
    "shrinkage",
}
MUTATION_COST = 10


def gid(kind: str, number: Any) -> str:
    return f"gid://shopify/{kind}/{number}"


def parse_gid(value: Any, kind: str) -> int | None:
    if isinstance(value, int) and not isinstance(value, bool):
        return value
    found = GID.match(value) if isinstance(value, str) else None
    if not found or found["type"] != kind:
        return None
    return int(found["id"])


def _as_int(value: Any) -> int | None:
    if isinstance(value, bool):
        return None
    if isinstance(value, int):
        return value
    if isinstance(value, str) and re.fullmatch(r"-?\d+", value.strip()):
        return int(value)
    return None


class ShopifyState(SandboxState):
    kind = "shopify"
    MULTI_LOCATION = True
    DEFAULT_LOCATION_ID = 61_000_000_001
    ORDER_ID_BASE = 5_500_000_000_001
    LINE_ID_BASE = 13_000_000_000_001
    ORDER_NUMBER_BASE = 1000
    ROUTES = [
        ("POST", rf"^/admin/api/{VERSION}/inventory_levels/set\.json$", "rest_set", "inventory_levels/set"),
        ("POST", rf"^/admin/api/{VERSION}/inventory_levels/adjust\.json$", "rest_adjust", "inventory_levels/adjust"),
        ("GET", rf"^/admin/api/{VERSION}/inventory_levels\.json$", "rest_levels", "inventory_levels"),
        ("POST", rf"^/admin/api/{VERSION}/graphql\.json$", "graphql", "graphql"),
        ("PUT", rf"^/admin/api/{VERSION}/variants/(?P<variant_id>\d+)\.json$", "rest_variant", "variants/update"),
        ("PUT", rf"^/admin/api/{VERSION}/products/(?P<product_id>\d+)\.json$", "rest_product", "products/update"),
    ]
    DEFAULT_PLAN = {
        "rest_bucket": 40,
        "rest_leak": 2.0,
        "graphql_bucket": 1000,
        "graphql_restore": 100.0,
        "api_version": "2026-10",
    }
    PLANS = {
        "standard": {},
        "advanced": {"rest_bucket": 80, "rest_leak": 4.0, "graphql_bucket": 2000, "graphql_restore": 200.0},
        "plus": {"rest_bucket": 400, "rest_leak": 20.0, "graphql_bucket": 10000, "graphql_restore": 1000.0},
    }

    def init_limits(self) -> None:
        self.rest_bucket = LeakyBucket(int(self.plan["rest_bucket"]), float(self.plan["rest_leak"]))
        self.graphql_bucket = CostBucket(float(self.plan["graphql_bucket"]), float(self.plan["graphql_restore"]))
        self.idempotency: dict[str, tuple[Any, dict]] = {}

    @property
    def shop_domain(self) -> str:
        return self.plan.get("shop_domain") or f"{self.channel_slug}.myshopify.com"

    # -- catalog -------------------------------------------------------------------------------------------

    def assign_ids(self, item: Item, same_sku: list[Item]) -> None:
        super().assign_ids(item, same_sku)
        sibling = same_sku[0] if same_sku else None
        for attr, sequence, base in (
            ("product_id", "product", 7_100_000_000_001),
            ("variant_id", "variant", 4_100_000_000_001),
            ("inventory_item_id", "inventory_item", 4_300_000_000_001),
        ):
            if getattr(item, attr) is None:
                setattr(item, attr, getattr(sibling, attr) if sibling else self.next_id(sequence, base))

    def level(self, inventory_item_id: int, location_id: int) -> Item | None:
        for item in self.items:
            if item.inventory_item_id == inventory_item_id and item.location_id == location_id:
                return item
        return None

    def known_item(self, inventory_item_id: int) -> Item | None:
        return next((item for item in self.items if item.inventory_item_id == inventory_item_id), None)

    def known_location(self, location_id: int) -> bool:
        return location_id == self.DEFAULT_LOCATION_ID or any(item.location_id == location_id for item in self.items)

    def connect(self, template: Item, location_id: int) -> Item:
        """Shopify stocks a known item at another known location on the first absolute set there."""
        item = Item(
            sku=template.sku,
            quantity=0,
            product_id=template.product_id,
            variant_id=template.variant_id,
            inventory_item_id=template.inventory_item_id,
            location_id=location_id,
            price=template.price,
            name=template.name,
        )
        self.items.append(item)
        return item

    # -- platform hooks ------------------------------------------------------------------------------------

    def error(self, status: int, code: str, message: str) -> Response:
        return Response(status, {"errors": message})

    def authenticate(self, req: Request, params: dict) -> Response | None:
        expected = self.credentials.get("access_token")
        if expected is not None and req.header("X-Shopify-Access-Token") != expected:
            return self.error(401, "unauthorized", INVALID_TOKEN)
        return None

    def too_many(self, retry_after: float, *, injected: bool) -> Response:
        leak = self.plan["rest_leak"]
        resp = self.error(
            429,
            "throttled",
            f"Exceeded {leak:g} calls per second for api client. Reduce request rates to resume uninterrupted service.",
        )
        resp.headers["Retry-After"] = f"{retry_after:.1f}" if not injected else _plain(retry_after)
        return resp

    def admit(self, req: Request, route: Route, now: float) -> Response | None:
        if route.endpoint == "graphql":
            return None  # charged by query cost inside the handler
        admitted, wait = self.rest_bucket.take(now)
        if not admitted:
            self.record_refused()
            return self.too_many(math.ceil(wait * 10) / 10, injected=False)
        self.record_accepted(now)
        return None

    def finalize(self, req: Request, route: Route | None, resp: Response) -> None:
        version = self.plan["api_version"]
        found = re.match(rf"^/admin/api/{VERSION}/", req.path)
        if found:
            version = found["version"]
        resp.headers.setdefault("X-Shopify-API-Version", version)
        if not req.path.endswith("/graphql.json"):
            used = self.rest_bucket.used(time.monotonic())
            resp.headers["X-Shopify-Shop-Api-Call-Limit"] = f"{used}/{self.rest_bucket.capacity}"

    # -- REST ----------------------------------------------------------------------------------------------

    def _level_json(self, item: Item) -> dict:
        return {
            "inventory_item_id": item.inventory_item_id,
            "location_id": item.location_id,
            "available": item.quantity,
            "updated_at": iso(item.updated_at),
            "admin_graphql_api_id": f"gid://shopify/InventoryLevel/{item.location_id}?inventory_item_id={item.inventory_item_id}",
        }

    def _rest_body(self, req: Request, *required: str) -> dict[str, int]:
        body = req.json()
        if not isinstance(body, dict):
            raise ApiError(Response(400, {"errors": {"base": "Required parameter missing or invalid"}}))
        values = {}
        for name in required:
            value = _as_int(body.get(name))
            if value is None:
                raise ApiError(Response(400, {"errors": {name: "Required parameter missing or invalid"}}))
            values[name] = value
        return values

    def rest_set(self, req: Request, version: str) -> Response:
        values = self._rest_body(req, "inventory_item_id", "location_id", "available")
        with self.lock:
            item = self.level(values["inventory_item_id"], values["location_id"])
            if item is None:
                template = self.known_item(values["inventory_item_id"])
                if template is None or not self.known_location(values["location_id"]):
                    return self.error(404, "not_found", "Not Found")
                item = self.connect(template, values["location_id"])
            item.touch(values["available"])
            return Response(200, {"inventory_level": self._level_json(item)})

    def rest_variant(self, req: Request, version: str, variant_id: str) -> Response:
        body = req.json()
        variant = body.get("variant") if isinstance(body, dict) else None
        if not isinstance(variant, dict):
            return Response(400, {"errors": {"variant": "Required parameter missing or invalid"}})
        with self.lock:
            items = [it for it in self.items if it.variant_id == int(variant_id)]
            if not items:
                return self.error(404, "not_found", "Not Found")
            if "price" in variant:
                try:
                    price = money(variant["price"])
                except (ArithmeticError, ValueError):
                    return Response(422, {"errors": {"price": ["is not a number"]}})
                for it in items:
                    it.price = price
            first = items[0]
            return Response(200, {"variant": {"id": first.variant_id, "product_id": first.product_id, "sku": first.sku,
                                              "price": first.price, "inventory_item_id": first.inventory_item_id}})

    def rest_product(self, req: Request, version: str, product_id: str) -> Response:
        body = req.json()
        product = body.get("product") if isinstance(body, dict) else None
        if not isinstance(product, dict):
            return Response(400, {"errors": {"product": "Required parameter missing or invalid"}})
        if "status" in product and product["status"] not in ("active", "draft", "archived"):
            return Response(422, {"errors": {"status": ["is not included in the list"]}})
        with self.lock:
            items = [it for it in self.items if it.product_id == int(product_id)]
            if not items:
                return self.error(404, "not_found", "Not Found")
            for it in items:
                if "title" in product:
                    it.name = str(product["title"])
                if "status" in product:
                    it.active = product["status"] == "active"
            first = items[0]
            return Response(200, {"product": {"id": first.product_id, "title": first.name,
                                              "status": "active" if first.active else "draft"}})

    def rest_adjust(self, req: Request, version: str) -> Response:
        values = self._rest_body(req, "inventory_item_id", "location_id", "available_adjustment")
        with self.lock:
            item = self.level(values["inventory_item_id"], values["location_id"])
            if item is None:
                if self.known_item(values["inventory_item_id"]) is None:
                    return self.error(404, "not_found", "Not Found")
                return Response(422, {"errors": ["Inventory item is not stocked at the location"]})
            # Shopify lets available go negative (oversold); so does the sandbox.
            item.touch(item.quantity + values["available_adjustment"])
            return Response(200, {"inventory_level": self._level_json(item)})

    def rest_levels(self, req: Request, version: str) -> Response:
        limit = page_bounds(req.arg("limit"), 50, 250)
        if limit is None:
            return Response(400, {"errors": {"limit": "Invalid value, must be between 1 and 250"}})
        page_info = req.arg("page_info")
        if page_info:
            # Shopify refuses filters next to page_info: the cursor already carries them.
            if req.arg("inventory_item_ids") or req.arg("location_ids"):
                return Response(400, {"errors": {"page_info": "page_info cannot be combined with other filters"}})
            cursor = decode_cursor(page_info)
            if cursor is None:
                return Response(400, {"errors": {"page_info": "Invalid value."}})
            item_ids, location_ids, offset = cursor.get("i"), cursor.get("l"), int(cursor.get("o", 0))
        else:
            item_ids = _id_list(req.arg("inventory_item_ids"))
            location_ids = _id_list(req.arg("location_ids"))
            if item_ids is False or location_ids is False:
                return Response(400, {"errors": {"base": "ids must be comma-separated integers"}})
            if not item_ids and not location_ids:
                return Response(422, {"errors": {"base": ["inventory_item_ids or location_ids must be provided"]}})
            offset = 0
        with self.lock:
            rows = sorted(
                (
                    item
                    for item in self.items
                    if (not item_ids or item.inventory_item_id in item_ids)
                    and (not location_ids or item.location_id in location_ids)
                ),
                key=lambda it: (it.inventory_item_id, it.location_id),
            )
            page = [self._level_json(item) for item in rows[offset : offset + limit]]
        links = []
        path = f"{self.base_url}/admin/api/{version}/inventory_levels.json"

        def link(at: int, rel: str) -> str:
            return f'<{path}?limit={limit}&page_info={encode_cursor({"i": item_ids, "l": location_ids, "o": at})}>; rel="{rel}"'

        if offset > 0:
            links.append(link(max(0, offset - limit), "previous"))
        if offset + limit < len(rows):
            links.append(link(offset + limit, "next"))
        headers = {"Link": ", ".join(links)} if links else {}
        return Response(200, {"inventory_levels": page}, headers)

    # -- GraphQL -------------------------------------------------------------------------------------------

    def graphql(self, req: Request, version: str) -> Response:
        body = req.json()
        if not isinstance(body, dict) or not isinstance(body.get("query"), str):
            return Response(400, {"errors": {"query": "Required parameter missing or invalid"}})
        query = body["query"]
        variables = body.get("variables") or {}
        if "inventorySetQuantities" in query:
            operation, cost = self._gql_set, MUTATION_COST
        elif "inventoryAdjustQuantities" in query:
            operation, cost = self._gql_adjust, MUTATION_COST
        elif "nodes(" in query and "inventoryLevel(" in query:
            ids = variables.get("ids")
            if not isinstance(ids, list) or not 1 <= len(ids) <= 250:
                return Response(200, {"errors": [{"message": "ids must list 1 to 250 ids",
                                                  "extensions": {"code": "BAD_USER_INPUT"}}]})
            operation, cost = self._gql_items, 1 + 2 * len(ids)
        elif "inventoryLevels" in query:
            first = _as_int(variables.get("first"))
            if first is None:
                found = re.search(r"inventoryLevels\(\s*first:\s*(\d+)", query)
                first = int(found.group(1)) if found else 50
            operation, cost = self._gql_levels, 2 + min(max(first, 1), 250)
        else:
            return Response(
                200,
                {
                    "errors": [
                        {
                            "message": "The sandbox only implements inventorySetQuantities, inventoryAdjustQuantities "
                            "and location.inventoryLevels",
                            "extensions": {"code": "undefinedField"},
                        }
                    ]
                },
            )
        now = time.monotonic()
        with self.lock:
            if not self.graphql_bucket.take(cost, now):
                self.record_refused()
                return Response(
                    200,
                    {
                        "errors": [
                            {
                                "message": "Throttled",
                                "extensions": {"code": "THROTTLED", "documentation": "https://shopify.dev/api/usage/rate-limits"},
                            }
                        ],
                        "extensions": {
                            "cost": {
                                "requestedQueryCost": cost,
                                "actualQueryCost": None,
                                "throttleStatus": self.graphql_bucket.status(now),
                            }
                        },
                    },
                )
            self.record_accepted(now)
            try:
                data, actual = operation(query, variables, version)
            except ApiError:
                self.graphql_bucket.refund(cost)
                raise
            self.graphql_bucket.refund(max(0, cost - actual))
            cost_info = {"requestedQueryCost": cost, "actualQueryCost": actual, "throttleStatus": self.graphql_bucket.status(now)}
        if "errors" in data:
            return Response(200, {**data, "extensions": {"cost": cost_info}})
        return Response(200, {"data": data, "extensions": {"cost": cost_info}})

    @staticmethod
    def _top_error(message: str, code: str = "BAD_USER_INPUT") -> ApiError:
        return ApiError(Response(200, {"errors": [{"message": message, "extensions": {"code": code}}]}))

    def _input(self, variables: dict) -> dict:
        data = variables.get("input")
        if not isinstance(data, dict):
            raise self._top_error(
                "Variable $input of type ...Input! was provided invalid value (the sandbox reads variables.input)"
            )
        return data

    def _resolve_pair(self, row: dict, i: int, container: str, errors: list) -> Item | None:
        item_id = parse_gid(row.get("inventoryItemId"), "InventoryItem")
        location_id = parse_gid(row.get("locationId"), "Location")
        field = ["input", container, str(i)]
        if item_id is None or self.known_item(item_id) is None:
            errors.append(
                _user_error(
                    field + ["inventoryItemId"], "The specified inventory item could not be found.", "INVALID_INVENTORY_ITEM"
                )
            )
            return None
        if location_id is None or not self.known_location(location_id):
            errors.append(_user_error(field + ["locationId"], "The specified location could not be found.", "INVALID_LOCATION"))
            return None
        item = self.level(item_id, location_id)
        if item is None:
            errors.append(
                _user_error(
                    field + ["locationId"],
                    "The specified inventory item is not stocked at the location.",
                    "ITEM_NOT_STOCKED_AT_LOCATION",
                )
            )
        return item

    def _check_common(self, data: dict, errors: list) -> str:
        name = data.get("name", "available")
        if name not in ("available", "on_hand"):
            errors.append(
                _user_error(["input", "name"], "The quantity name must be either 'available' or 'on_hand'.", "INVALID_NAME")
            )
        reason = data.get("reason")
        if reason not in REASONS:
            errors.append(_user_error(["input", "reason"], "The specified reason is invalid.", "INVALID_REASON"))
        return name

    def _group(self, data: dict, changes: list[dict]) -> dict:
        return {
            "id": gid("InventoryAdjustmentGroup", self.next_id("adjustment_group", 90_000_000_001)),
            "createdAt": iso(utcnow()),
            "reason": data.get("reason"),
            "referenceDocumentUri": data.get("referenceDocumentUri"),
            "changes": changes,
        }

    @staticmethod
    def _change(name: str, item: Item, delta: int) -> dict:
        return {
            "name": name,
            "delta": delta,
            "quantityAfterChange": item.quantity,
            "item": {"id": gid("InventoryItem", item.inventory_item_id), "sku": item.sku},
            "location": {"id": gid("Location", item.location_id)},
        }

    def _api_reply(self, req: Request, route: Route | None, params: dict, plan: dict) -> Response:
        # Shopify's GraphQL answers its own internal failure 200, the error in the body.
        if plan.get("5xx") == 500 and route is not None and route.endpoint == "graphql":
            return Response(200, {"errors": [{
                "message": "Internal error. Looks like something went wrong on our end.",
                "extensions": {"code": "INTERNAL_SERVER_ERROR", "requestId": uuid.uuid4().hex}}]})
        return super()._api_reply(req, route, params, plan)

    def _idempotency_key(self, query: str, variables: dict, version: str, mutation: str) -> str | None:
        """The ``@idempotent(key:)`` directive's key: optional from 2026-01, required from 2026-04 (a runtime error
        without it, though the schema does not mark it)."""
        found = IDEMPOTENT.search(query)
        key = None
        if found:
            key = found["literal"] if found["literal"] is not None else variables.get(found["var"])
        if key is None and (version == "unstable" or version >= "2026-04"):
            raise self._top_error(f"The @idempotent(key:) directive is required for {mutation} from 2026-04.")
        return key

    def _replayed(self, key: str | None, data: dict, mutation: str) -> dict | None:
        """A request seen before under this key: its first answer again (nothing applied twice), or a mismatch."""
        if key is None or key not in self.idempotency:
            return None
        fingerprint, result = self.idempotency[key]
        if fingerprint == (mutation, data):
            return result
        errors = [_user_error(["input"], "The same idempotency key cannot be used with different operation parameters.",
                              "IDEMPOTENCY_KEY_PARAMETER_MISMATCH")]
        return {mutation: {"inventoryAdjustmentGroup": None, "userErrors": errors}}

    def _gql_set(self, query: str, variables: dict, version: str) -> tuple[dict, int]:
        data = self._input(variables)
        key = self._idempotency_key(query, variables, version, "inventorySetQuantities")
        replayed = self._replayed(key, data, "inventorySetQuantities")
        if replayed is not None:
            return replayed, MUTATION_COST
        result = self._set(data, version)
        if key is not None:
            self.idempotency[key] = (("inventorySetQuantities", data), result)
        return result, MUTATION_COST

    def _set(self, data: dict, version: str) -> dict:
        quantities = data.get("quantities")
        if not isinstance(quantities, list) or not quantities:
            raise self._top_error("input.quantities must be a non-empty list")
        # 2026-04 removed ignoreCompareQuantity: each quantity names its changeFromQuantity, null to opt out.
        since_2026_04 = version == "unstable" or version >= "2026-04"
        if since_2026_04 and "ignoreCompareQuantity" in data:
            raise self._top_error("Variable $input of type InventorySetQuantitiesInput! was provided invalid value for "
                                  "ignoreCompareQuantity (Field is not defined on InventorySetQuantitiesInput)")
        errors: list[dict] = []
        name = self._check_common(data, errors)
        ignore_compare = bool(data.get("ignoreCompareQuantity"))
        planned: list[tuple[Item, int]] = []
        seen: set[tuple[int, int]] = set()
        for i, row in enumerate(quantities):
            row = row if isinstance(row, dict) else {}
            item = self._resolve_pair(row, i, "quantities", errors)
            quantity = _as_int(row.get("quantity"))
            field = ["input", "quantities", str(i)]
            if quantity is None or quantity < 0:
                errors.append(_user_error(field + ["quantity"], "The quantity can't be negative.", "INVALID_QUANTITY_NEGATIVE"))
                continue
            if quantity > 1_000_000_000:
                errors.append(
                    _user_error(
                        field + ["quantity"],
                        "The total quantity can't be higher than 1,000,000,000.",
                        "INVALID_QUANTITY_TOO_HIGH",
                    )
                )
                continue
            if item is None:
                continue
            if (item.inventory_item_id, item.location_id) in seen:
                errors.append(
                    _user_error(
                        field,
                        "The combination of inventoryItemId and locationId must be unique.",
                        "NO_DUPLICATE_INVENTORY_ITEM_ID_GROUP_ID_PAIR",
                    )
                )
                continue
            seen.add((item.inventory_item_id, item.location_id))
            if not ignore_compare:
                # 2024-era versions call it compareQuantity (COMPARE_QUANTITY_STALE); current ones changeFromQuantity,
                # whose explicit null opts that quantity out of the check (2026-01 on).
                if "changeFromQuantity" in row:
                    if row["changeFromQuantity"] is not None and row["changeFromQuantity"] != item.quantity:
                        errors.append(
                            _user_error(
                                field + ["changeFromQuantity"],
                                "The changeFromQuantity value does not match persisted value.",
                                "CHANGE_FROM_QUANTITY_STALE",
                            )
                        )
                        continue
                elif "compareQuantity" in row:
                    if row["compareQuantity"] != item.quantity:
                        errors.append(
                            _user_error(
                                field + ["compareQuantity"],
                                "The compareQuantity value does not match persisted value.",
                                "COMPARE_QUANTITY_STALE",
                            )
                        )
                        continue
                else:
                    errors.append(
                        _user_error(
                            field + ["changeFromQuantity"],
                            "The changeFromQuantity argument must be given to each quantity (null opts out)."
                            if since_2026_04 else "The changeFromQuantity argument must be given to each quantity "
                            "or ignored using ignoreCompareQuantity.",
                            "COMPARE_QUANTITY_REQUIRED",
                        )
                    )
                    continue
            planned.append((item, quantity))
        if errors:
            # All or nothing: one stale or invalid row means no row is written.
            return {"inventorySetQuantities": {"inventoryAdjustmentGroup": None, "userErrors": errors}}
        changes = []
        for item, quantity in planned:
            delta = quantity - item.quantity
            item.touch(quantity)
            changes.append(self._change(name, item, delta))
        return {"inventorySetQuantities": {"inventoryAdjustmentGroup": self._group(data, changes), "userErrors": []}}

    def _gql_adjust(self, query: str, variables: dict, version: str) -> tuple[dict, int]:
        data = self._input(variables)
        key = self._idempotency_key(query, variables, version, "inventoryAdjustQuantities")
        replayed = self._replayed(key, data, "inventoryAdjustQuantities")
        if replayed is not None:
            return replayed, MUTATION_COST
        changes_in = data.get("changes")
        if not isinstance(changes_in, list) or not changes_in:
            raise self._top_error("input.changes must be a non-empty list")
        errors: list[dict] = []
        name = self._check_common(data, errors)
        planned: list[tuple[Item, int]] = []
        for i, row in enumerate(changes_in):
            row = row if isinstance(row, dict) else {}
            item = self._resolve_pair(row, i, "changes", errors)
            delta = _as_int(row.get("delta"))
            if delta is None:
                errors.append(
                    _user_error(["input", "changes", str(i), "delta"], "delta must be an integer", "INVALID_QUANTITY_TOO_LOW")
                )
                continue
            if item is None:
                continue
            if "changeFromQuantity" in row and row["changeFromQuantity"] != item.quantity:
                errors.append(
                    _user_error(
                        ["input", "changes", str(i), "changeFromQuantity"],
                        "The changeFromQuantity value does not match persisted value.",
                        "CHANGE_FROM_QUANTITY_STALE",
                    )
                )
                continue
            planned.append((item, delta))
        if errors:
            result = {"inventoryAdjustQuantities": {"inventoryAdjustmentGroup": None, "userErrors": errors}}
        else:
            changes = []
            for item, delta in planned:
                item.touch(item.quantity + delta)
                changes.append(self._change(name, item, delta))
            result = {"inventoryAdjustQuantities": {"inventoryAdjustmentGroup": self._group(data, changes), "userErrors": []}}
        if key is not None:
            self.idempotency[key] = (("inventoryAdjustQuantities", data), result)
        return result, MUTATION_COST

    def _gql_levels(self, query: str, variables: dict, version: str) -> tuple[dict, int]:
        """``location(id: $locationId) { inventoryLevels(first: $first, after: $after) { ... } }``."""
        location_id = parse_gid(variables.get("locationId") or variables.get("id"), "Location")
        if location_id is None:
            location_id = self.items[0].location_id if self.items else self.DEFAULT_LOCATION_ID
        first = _as_int(variables.get("first")) or 50
        first = min(max(first, 1), 250)
        after = variables.get("after")
        offset = 0
        if after:
            cursor = decode_cursor(after)
            if cursor is None:
                raise self._top_error("Invalid cursor for inventoryLevels")
            offset = int(cursor.get("o", 0))
        rows = sorted((item for item in self.items if item.location_id == location_id), key=lambda it: it.inventory_item_id)
        page = rows[offset : offset + first]
        edges = [
            {
                "cursor": encode_cursor({"o": offset + n + 1}),
                "node": {
                    "id": f"gid://shopify/InventoryLevel/{item.location_id}?inventory_item_id={item.inventory_item_id}",
                    "item": {
                        "id": gid("InventoryItem", item.inventory_item_id),
                        "sku": item.sku,
                        "variant": {"id": gid("ProductVariant", item.variant_id)},
                    },
                    "location": {"id": gid("Location", item.location_id)},
                    "quantities": [
                        {"name": "available", "quantity": item.quantity},
                        {"name": "on_hand", "quantity": item.quantity},
                    ],
                    "updatedAt": iso(item.updated_at),
                },
            }
            for n, item in enumerate(page)
        ]
        connection = {
            "edges": edges,
            "nodes": [edge["node"] for edge in edges],
            "pageInfo": {
                "hasNextPage": offset + first < len(rows),
                "hasPreviousPage": offset > 0,
                "endCursor": edges[-1]["cursor"] if edges else None,
                "startCursor": edges[0]["cursor"] if edges else None,
            },
        }
        return {"location": {"id": gid("Location", location_id), "inventoryLevels": connection}}, 2 + len(page)

    def _gql_items(self, query: str, variables: dict, version: str) -> tuple[dict, int]:
        """``nodes(ids: $ids) { ... on InventoryItem { id inventoryLevel(locationId: $locationId) { quantities(names:
        ["available"]) { name quantity } } } }``: the levels of given items at one location (null for an unknown
        id, a null level where the item is not stocked there). Costs 1 + 2 per id."""
        location_id = parse_gid(variables.get("locationId"), "Location")
        if location_id is None:
            raise self._top_error("locationId must be a Location gid")
        nodes = []
        for value in variables["ids"]:
            item_id = parse_gid(value, "InventoryItem")
            items = [item for item in self.items if item_id is not None and item.inventory_item_id == item_id]
            if not items:
                nodes.append(None)
                continue
            level = next((item for item in items if item.location_id == location_id), None)
            nodes.append({"id": gid("InventoryItem", item_id), "inventoryLevel": None if level is None else {
                "quantities": [{"name": "available", "quantity": level.quantity}]}})
        return {"nodes": nodes}, 1 + 2 * len(nodes)

    # -- webhooks ------------------------------------------------------------------------------------------

    def sign_webhook(self, topic: str, body: bytes, delivery_id: str, payload: Any) -> dict[str, str]:
        return {
            "X-Shopify-Topic": topic,
            "X-Shopify-Hmac-Sha256": hmac_sha256_b64(self.webhook_secret, body),
            "X-Shopify-Shop-Domain": self.shop_domain,
            "X-Shopify-API-Version": self.plan["api_version"],
            "X-Shopify-Webhook-Id": delivery_id,
            "X-Shopify-Triggered-At": utcnow().isoformat(),
            "X-Shopify-Event-Id": self.new_delivery_id(),
        }

    def _line_json(self, line) -> dict:
        return {
            "id": line.line_id,
            "admin_graphql_api_id": gid("LineItem", line.line_id),
            "variant_id": line.variant_id,
            "product_id": line.product_id,
            "sku": line.sku,
            "title": line.name,
            "name": line.name,
            "quantity": line.quantity,
            "price": line.price,
            "fulfillable_quantity": line.quantity,
            "fulfillment_service": "manual",
            "requires_shipping": True,
        }

    def _order_json(self, order: Order) -> dict:
        total = order.total()
        cancelled = order.status == "cancelled"
        return {
            "id": order.order_id,
            "admin_graphql_api_id": gid("Order", order.order_id),
            "name": f"#{order.number}",
            "order_number": order.number,
            "currency": order.currency,
            "presentment_currency": order.currency,
            "financial_status": "voided" if cancelled else "paid",
            "fulfillment_status": None,
            "created_at": iso(order.created_at),
            "updated_at": iso(order.updated_at),
            "processed_at": iso(order.created_at),
            "cancelled_at": iso(order.updated_at) if cancelled else None,
            "cancel_reason": "customer" if cancelled else None,
            "subtotal_price": total,
            "total_tax": "0.00",
            "total_price": total,
            "test": True,
            "line_items": [self._line_json(line) for line in order.lines],
        }

    def order_created_events(self, order: Order) -> list[tuple[str, dict]]:
        return [("orders/create", self._order_json(order))]

    def order_cancelled_events(self, order: Order, restock: bool) -> list[tuple[str, dict]]:
        return [("orders/cancelled", self._order_json(order))]

    def refund_events(self, order: Order, refund: dict) -> list[tuple[str, dict]]:
        by_id = {line.line_id: line for line in order.lines}
        rows = []
        for r_line in refund["lines"]:
            line = by_id[r_line["line_id"]]
            rows.append(
                {
                    "id": self.next_id("refund_line", 6_100_000_000_001),
                    "line_item_id": line.line_id,
                    "quantity": r_line["quantity"],
                    "restock_type": "return" if refund["restock"] else "no_restock",
                    "location_id": (_as_int(refund["location_id"]) or line.location_id) if refund["restock"] else None,
                    "subtotal": money(Decimal(line.price) * r_line["quantity"]),
                    "total_tax": "0.00",
                    "line_item": self._line_json(line),
                }
            )
        return [
            (
                "refunds/create",
                {
                    "id": refund["refund_id"],
                    "admin_graphql_api_id": gid("Refund", refund["refund_id"]),
                    "order_id": order.order_id,
                    "created_at": iso(refund["created_at"]),
                    "processed_at": iso(refund["created_at"]),
                    "restock": refund["restock"],
                    "note": None,
                    "refund_line_items": rows,
                    "transactions": [],
                },
            )
        ]

    def inventory_level_events(self, item: Item) -> list[tuple[str, dict]]:
        return [("inventory_levels/update", self._level_json(item))]


def _plain(value: float) -> str:
    return str(int(value)) if float(value).is_integer() else str(value)


def _id_list(raw: str | None) -> list[int] | bool | None:
    if not raw:
        return None
    try:
        return [int(part) for part in raw.split(",") if part.strip()]
    except ValueError:
        return False


def _user_error(field: list[str], message: str, code: str) -> dict:
    return {"field": field, "message": message, "code": code}
