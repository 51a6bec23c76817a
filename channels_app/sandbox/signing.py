"""Signatures the sandboxes put on outgoing webhooks, each exactly as its platform documents it."""

from __future__ import annotations

import base64
import hashlib
import hmac
from datetime import UTC, datetime

from standardwebhooks import Webhook


def hmac_sha256_b64(secret: str | None, body: bytes) -> str:
    """Shopify and WooCommerce: base64(HMAC-SHA256(key=secret as UTF-8, msg=raw body))."""
    return base64.b64encode(hmac.new((secret or "").encode(), body, hashlib.sha256).digest()).decode()


def standard_webhook(secret: str) -> Webhook:
    """A ``whsec_`` secret is decoded as the spec says; any other string is used as raw key bytes."""
    if secret.startswith("whsec_"):
        return Webhook(secret)
    return Webhook(secret.encode())


def standard_headers(secret: str, msg_id: str, body: bytes, when: datetime | None = None) -> dict[str, str]:
    when = when or datetime.now(UTC)
    signature = standard_webhook(secret).sign(msg_id=msg_id, timestamp=when, data=body.decode())
    return {
        "webhook-id": msg_id,
        "webhook-timestamp": str(int(when.timestamp())),
        "webhook-signature": signature,
    }
