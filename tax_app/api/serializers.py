from __future__ import annotations

import re
from decimal import Decimal

from rest_framework import serializers

from tax_app.money import MINOR_UNITS
from tax_app.providers.base import Address, LineItem, TaxRequest

US_ZIP = re.compile(r"^\d{5}(-\d{4})?$")
MAX_LINES = 1000
ZERO = Decimal("0")


class AddressSerializer(serializers.Serializer):
    country = serializers.RegexField(r"^[A-Za-z]{2}$", help_text="ISO 3166-1 alpha-2.")
    state = serializers.CharField(max_length=3, required=False, allow_blank=True, default="")
    zip = serializers.CharField(max_length=10, required=False, allow_blank=True, default="")
    city = serializers.CharField(max_length=128, required=False, allow_blank=True, default="")
    street = serializers.CharField(max_length=255, required=False, allow_blank=True, default="")

    def validate(self, attrs):
        attrs["country"] = attrs["country"].upper()
        attrs["state"] = attrs.get("state", "").strip().upper()
        attrs["zip"] = attrs.get("zip", "").strip()
        if attrs["country"] == "US":
            errors = {}
            if not re.fullmatch(r"[A-Z]{2}", attrs["state"]):
                errors["state"] = "A two-letter state code is required for US addresses."
            if not US_ZIP.match(attrs["zip"]):
                errors["zip"] = "A US ZIP code is five digits, optionally followed by -NNNN."
            if errors:
                raise serializers.ValidationError(errors)
        return attrs


class LineSerializer(serializers.Serializer):
    id = serializers.CharField(max_length=64)
    sku = serializers.CharField(max_length=64, required=False, allow_blank=True, default="")
    tax_code = serializers.CharField(max_length=32, required=False, allow_blank=True, default="")
    quantity = serializers.DecimalField(max_digits=14, decimal_places=4, min_value=Decimal("0.0001"))
    unit_price = serializers.DecimalField(max_digits=18, decimal_places=6, min_value=ZERO)
    discount = serializers.DecimalField(max_digits=18, decimal_places=6, min_value=ZERO, required=False, default=ZERO)

    def validate(self, attrs):
        if not attrs.get("sku") and not attrs.get("tax_code"):
            raise serializers.ValidationError({"sku": "Give a sku or a tax_code."})
        if attrs["discount"] > attrs["quantity"] * attrs["unit_price"]:
            raise serializers.ValidationError({"discount": "The discount exceeds quantity x unit_price."})
        return attrs


class CalculateSerializer(serializers.Serializer):
    currency = serializers.CharField(max_length=3)
    ship_from = AddressSerializer(required=False)
    ship_to = AddressSerializer()
    lines = LineSerializer(many=True, allow_empty=False, max_length=MAX_LINES)
    shipping = serializers.DecimalField(max_digits=18, decimal_places=6, min_value=ZERO, required=False, default=ZERO)
    customer_exemption = serializers.CharField(max_length=128, required=False, allow_blank=True, default="",
                                               help_text="Customer id; exempt only where a certificate is on file.")
    on_date = serializers.DateField(required=False, help_text="Rates in force on this date (default: today, UTC).")

    def validate_currency(self, value: str) -> str:
        value = value.upper()
        if value not in MINOR_UNITS:
            raise serializers.ValidationError(f"Unsupported currency {value!r}.")
        return value

    def validate_lines(self, value):
        ids = [line["id"] for line in value]
        if len(ids) != len(set(ids)):
            raise serializers.ValidationError("Line ids must be unique.")
        return value

    def to_request(self) -> TaxRequest:
        v = self.validated_data
        return TaxRequest(
            currency=v["currency"],
            ship_to=Address(**v["ship_to"]),
            ship_from=Address(**v["ship_from"]) if v.get("ship_from") else None,
            lines=tuple(LineItem(**line) for line in v["lines"]),
            shipping=v["shipping"],
            customer_exemption=v["customer_exemption"],
        )


def _decimal(**kwargs) -> serializers.DecimalField:
    return serializers.DecimalField(max_digits=None, decimal_places=None, coerce_to_string=True, **kwargs)


class JurisdictionTaxSerializer(serializers.Serializer):
    kind = serializers.ChoiceField(choices=["country", "state", "county", "city", "special"])
    code = serializers.CharField()
    name = serializers.CharField()
    rate = _decimal()
    taxable_amount = _decimal()
    tax = _decimal()


class LineTaxSerializer(serializers.Serializer):
    id = serializers.CharField()
    tax_code = serializers.CharField()
    amount = _decimal(help_text="quantity x unit_price - discount, rounded to the minor unit.")
    taxable_amount = _decimal()
    tax = _decimal()
    rate = _decimal(help_text="Sum of the rates of the jurisdictions that tax this line.")
    jurisdictions = JurisdictionTaxSerializer(many=True)


class TaxResultSerializer(serializers.Serializer):
    currency = serializers.CharField()
    on_date = serializers.DateField()
    total_tax = _decimal(help_text="Sum of line taxes and shipping tax = sum of the breakdown.")
    lines = LineTaxSerializer(many=True)
    shipping = LineTaxSerializer()
    breakdown = JurisdictionTaxSerializer(many=True)
    provider = serializers.CharField(help_text="Who answered: a provider name, 'local', or 'none' (no nexus/exempt).")
    cached = serializers.BooleanField()
    fallback = serializers.BooleanField()
    fallback_reason = serializers.CharField()
    nexus = serializers.BooleanField()
    exemption_applied = serializers.BooleanField()


class TaxErrorSerializer(serializers.Serializer):
    code = serializers.CharField()
    detail = serializers.CharField()
