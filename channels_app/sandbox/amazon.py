"""Amazon Selling Partner API imitation: Listings Items 2021-08-01 quantity patches and reads.

Rate limit: the operation's usage plan, a token bucket of 5 requests/s with burst 5; over it, 429
``QuotaExceeded``. The plan's rate is announced in ``x-amzn-RateLimit-Limit`` on 2xx, 400 and 404
answers. Amazon answers a bad or missing token with 403 ``Unauthorized`` (not 401), and so does
the sandbox. A real ACCEPTED patch is applied minutes later; the sandbox applies it at once unless
``plan["apply_delay_ms"]`` says otherwise.

Amazon has no webhooks: notifications travel through SQS/EventBridge. The sandbox posts the notification
envelope straight to the hub (as a queue relay would) with ``Authorization: Bearer <webhook secret>``.
"""

from __future__ import annotations

import hashlib
import threading
import time
import uuid
from typing import Any
from urllib.parse import parse_qs, unquote

from .base import Item, Order, Request, Response, Route, SandboxState, iso, utcnow
from .limits import TokenBucket

AVAILABILITY_PATH = "/attributes/fulfillment_availability"
UNAUTHORIZED = "Access to requested resource is denied."


def _errors(code: str, message: str, details: str = "") -> dict:
    return {"errors": [{"code": code, "message": message, "details": details}]}


def _issue(code: str, message: str, attribute: str | None = None) -> dict:
    issue = {"code": code, "message": message, "severity": "ERROR", "categories": ["INVALID_ATTRIBUTE"]}
    if attribute:
        issue["attributeNames"] = [attribute]
    return issue


class AmazonState(SandboxState):
    kind = "amazon"
    ROUTES = [
        ("POST", r"^/auth/o2/token$", "lwa_token", "lwa/token"),
        ("PATCH", r"^/listings/2021-08-01/items/(?P<seller_id>[^/]+)/(?P<sku>[^/]+)$", "patch_listing", "listings/patch"),
        ("GET", r"^/listings/2021-08-01/items/(?P<seller_id>[^/]+)/(?P<sku>[^/]+)$", "get_listing", "listings/get"),
    ]
    # token_ttl: seconds an access token from Login with Amazon lives (Amazon: 3600).
    DEFAULT_PLAN = {"rate": 5.0, "burst": 5, "marketplace_id": "ATVPDKIKX0DER", "apply_delay_ms": 0, "token_ttl": 3600}

    def init_limits(self) -> None:
        self.bucket = TokenBucket(float(self.plan["rate"]), int(self.plan["burst"]))
        self.issued: dict[str, float] = {}  # access token -> when it expires (time.monotonic)
        self.tokens_issued = 0

    def revoke_tokens(self) -> None:
        """Every access token Login with Amazon issued stops working (the seller re-authorised the app, say)."""
        with self.lock:
            self.issued.clear()

    def lwa_token(self, req: Request) -> Response:
        """Login with Amazon's token endpoint (``https://api.amazon.com/auth/o2/token``): a refresh token, with the
        app's client id and secret, for an access token that lives an hour. Form-encoded, answered in JSON."""
        form = {k: v[0] for k, v in parse_qs(req.body.decode("utf-8", "replace")).items()}
        if form.get("grant_type") != "refresh_token":
            return Response(400, {"error": "unsupported_grant_type",
                                  "error_description": "The authorization grant type is not supported."})
        client = (self.credentials.get("lwa_client_id"), self.credentials.get("lwa_client_secret"))
        if (form.get("client_id"), form.get("client_secret")) != client:
            return Response(401, {"error": "invalid_client", "error_description": "Client authentication failed"})
        if form.get("refresh_token") != self.credentials.get("refresh_token"):
            return Response(400, {"error": "invalid_grant",
                                  "error_description": "The request has an invalid grant parameter : refresh_token"})
        token = f"Atza|{uuid.uuid4().hex}"
        ttl = int(self.plan["token_ttl"])
        with self.lock:
            self.issued[token] = time.monotonic() + ttl
            self.tokens_issued += 1
        return Response(200, {"access_token": token, "refresh_token": form["refresh_token"], "token_type": "bearer",
                              "expires_in": ttl})

    @property
    def seller_id(self) -> str:
        return self.credentials.get("seller_id") or self.plan.get("seller_id") or "A1SANDBOXSELLER"

    def new_order_id(self) -> str:
        n = self.next_id("order", 1)
        return f"113-{1000000 + n:07d}-{int(hashlib.md5(str(n).encode()).hexdigest()[:6], 16) % 10_000_000:07d}"

    def new_line_id(self) -> str:
        return f"{self.next_id('line', 40_000_000_000_001):014d}"

    @staticmethod
    def asin(sku: str) -> str:
        return "B0" + hashlib.sha1(sku.encode()).hexdigest()[:8].upper()

    # -- platform hooks ------------------------------------------------------------------------------------

    def error(self, status: int, code: str, message: str) -> Response:
        codes = {404: "NotFound", 429: "QuotaExceeded", 500: "InternalFailure", 502: "InternalFailure", 503: "ServiceUnavailable"}
        return Response(status, _errors(codes.get(status, code), message))

    def too_many(self, retry_after: float, *, injected: bool) -> Response:
        resp = self.error(429, "QuotaExceeded", "You exceeded your quota for the requested resource.")
        if injected:
            resp.headers["Retry-After"] = str(int(retry_after)) if float(retry_after).is_integer() else str(retry_after)
        return resp

    def authenticate(self, req: Request, params: dict) -> Response | None:
        if req.path == "/auth/o2/token":
            return None  # the client's id and secret are checked by the endpoint
        sent, token = req.header("x-amz-access-token"), self.credentials.get("access_token")
        if self.credentials.get("refresh_token"):  # an app authorised through Login with Amazon
            expires = self.issued.get(sent or "")
            if expires is not None and expires <= time.monotonic():
                return Response(403, _errors("Unauthorized", UNAUTHORIZED, "The access token you provided has expired."))
            if expires is None and (token is None or sent != token):
                return Response(403, _errors("Unauthorized", UNAUTHORIZED,
                                             "The access token you provided is revoked, malformed or invalid."))
        elif token is not None and sent != token:
            return Response(
                403, _errors("Unauthorized", UNAUTHORIZED, "The access token you provided is revoked, malformed or invalid.")
            )
        seller = self.credentials.get("seller_id")
        if seller is not None and params.get("seller_id") != seller:
            return Response(403, _errors("Unauthorized", UNAUTHORIZED))
        return None

    def admit(self, req: Request, route: Route, now: float) -> Response | None:
        if route.endpoint == "lwa/token":
            return None  # Login with Amazon is not the Selling Partner API: its quota is not the operation's
        if not self.bucket.take(now):
            self.record_refused()
            return self.too_many(0, injected=False)
        self.record_accepted(now)
        return None

    def finalize(self, req: Request, route: Route | None, resp: Response) -> None:
        # Amazon announces the plan's rate in requests per second ("2.0", "0.0055": not rounded to a tenth, which
        # made a plan of 0.0055 read as 0), best effort and only on 2xx, 400 and 404 answers: a client must pace
        # by the last one it saw, not expect it on a 403 or on the 429 that refuses it.
        if resp.status < 300 or resp.status in (400, 404):
            resp.headers["x-amzn-RateLimit-Limit"] = repr(self.bucket.rate)
        resp.headers["x-amzn-RequestId"] = str(uuid.uuid4())

    # -- listings ------------------------------------------------------------------------------------------

    def _marketplaces(self, req: Request) -> Response | None:
        if not req.arg("marketplaceIds"):
            return Response(400, _errors("InvalidInput", "Missing required 'marketplaceIds' parameter."))
        return None

    def patch_listing(self, req: Request, seller_id: str, sku: str) -> Response:
        sku = unquote(sku)
        missing = self._marketplaces(req)
        if missing:
            return missing
        body = req.json()
        issues: list[dict] = []
        quantity: int | None = None
        if not isinstance(body, dict):
            return Response(400, _errors("InvalidInput", "The request body must be a JSON object."))
        if not isinstance(body.get("productType"), str) or not body["productType"]:
            issues.append(_issue("4000001", "'productType' is required but not supplied."))
        patches = body.get("patches")
        if not isinstance(patches, list) or not patches:
            issues.append(_issue("4000001", "'patches' must contain at least one patch."))
            patches = []
        for n, patch in enumerate(patches):
            if not isinstance(patch, dict) or patch.get("op") not in ("add", "replace", "merge", "delete"):
                issues.append(_issue("4000002", f"patches[{n}].op must be one of add, replace, merge, delete."))
                continue
            if patch.get("path") != AVAILABILITY_PATH:
                continue  # other attributes are accepted and ignored: the sandbox only keeps stock
            value = patch.get("value")
            entry = value[0] if isinstance(value, list) and value and isinstance(value[0], dict) else None
            if patch["op"] == "delete" or entry is None:
                issues.append(
                    _issue("90220", "'fulfillment_availability' is required but not supplied.", "fulfillment_availability")
                )
                continue
            qty = entry.get("quantity")
            if entry.get("fulfillment_channel_code", "DEFAULT") != "DEFAULT":
                continue  # Amazon-fulfilled (AFN) quantities are Amazon's to set
            if isinstance(qty, bool) or not isinstance(qty, int) or qty < 0:
                issues.append(_issue("90244", "'quantity' must be a non-negative integer.", "fulfillment_availability"))
                continue
            quantity = qty
        with self.lock:
            found = self.items_for_sku(sku)
            if not found:
                issues.append(_issue("NOT_FOUND", f"SKU '{sku}' does not exist for this seller in the marketplace."))
            if issues:
                return Response(200, {"sku": sku, "status": "INVALID", "submissionId": uuid.uuid4().hex, "issues": issues})
            if quantity is not None:
                delay = float(self.plan.get("apply_delay_ms") or 0) / 1000.0
                if delay > 0:
                    timer = threading.Timer(delay, self._apply_later, args=(sku, quantity))
                    timer.daemon = True
                    timer.start()
                else:
                    found[0].touch(quantity)
        return Response(200, {"sku": sku, "status": "ACCEPTED", "submissionId": uuid.uuid4().hex, "issues": []})

    def _apply_later(self, sku: str, quantity: int) -> None:
        with self.lock:
            found = self.items_for_sku(sku)
            if found:
                found[0].touch(quantity)

    def get_listing(self, req: Request, seller_id: str, sku: str) -> Response:
        sku = unquote(sku)
        missing = self._marketplaces(req)
        if missing:
            return missing
        included = set((req.arg("includedData") or "summaries").split(","))
        with self.lock:
            found = self.items_for_sku(sku)
            if not found:
                return Response(404, _errors("NOT_FOUND", f"SKU '{sku}' not found in marketplace {req.arg('marketplaceIds')}"))
            item = found[0]
            out: dict[str, Any] = {"sku": sku}
            if "summaries" in included:
                out["summaries"] = [
                    {
                        "marketplaceId": req.arg("marketplaceIds").split(",")[0],
                        "asin": self.asin(sku),
                        "productType": "PRODUCT",
                        "conditionType": "new_new",
                        "status": ["BUYABLE", "DISCOVERABLE"] if item.quantity > 0 else ["DISCOVERABLE"],
                        "itemName": item.name,
                        "createdDate": iso(item.updated_at),
                        "lastUpdatedDate": iso(item.updated_at),
                    }
                ]
            if "fulfillmentAvailability" in included:
                out["fulfillmentAvailability"] = [{"fulfillmentChannelCode": "DEFAULT", "quantity": item.quantity}]
            if "issues" in included:
                out["issues"] = []
        return Response(200, out)

    # -- notifications -------------------------------------------------------------------------------------

    def wrap_payload(self, topic: str, payload: Any, delivery_id: str) -> Any:
        now = iso(utcnow()).replace("+00:00", "Z")
        return {
            "NotificationVersion": "1.0",
            "NotificationType": topic,
            "PayloadVersion": "1.0",
            "EventTime": now,
            "Payload": payload,
            "NotificationMetadata": {
                "ApplicationId": "amzn1.sellerapps.app.tally-sandbox",
                "SubscriptionId": str(uuid.uuid5(uuid.NAMESPACE_URL, f"{self.seller_id}/{topic}")),
                "PublishTime": now,
                "NotificationId": delivery_id,
            },
        }

    def sign_webhook(self, topic: str, body: bytes, delivery_id: str, payload: Any) -> dict[str, str]:
        return {"Authorization": f"Bearer {self.webhook_secret}"} if self.webhook_secret else {}

    def _order_change(self, order: Order, status: str) -> dict:
        unshipped = 0 if status == "Canceled" else sum(line.quantity for line in order.lines)
        summary = {
            "MarketplaceId": self.plan["marketplace_id"],
            "OrderStatus": status,
            "PurchaseDate": iso(order.created_at).replace("+00:00", "Z"),
            "FulfillmentType": "MFN",
            "OrderType": "StandardOrder",
            "NumberOfItemsShipped": 0,
            "NumberOfItemsUnshipped": unshipped,
            # ItemPrice is not part of the real Summary; kept so the hub can book revenue without a getOrderItems call.
            "OrderItems": [
                {
                    "OrderItemId": line.line_id,
                    "SupplySourceId": None,
                    "SellerSKU": line.sku,
                    "Quantity": line.quantity,
                    "ItemPrice": {"CurrencyCode": order.currency, "Amount": line.price},
                }
                for line in order.lines
            ],
        }
        return {
            "OrderChangeNotification": {
                "NotificationLevel": "OrderLevel",
                "SellerId": self.seller_id,
                "AmazonOrderId": order.order_id,
                "OrderChangeType": "OrderStatusChange",
                "OrderChangeTrigger": {
                    "TimeOfOrderChange": iso(order.updated_at).replace("+00:00", "Z"),
                    "ChangeReason": "OrderStatusChange",
                },
                "Summary": summary,
            }
        }

    def order_created_events(self, order: Order) -> list[tuple[str, dict]]:
        return [("ORDER_CHANGE", self._order_change(order, "Unshipped"))]

    def order_cancelled_events(self, order: Order, restock: bool) -> list[tuple[str, dict]]:
        return [("ORDER_CHANGE", self._order_change(order, "Canceled"))]

    def refund_events(self, order: Order, refund: dict) -> list[tuple[str, dict]]:
        return []  # no SP-API notification tells of a refund; the restock is visible through the quantity

    def inventory_level_events(self, item: Item) -> list[tuple[str, dict]]:
        payload = {"SellerId": self.seller_id, "FulfillmentChannelCode": "DEFAULT", "Sku": item.sku, "Quantity": item.quantity}
        return [("LISTINGS_ITEM_MFN_QUANTITY_CHANGE", payload)]
