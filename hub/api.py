"""API-wide error handling: domain errors become 4xx with a code and a reason, never a 500."""

from __future__ import annotations

from rest_framework.response import Response
from rest_framework.views import exception_handler as drf_exception_handler

from hub.errors import DomainError


def exception_handler(exc, context):
    if isinstance(exc, DomainError):
        return Response(exc.as_dict(), status=exc.http_status)
    return drf_exception_handler(exc, context)
