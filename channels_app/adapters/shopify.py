"""Shopify: HMAC-signed webhooks; stock through GraphQL inventorySetQuantities (compare-and-set) or REST."""

from __future__ import annotations

import re
import uuid
from collections.abc import Iterator, Mapping
from decimal import Decimal
from functools import cached_property
from typing import Any

import requests

from channels_app.adapters.base import (
    BATCH_REFUSED,
    ChannelAdapter,
    Delivery,
    PayloadError,
    PushItem,
    PushResult,
    RemoteLevel,
    parse_time,
)
from channels_app.adapters.http import ChannelError, PermanentError, RateLimited, TransientError
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
from channels_app.models import DEFAULT_RATE_LIMITS, ChannelKind
from channels_app.ratelimit import RateLimiter, with_margin

API_VERSION = "2026-01"
# What an inventory mutation costs (Shopify: 10 points a mutation field).
MUTATION_COST = 10
# The least a THROTTLED channel waits: points come back continuously, a call asked again at once would only be refused.
THROTTLED_MIN_WAIT = 0.05
# The idempotency key (a new one per push, the same on each of its retries): a mutation whose answer was lost is
# retried, and Shopify answers the retry with the first attempt's result instead of applying it again; without it
# the retry's changeFromQuantity no longer matched (the first had landed), and our own number was taken for a sale
# made on the channel and subtracted again. Required from 2026-04.
SET_QUANTITIES = """
mutation inventorySetQuantities($input: InventorySetQuantitiesInput!, $idempotencyKey: String!) {
  inventorySetQuantities(input: $input) @idempotent(key: $idempotencyKey) {
    inventoryAdjustmentGroup { reason changes { name delta } }
    userErrors { code field message }
  }
}
"""
READ_LEVELS = """
query inventoryLevels($ids: [ID!]!, $locationId: ID!) {
  nodes(ids: $ids) {
    ... on InventoryItem { id inventoryLevel(locationId: $locationId) { quantities(names: ["available"]) { name quantity } } }
  }
}
"""
# A reconciliation's page of a location's levels: 2 + first points.
READ_LOCATION_LEVELS = """
query locationLevels($locationId: ID!, $first: Int!, $after: String) {
  location(id: $locationId) {
    inventoryLevels(first: $first, after: $after) {
      nodes { item { id } quantities(names: ["available"]) { name quantity } }
      pageInfo { hasNextPage endCursor }
    }
  }
}
"""
# A compare-and-set refused: the channel's number moved (a sale we have not heard of yet).
STALE_CODES = {"CHANGE_FROM_QUANTITY_STALE", "COMPARE_QUANTITY_STALE"}
# Top-level GraphQL error codes of Shopify's own failures: tried again later, not parked.
TRANSIENT_CODES = {"INTERNAL_SERVER_ERROR", "SERVICE_UNAVAILABLE"}
LEVELS_PAGE = 250
_NEXT_LINK = re.compile(r'<([^>]+)>;\s*rel="next"')


def _gid(kind: str, value: str) -> str:
    return value if value.startswith("gid://") else f"gid://shopify/{kind}/{value}"


class ShopifyAdapter(ChannelAdapter):
    kind = "shopify"

    @property
    def max_batch(self) -> int:  # type: ignore[override]
        return 250 if self.use_graphql else 1

    @property
    def use_graphql(self) -> bool:
        return self.channel.credentials.get("api", "graphql") == "graphql"

    @property
    def api_version(self) -> str:
        return self.channel.credentials.get("api_version", API_VERSION)

    def _headers(self) -> dict[str, str]:
        return {"X-Shopify-Access-Token": self.channel.credentials.get("access_token", ""),
                "Content-Type": "application/json"}

    # -- inbound --------------------------------------------------------------------------
    def delivery(self, headers: Mapping[str, str], payload: Any) -> Delivery:
        webhook_id = headers.get("X-Shopify-Webhook-Id", "")
        topic = headers.get("X-Shopify-Topic", "")
        if not webhook_id or not topic:
            raise PayloadError("X-Shopify-Webhook-Id and X-Shopify-Topic are required.")
        return Delivery(dedup_key=webhook_id, delivery_id=webhook_id, topic=topic,
                        occurred_at=parse_time(headers.get("X-Shopify-Triggered-At")))

    def commands(self, topic: str, payload: Any) -> list[Command]:
        if not isinstance(payload, dict):
            raise PayloadError("Shopify payloads are JSON objects.")
        try:
            if topic in ("orders/create", "orders/paid"):
                return [OrderPlaced(
                    external_id=str(payload["id"]), name=str(payload.get("name", "")),
                    currency=str(payload.get("currency", "USD"))[:3], total=Decimal(str(payload.get("total_price", "0"))),
                    placed_at=parse_time(payload.get("created_at")),
                    lines=[OrderLineIn(
                        external_id=str(item["id"]), quantity=int(item["quantity"]),
                        unit_price=Decimal(str(item.get("price", "0"))),
                        listing=ListingRef(sku=str(item.get("sku") or ""), variant_id=str(item.get("variant_id") or ""),
                                           product_id=str(item.get("product_id") or "")),
                    ) for item in payload.get("line_items", [])],
                )]
            if topic == "orders/cancelled":
                return [OrderCancelled(external_id=str(payload["id"]), restock=True)]
            if topic == "refunds/create":
                return [RefundCreated(
                    external_order_id=str(payload["order_id"]), refund_id=str(payload["id"]),
                    lines=[RefundLineIn(
                        external_line_id=str(line["line_item_id"]), quantity=int(line["quantity"]),
                        restock=line.get("restock_type") in ("return", "cancel", "legacy_restock")
                        and payload.get("restock", True) is not False,
                        external_location_id=str(line.get("location_id") or ""),
                    ) for line in payload.get("refund_line_items", [])],
                )]
            if topic == "inventory_levels/update":
                as_of = parse_time(payload.get("updated_at"))
                if as_of is None:
                    raise PayloadError("inventory_levels/update needs updated_at.")
                return [InventoryReported(listing=ListingRef(inventory_item_id=str(payload["inventory_item_id"])),
                                          available=int(payload["available"]), as_of=as_of,
                                          external_location_id=str(payload.get("location_id") or ""))]
        except (KeyError, TypeError, ValueError, ArithmeticError) as exc:
            raise PayloadError(f"{topic}: {type(exc).__name__} {exc}") from None
        return [Ignored(f"topic {topic} does not change stock or orders")]

    # -- outbound -------------------------------------------------------------------------
    def observe(self, response: requests.Response) -> None:
        # Only REST answers carry it: on a GraphQL channel they are its catalog calls, drawn on the REST bucket.
        used, _, limit = response.headers.get("X-Shopify-Shop-Api-Call-Limit", "").partition("/")
        if used.isdigit() and limit.isdigit():
            self.catalog_limiter.observe_remaining(int(limit) - int(used))
        elif response.status_code == 200 and response.content.startswith(b'{"errors"'):
            # GraphQL answers Shopify's own failure 200, the error in the body: raised here, inside the send, it is
            # tried again there as a 5xx is (the same request: its idempotency key makes that safe). Raised after
            # the send, each cost the listing a backoff, and under 5% of 5xx a chaos run took 32 s, not 7, to
            # converge once the faults stopped.
            codes = {(e.get("extensions") or {}).get("code") for e in (response.json().get("errors") or [])
                     if isinstance(e, dict)}
            if codes & TRANSIENT_CODES:
                raise TransientError(f"GraphQL errors: {sorted(c for c in codes if c)}", status=200)

    @cached_property
    def catalog_limiter(self) -> RateLimiter:
        """A GraphQL store's catalog goes through REST (variants, products), whose limit is its own: a bucket of 40
        calls leaking 2 a second, apart from GraphQL's points. Paced by the GraphQL bucket, a catalog of 45 names
        went out at once and REST refused 5 of them (review finding, 2026-12-08)."""
        if not self.use_graphql:
            return self.limiter
        return with_margin(f"channel:{self.channel.pk}:rest", *DEFAULT_RATE_LIMITS[ChannelKind.SHOPIFY])

    def _graphql(self, query: str, variables: dict, *, observe_cost: bool = False, spent_first: int = 0) -> dict:
        """One GraphQL call: its answer's body, or RateLimited (THROTTLED) or PermanentError (other top-level errors).
        ``observe_cost``: a push, whose cost is what the bucket counts a call at. ``spent_first``: the points the
        attempt after a THROTTLED spends before it comes back to this call (a conflict's re-read follows the
        mutation): the wait covers them too."""
        response = self.request("POST", f"/admin/api/{self.api_version}/graphql.json", headers=self._headers(),
                                json={"query": query, "variables": variables})
        body = response.json()
        if observe_cost:
            self._observe_cost(body)
        if body.get("errors"):
            codes = {(e.get("extensions") or {}).get("code") for e in body["errors"]}
            if "THROTTLED" in codes:
                raise RateLimited("GraphQL THROTTLED", retry_after=_throttled_for(body, spent_first), status=200)
            if codes & TRANSIENT_CODES:  # Shopify's own failure, answered 200: gone on a later attempt
                raise TransientError(f"GraphQL errors: {body['errors']}"[:500], status=response.status_code)
            raise PermanentError(f"GraphQL errors: {body['errors']}"[:500], status=response.status_code)
        return body

    def _observe_cost(self, body: dict, *, per_call: float | None = None) -> None:
        """GraphQL's limit is in cost points, told in the body (``extensions.cost.throttleStatus``), not in a header;
        the bucket counts calls, so what is left is the points available over what a push asks for (this call's
        cost, or ``per_call`` for a call that is not a push). Other apps of the shop draw on the same points:
        without this, the bucket believed it had calls the shop no longer had and learned otherwise from THROTTLED
        answers."""
        asked, available, _ = _cost(body)
        per_call = per_call or asked
        if per_call is not None and available is not None and per_call > 0:
            self.limiter.observe_remaining(available // per_call)

    def _location(self, item: PushItem) -> str:
        location = item.listing.external_location_id or self.channel.publish_location_id
        if not location:
            raise PermanentError("No Shopify location id: set the channel's publish location.")
        return location

    def push(self, items: list[PushItem]) -> list[PushResult]:
        if self.use_graphql:
            return self._push_graphql(items)
        return [self._push_rest(item) for item in items]

    def _push_rest(self, item: PushItem) -> PushResult:
        response = self.request(
            "POST", f"/admin/api/{self.api_version}/inventory_levels/set.json", headers=self._headers(),
            json={"location_id": int(self._location(item)), "inventory_item_id": int(item.listing.external_inventory_item_id),
                  "available": item.quantity})
        level = response.json().get("inventory_level", {})
        return PushResult(listing_id=item.listing.id, ok=True, quantity=int(level.get("available", item.quantity)),
                          http_status=response.status_code)

    def _push_graphql(self, items: list[PushItem]) -> list[PushResult]:
        # Every quantity names the number we believe the channel holds, null where we do not know it (never pushed,
        # or unsure): that one alone opts out of the check. ignoreCompareQuantity opted the whole request in or out,
        # so one unknown number among known ones was refused COMPARE_QUANTITY_REQUIRED; 2026-04 removed it.
        quantities = [{"inventoryItemId": _gid("InventoryItem", item.listing.external_inventory_item_id),
                       "locationId": _gid("Location", self._location(item)), "quantity": item.quantity,
                       "changeFromQuantity": item.expected_remote} for item in items]
        variables = {"input": {"name": "available", "reason": "correction", "quantities": quantities},
                     "idempotencyKey": str(uuid.uuid4())}
        body = self._graphql(SET_QUANTITIES, variables, observe_cost=True)
        errors = (((body.get("data") or {}).get("inventorySetQuantities") or {}).get("userErrors")) or []
        if not errors:
            return [PushResult(listing_id=i.listing.id, ok=True, quantity=i.quantity, http_status=200) for i in items]
        codes = {str(e.get("code", "")) for e in errors}
        if codes & {"IDEMPOTENCY_CONCURRENT_REQUEST"}:
            raise TransientError(f"inventorySetQuantities userErrors: {errors}"[:500], status=200)
        if codes & STALE_CODES:
            # Someone changed the channel since we last looked (usually a sale we have not heard of yet): read what
            # it holds now; the push service reconciles and retries. Each error names its item's index (``field``:
            # input, quantities, i, ...): only those are read, at 1 + 2 points an item, where reading the whole
            # request cost 1 + 2 per item of it (up to 250) and ran the channel out of points. The others were
            # refused only with them and keep what we expected.
            named = {int(e["field"][2]) for e in errors
                     if isinstance(e.get("field"), list) and len(e["field"]) > 2 and str(e["field"][2]).isdigit()}
            named = {i for i in named if i < len(items)} or set(range(len(items)))
            suspects = [items[i] for i in sorted(named)]
            remote = self.read_levels([i.listing.external_inventory_item_id for i in suspects],
                                      {self._location(i) for i in suspects})
            results = []
            for index, item in enumerate(items):
                if index not in named:
                    results.append(PushResult(listing_id=item.listing.id, ok=False, remote_quantity=item.expected_remote,
                                              error=BATCH_REFUSED, http_status=200))
                    continue
                actual = remote.get(item.listing.external_inventory_item_id)
                stale = actual is not None and actual != item.expected_remote
                # Named by an error but not found stale (another error, or the count came back meanwhile): a
                # failure of its own, retried after a backoff like any other, never taken for an innocent bystander.
                results.append(PushResult(listing_id=item.listing.id, ok=False, conflict=stale, remote_quantity=actual,
                                          error="changeFromQuantity is stale" if stale else
                                          f"refused: {[e.get('message') for e in errors]}"[:500], http_status=200))
            return results
        raise PermanentError(f"inventorySetQuantities userErrors: {errors}"[:500], status=200)

    publishes_catalog = True
    catalog_batch = 20

    def catalog_requests_needed(self, items: list) -> int:
        return sum((item.price is not None) + (item.name is not None or item.active is not None) for item in items) or 1

    def publish_catalog(self, items: list) -> None:
        # REST, one variant (price) or product (title, status) per call; the shared bucket paces them.
        for item in items:
            if item.price is not None:
                self.request("PUT", f"/admin/api/{self.api_version}/variants/{item.listing.external_variant_id}.json",
                             headers=self._headers(),
                             json={"variant": {"id": int(item.listing.external_variant_id), "price": f"{item.price:.2f}"}})
            if item.name is not None or item.active is not None:
                product: dict = {"id": int(item.listing.external_product_id)}
                if item.name is not None:
                    product["title"] = item.name
                if item.active is not None:
                    product["status"] = "active" if item.active else "draft"
                self.request("PUT", f"/admin/api/{self.api_version}/products/{item.listing.external_product_id}.json",
                             headers=self._headers(), json={"product": product})

    def read_levels(self, inventory_item_ids: list[str], location_ids: set[str]) -> dict[str, int]:
        if self.use_graphql:
            return self._read_levels_graphql(inventory_item_ids, location_ids)
        found: dict[str, int] = {}
        for level in self._levels({"inventory_item_ids": ",".join(inventory_item_ids),
                                   "location_ids": ",".join(sorted(location_ids)), "limit": 250}):
            found[str(level["inventory_item_id"])] = int(level.get("available") or 0)
        return found

    def _read_levels_graphql(self, inventory_item_ids: list[str], location_ids: set[str]) -> dict[str, int]:
        """What a compare-and-set conflict re-reads, through GraphQL like the push itself: its cost points, not the
        REST bucket (40 calls, 2 a second), which a channel in conflict several times a second emptied; its 429s
        then blocked the channel's every push for the Retry-After."""
        found: dict[str, int] = {}
        asked = {_gid("InventoryItem", i): i for i in inventory_item_ids}  # answered by gid, kept as stored
        gids = list(asked)
        # THROTTLED, the push comes back through its mutation and the reads answered before this one: the wait
        # must find points for all of them, or a re-read costing more than the mutation leaves after the wait is
        # refused for ever (at 200 orders/s a channel whose 47 listings were all stale, 95 points a read, stayed
        # behind until the run ended; listings at two locations, or over 250, are two reads or more).
        spent = MUTATION_COST
        for location in sorted(location_ids):
            for start in range(0, len(gids), 250):
                ids = gids[start:start + 250]
                # Paid from the bucket, which counts calls at a mutation's cost: 1 + 2 points an item.
                self.take_tokens((1 + 2 * len(ids)) / MUTATION_COST, what="compare-and-set re-read")
                body = self._graphql(READ_LEVELS, {"ids": ids, "locationId": _gid("Location", location)},
                                     spent_first=spent)
                self._observe_cost(body, per_call=MUTATION_COST)
                spent += _spent(body)
                for node in (body.get("data") or {}).get("nodes") or []:
                    level = (node or {}).get("inventoryLevel")
                    if level:
                        available = next((q["quantity"] for q in level.get("quantities") or []
                                          if q.get("name") == "available"), None)
                        if available is not None and node.get("id") in asked:
                            found[asked[node["id"]]] = int(available)
        return found

    def _levels(self, params: dict) -> Iterator[dict]:
        url = f"/admin/api/{self.api_version}/inventory_levels.json"
        while url:
            response = self.read("GET", url, headers=self._headers(), params=params)
            yield from response.json().get("inventory_levels", [])
            match = _NEXT_LINK.search(response.headers.get("Link", ""))
            if not match:
                return
            url, params = match.group(1).removeprefix(self.base_url), {}

    def read_stock(self) -> Iterator[RemoteLevel]:
        location = self.channel.publish_location_id
        if not location:
            raise ChannelError("No Shopify publish location configured.")
        if self.use_graphql:
            yield from self._read_stock_graphql(location)
            return
        for level in self._levels({"location_ids": location, "limit": 250}):
            yield RemoteLevel(ref={"inventory_item_id": str(level["inventory_item_id"])},
                              quantity=int(level.get("available") or 0))

    def _read_stock_graphql(self, location: str) -> Iterator[RemoteLevel]:
        """Through GraphQL, on the points the channel's bucket counts: read through REST, a GraphQL store's
        reconciliation drew on a second limit no bucket of ours followed (40 calls leaking 2 a second: a store of
        over 10,000 items was refused 429 part way)."""
        after = None
        while True:
            self.take_tokens((2 + LEVELS_PAGE) / MUTATION_COST, what="reconciliation page")
            body = self._graphql(READ_LOCATION_LEVELS, {"locationId": _gid("Location", location),
                                                        "first": LEVELS_PAGE, "after": after})
            self._observe_cost(body, per_call=MUTATION_COST)
            levels = (((body.get("data") or {}).get("location") or {}).get("inventoryLevels")) or {}
            for node in levels.get("nodes") or []:
                item_id = str(((node or {}).get("item") or {}).get("id") or "").rpartition("/")[2]
                available = next((q.get("quantity") for q in node.get("quantities") or []
                                  if q.get("name") == "available"), None)
                if item_id and available is not None:
                    yield RemoteLevel(ref={"inventory_item_id": item_id}, quantity=int(available))
            page = levels.get("pageInfo") or {}
            if not page.get("hasNextPage") or not page.get("endCursor"):
                return
            after = page["endCursor"]


def _throttled_for(body: dict, spent_first: int = 0) -> float:
    """Seconds until the shop has the points a THROTTLED call asked for, GraphQL's Retry-After: the answer says what
    the call asked for, what is left and the restore rate (``extensions.cost``). A second when it does not say.
    Until 2026-12-07 every THROTTLED waited a second: a channel a few points short, which 100 points a second
    restore in tens of milliseconds, stopped pushing for a second (at 200 orders/s, about a hundred times a run)."""
    asked, left, rate = _cost(body)
    if asked is None or left is None or rate is None or rate <= 0:
        return 1.0
    return min(max((asked + spent_first - left) / rate, THROTTLED_MIN_WAIT), 60.0)


def _spent(body: dict) -> float:
    """Points an answered GraphQL call cost the shop: its actual cost, else what it asked for (0 if not said)."""
    cost = (body.get("extensions") or {}).get("cost") or {}
    for value in (cost.get("actualQueryCost"), cost.get("requestedQueryCost")):
        if isinstance(value, int | float):
            return value
    return 0


def _cost(body: dict) -> tuple[float | None, float | None, float | None]:
    """What a GraphQL answer says of its cost (``extensions.cost``): points the call asked for, points the shop has
    left, points restored a second; None for each it does not say."""
    cost = (body.get("extensions") or {}).get("cost") or {}
    status = cost.get("throttleStatus") or {}
    return tuple(value if isinstance(value, int | float) else None for value in (
        cost.get("requestedQueryCost"), status.get("currentlyAvailable"), status.get("restoreRate")))
