"""Amazon Selling Partner API: no webhooks (notifications are relayed from a queue); stock per SKU by PATCH."""

from __future__ import annotations

import hashlib
import math
from collections.abc import Mapping
from decimal import Decimal
from typing import Any
from urllib.parse import quote

import requests

from channels_app.adapters import http
from channels_app.adapters.base import ChannelAdapter, Delivery, PayloadError, PushItem, PushResult, parse_time
from channels_app.adapters.http import PermanentError
from channels_app.commands import Command, Ignored, ListingRef, OrderCancelled, OrderLineIn, OrderPlaced
from channels_app.ratelimit import RateLimiter
from hub.redis import get_redis

LWA_TOKEN_URL = "https://api.amazon.com/auth/o2/token"
# An access token is taken for new this long before Login with Amazon says it expires (clocks, a call in flight).
TOKEN_MARGIN_SECONDS = 60
# The seller's usage plan for the operation, in requests per second ("1.0", "0.0055"), on Amazon's answers (best
# effort: 2xx, 400 and 404 ones). Plans differ per account and are lowered dynamically: paced by the published 5 a
# second, a channel on a plan of 1 had most of its pushes refused 429.
RATE_HEADER = "x-amzn-RateLimit-Limit"
# Where the announced rate is kept: a field of the channel's bucket (its hash in Redis), so every worker's adapter
# paces by it from its first request, and it goes when the bucket is reset.
ANNOUNCED_FIELD = "announced_rate"


def _rate(value) -> float | None:
    """An announced rate (header text, or the bytes kept in Redis) as a positive finite number; else None."""
    try:
        rate = float(value)
    except (TypeError, ValueError):
        return None
    return rate if math.isfinite(rate) and rate > 0 else None


def _money(value) -> Decimal:
    """SP-API money is an object {"CurrencyCode", "Amount"}; tolerate a bare amount too."""
    if isinstance(value, dict):
        value = value.get("Amount")
    return Decimal(str(value or "0"))


class AmazonAdapter(ChannelAdapter):
    kind = "amazon"
    max_batch = 1  # patchListingsItem is one SKU per call, 5 per second

    # -- rate: the bucket paced by what Amazon announces ---------------------------------------------
    # The announced rate is read from Redis when the limiter is first used, not when the adapter is made: inbound
    # processing makes adapters too, and must not need Redis (nor pay a round trip per notification).
    @property
    def limiter(self) -> RateLimiter:
        if not self._paced:
            self._paced = True
            self._pace(_rate(get_redis().hget(self._limiter.key, ANNOUNCED_FIELD)))
        return self._limiter

    @limiter.setter
    def limiter(self, value: RateLimiter) -> None:
        self._limiter = value
        self._published = (value.capacity, value.per_second)  # limiter_for's, from the channel's own limit
        self._announced: float | None = None
        self._paced = False

    def _pace(self, announced: float | None) -> None:
        """Scale the bucket to the announced rate; the burst with it, as Amazon does not say its own (a plan
        lowered to a fifth is taken as a fifth of the burst too: never more than the bucket had). Never above the
        channel's limit: a plan raised is for the operator to set on the channel, the header only slows us down."""
        self._announced = announced
        capacity, per_second = self._published
        published = self.channel.rate_limit[1]
        share = 1.0 if announced is None or published <= 0 else min(announced / published, 1.0)
        self._limiter.per_second = per_second * share
        self._limiter.capacity = max(int(capacity * share), 1)

    def observe(self, response: requests.Response) -> None:
        announced = _rate(response.headers.get(RATE_HEADER))
        if announced is None or (self._paced and announced == self._announced):
            return
        self._paced = True  # fresher than what Redis holds
        self._pace(announced)
        with get_redis().pipeline(transaction=False) as pipe:
            pipe.hset(self._limiter.key, ANNOUNCED_FIELD, repr(announced))
            pipe.pexpire(self._limiter.key, 3_600_000)  # as the bucket's scripts do: it goes when unused for an hour
            pipe.execute()

    def _headers(self, token: str | None = None) -> dict[str, str]:
        return {"x-amz-access-token": token or self._access_token(), "Content-Type": "application/json"}

    # -- access: Login with Amazon ------------------------------------------------------------------
    # An app authorised by the seller holds a refresh token; each call carries an access token, which Login with
    # Amazon exchanges it for and which lives an hour. A fixed access token in the credentials (all there was) made
    # every push fail 403, and park, an hour after it was set. Kept in Redis for every worker, until shortly
    # before it expires; a static ``access_token`` alone is still used as it is (a sandbox, a proxy that signs).
    def _access_token(self, *, fresh: bool = False) -> str:
        credentials = self.channel.credentials
        if not credentials.get("refresh_token"):
            return credentials.get("access_token", "")
        redis, key = get_redis(), self._token_key()
        if not fresh:
            cached = redis.get(key)
            if cached:
                return cached.decode()
        response = http.send(self.session, "POST", credentials.get("lwa_token_url") or LWA_TOKEN_URL, data={
            "grant_type": "refresh_token", "refresh_token": credentials["refresh_token"],
            "client_id": credentials.get("lwa_client_id", ""), "client_secret": credentials.get("lwa_client_secret", "")})
        answer = response.json()
        token, lives = str(answer["access_token"]), int(answer.get("expires_in", 3600))
        redis.set(key, token, ex=max(lives - TOKEN_MARGIN_SECONDS, 1))
        return token

    def _token_key(self) -> str:
        """Where the access token is kept: for these credentials and this address only. Kept per channel alone, a
        token went to the new host after the channel's address and credentials were changed (review finding): the
        API asks for the credentials again with a new address so that nothing issued for one host reaches another."""
        credentials = self.channel.credentials
        given = "\n".join([self.channel.api_base_url, credentials.get("lwa_token_url") or LWA_TOKEN_URL,
                           credentials.get("lwa_client_id", ""), credentials.get("refresh_token", "")])
        return f"tally:amazon:lwa:{self.channel.pk}:{hashlib.sha256(given.encode()).hexdigest()[:16]}"

    def _sp_api(self, method: str, path: str, **kwargs) -> requests.Response:
        """A Selling Partner API call with the current access token; refused 403 with a token from Login with Amazon
        (revoked or expired before its time: the seller authorised the app again), once more with a new one."""
        try:
            return self.request(method, path, headers=self._headers(), **kwargs)
        except PermanentError as exc:
            if exc.status != 403 or not self.channel.credentials.get("refresh_token"):
                raise
            token = self._access_token(fresh=True)
            self.take_tokens(1, what=f"{method} {path} again with a new access token")
            return self.request(method, path, headers=self._headers(token), **kwargs)

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
            response = self._sp_api("PATCH", f"/listings/2021-08-01/items/{quote(self.seller_id, safe='')}/"
                                             f"{quote(sku, safe='')}",
                                    params={"marketplaceIds": marketplace}, json=body)
            answer = response.json()
            if answer.get("status") != "ACCEPTED":
                raise PermanentError(f"patchListingsItem {sku}: {answer.get('status')} {answer.get('issues')}"[:500],
                                     status=response.status_code)
            results.append(PushResult(listing_id=item.listing.id, ok=True, quantity=item.quantity,
                                      http_status=response.status_code))
        return results
