"""Thin views: validate, call ``tax_app.engine``, answer."""

from __future__ import annotations

import json
from decimal import Decimal

from django.conf import settings
from drf_spectacular.utils import OpenApiResponse, extend_schema
from rest_framework.exceptions import ParseError
from rest_framework.parsers import JSONParser
from rest_framework.response import Response
from rest_framework.views import APIView

from tax_app import engine
from tax_app.api import serializers as s
from tax_app.providers.base import TaxError


class DecimalJSONParser(JSONParser):
    """JSON numbers become Decimals as parsed, so a price never passes through float."""

    def parse(self, stream, media_type=None, parser_context=None):
        encoding = (parser_context or {}).get("encoding", settings.DEFAULT_CHARSET)
        try:
            return json.loads(stream.read().decode(encoding), parse_float=Decimal, parse_constant=self._refuse)
        except (ValueError, UnicodeDecodeError) as exc:
            raise ParseError(f"JSON parse error - {exc}") from exc

    @staticmethod
    def _refuse(name: str):
        raise ValueError(f"{name} is not a number")


class CalculateView(APIView):
    parser_classes = [DecimalJSONParser]

    @extend_schema(
        request=s.CalculateSerializer,
        responses={200: s.TaxResultSerializer,
                   400: OpenApiResponse(description="Field errors, or a tax_error with a code"),
                   422: OpenApiResponse(s.TaxErrorSerializer, description="No rates for the address")},
        summary="Calculate tax for a checkout",
        tags=["tax"],
    )
    def post(self, request):
        data = s.CalculateSerializer(data=request.data)
        data.is_valid(raise_exception=True)
        try:
            result = engine.calculate(request=data.to_request(), on_date=data.validated_data.get("on_date"))
        except TaxError as exc:
            return Response(exc.as_dict(), status=exc.http_status)
        return Response(s.TaxResultSerializer(result).data)
