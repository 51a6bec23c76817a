"""``POST /webhooks/<channel-slug>/``: each platform's native format, verified over the raw body."""

from __future__ import annotations

from django.core.exceptions import RequestDataTooBig
from django.http import HttpRequest, JsonResponse
from django.views.decorators.csrf import csrf_exempt
from django.views.decorators.http import require_POST

from channels_app import inbound


@csrf_exempt
@require_POST
def receive(request: HttpRequest, slug: str) -> JsonResponse:
    remote_addr = request.META.get("REMOTE_ADDR", "")
    declared = request.headers.get("Content-Length", "")
    try:
        if declared.isdigit() and int(declared) > inbound.MAX_BODY_BYTES:
            raise RequestDataTooBig
        body = request.body
    except RequestDataTooBig:
        receipt = inbound.reject_oversized(slug=slug, headers=request.headers, remote_addr=remote_addr)
    else:
        receipt = inbound.receive_webhook(slug=slug, headers=request.headers, body=body, remote_addr=remote_addr)
    return JsonResponse(receipt.body, status=receipt.status)
