"""Each platform's signature, produced the documented way, verifies; anything else is refused."""

from __future__ import annotations

from datetime import UTC, datetime, timedelta

import pytest
from django.utils import timezone

from channels_app.models import Channel
from channels_app.signatures import SignatureError, verify
from tests.channels.helpers import STANDARD_SECRET, shopify_headers, standard_headers, woo_headers

BODY = b'{"id": 1, "line_items": []}'


def channel(kind: str, secret: str, **extra) -> Channel:
    return Channel(slug=kind, kind=kind, webhook_secret=secret, **extra)


def test_shopify_hmac_base64_over_raw_body():
    verify(channel("shopify", "abc"), shopify_headers("abc", BODY, "orders/create"), BODY)
    with pytest.raises(SignatureError) as info:
        verify(channel("shopify", "abc"), shopify_headers("abc", BODY, "orders/create"), BODY + b" ")
    assert info.value.reason == "bad_signature"
    with pytest.raises(SignatureError):
        verify(channel("shopify", "other"), shopify_headers("abc", BODY, "orders/create"), BODY)


def test_woocommerce_hmac():
    verify(channel("woocommerce", "wc"), woo_headers("wc", BODY, "order.created", 1), BODY)
    with pytest.raises(SignatureError):
        verify(channel("woocommerce", "wc"), woo_headers("nope", BODY, "order.created", 1), BODY)


def test_standard_webhooks_reference_library_signatures_verify():
    verify(channel("standard", STANDARD_SECRET), standard_headers(STANDARD_SECRET, BODY), BODY)


def test_standard_webhooks_timestamp_window_is_five_minutes():
    old = datetime.now(UTC) - timedelta(minutes=6)
    with pytest.raises(SignatureError) as info:
        verify(channel("standard", STANDARD_SECRET), standard_headers(STANDARD_SECRET, BODY, when=old), BODY)
    assert info.value.reason == "stale_timestamp"
    future = datetime.now(UTC) + timedelta(minutes=6)
    with pytest.raises(SignatureError):
        verify(channel("standard", STANDARD_SECRET), standard_headers(STANDARD_SECRET, BODY, when=future), BODY)
    almost = datetime.now(UTC) - timedelta(minutes=4)
    verify(channel("standard", STANDARD_SECRET), standard_headers(STANDARD_SECRET, BODY, when=almost), BODY)


def test_standard_signature_list_may_hold_several_entries():
    headers = standard_headers(STANDARD_SECRET, BODY)
    headers["webhook-signature"] = "v1,AAAA " + headers["webhook-signature"]
    verify(channel("standard", STANDARD_SECRET), headers, BODY)


def test_bigcommerce_standard_or_registered_header():
    verify(channel("bigcommerce", STANDARD_SECRET), standard_headers(STANDARD_SECRET, BODY), BODY)
    verify(channel("bigcommerce", "hook-token"), {"X-Tally-Hook-Token": "hook-token"}, BODY)
    with pytest.raises(SignatureError):
        verify(channel("bigcommerce", "hook-token"), {"X-Tally-Hook-Token": "wrong"}, BODY)


def test_amazon_relay_bearer_token():
    verify(channel("amazon", "relay-token"), {"Authorization": "Bearer relay-token"}, BODY)
    with pytest.raises(SignatureError):
        verify(channel("amazon", "relay-token"), {"Authorization": "Bearer nope"}, BODY)


def test_rotation_accepts_previous_secret_until_it_expires():
    now = timezone.now()
    rotating = channel("shopify", "new", previous_webhook_secret="old", previous_secret_expires_at=now + timedelta(hours=1))
    verify(rotating, shopify_headers("old", BODY, "orders/create"), BODY)
    verify(rotating, shopify_headers("new", BODY, "orders/create"), BODY)
    with pytest.raises(SignatureError):
        verify(rotating, shopify_headers("old", BODY, "orders/create"), BODY, now=now + timedelta(hours=2))


def test_missing_headers_and_no_secret():
    with pytest.raises(SignatureError) as info:
        verify(channel("shopify", "abc"), {}, BODY)
    assert info.value.reason == "missing_header"
    with pytest.raises(SignatureError) as info:
        verify(channel("shopify", ""), shopify_headers("abc", BODY, "orders/create"), BODY)
    assert info.value.reason == "no_secret"
