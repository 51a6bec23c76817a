"""HTTP Idempotency-Key, as the IETF httpapi draft describes it.

The first response for (user, key) is stored and replayed; a repeat with a
different body is 422; a repeat while the first is still running is 409. A
5xx or a crash frees the key so the client can try again.
"""

from __future__ import annotations

import hashlib
import json
from collections.abc import Callable
from datetime import timedelta

from django.conf import settings
from django.db import IntegrityError, transaction
from django.utils import timezone
from rest_framework.request import Request
from rest_framework.response import Response

from inventory_app.errors import StockError
from inventory_app.models import IdempotencyKey, IdempotencyStatus

HEADER = "Idempotency-Key"


def request_fingerprint(request: Request) -> str:
    body = json.dumps(request.data, sort_keys=True, default=str)
    return hashlib.sha256(f"{request.method} {request.path}\n{body}".encode()).hexdigest()


def domain_key(owner: str, key: str) -> str:
    """The stock operation's key for a caller's Idempotency-Key: within the 255 characters the ledger keeps (a key
    near 255 characters made it longer, and the database's refusal a 500)."""
    plain = f"api:{owner}:{key}"
    return plain if len(plain) <= 255 else f"api:{owner}:sha256:{hashlib.sha256(key.encode()).hexdigest()}"


def idempotent(request: Request, handler: Callable[[str | None], Response]) -> Response:
    """Run ``handler(domain_key)`` at most once per Idempotency-Key."""
    key = request.headers.get(HEADER)
    if not key:
        return handler(None)
    if len(key) > 255:
        return Response({"code": "invalid_idempotency_key", "detail": "Idempotency-Key is longer than 255."},
                        status=400)
    owner = str(request.user.pk)
    fingerprint = request_fingerprint(request)
    now = timezone.now()
    try:
        with transaction.atomic():
            record = IdempotencyKey.objects.create(owner=owner, key=key, fingerprint=fingerprint, locked_at=now)
    except IntegrityError:
        record = IdempotencyKey.objects.filter(owner=owner, key=key).first()
        if record is None:  # the request holding it failed and let it go just now: the caller may send again
            return Response({"code": "idempotency_key_in_use",
                             "detail": "A request with this Idempotency-Key was being processed; send it again."},
                            status=409)
        if record.fingerprint != fingerprint:
            return Response({"code": "idempotency_key_reused",
                             "detail": "This Idempotency-Key was used with a different request."}, status=422)
        if record.status == IdempotencyStatus.DONE:
            response = Response(record.response_body, status=record.response_status)
            response["Idempotent-Replayed"] = "true"
            return response
        stale_before = now - timedelta(seconds=settings.TALLY_IDEMPOTENCY_LOCK_SECONDS)
        taken = IdempotencyKey.objects.filter(
            pk=record.pk, status=IdempotencyStatus.IN_PROGRESS, locked_at=record.locked_at, locked_at__lt=stale_before
        ).update(locked_at=now)
        if not taken:
            return Response({"code": "idempotency_key_in_use",
                             "detail": "A request with this Idempotency-Key is still being processed."}, status=409)
    try:
        try:
            response = handler(domain_key(owner, key))
        except StockError as exc:
            # A domain refusal is a result like any other: the repeat gets the same answer.
            response = Response(exc.as_dict(), status=exc.http_status)
    except BaseException:
        IdempotencyKey.objects.filter(owner=owner, key=key).delete()
        raise
    if response.status_code >= 500:
        IdempotencyKey.objects.filter(owner=owner, key=key).delete()
        return response
    IdempotencyKey.objects.filter(owner=owner, key=key).update(
        status=IdempotencyStatus.DONE, response_status=response.status_code, response_body=response.data
    )
    return response
