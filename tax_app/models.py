"""Tax rate tables, jurisdictions, product tax codes and the rules that decide what is taxed where.

Rate tables are append-only history: an import creates a new ``RateTable`` (with its ``RateEntry`` rows)
for one scope (a US state, or the EU VAT set) and an effective window. Lookups pick the table whose
window contains the calculation date, so a future-dated table takes effect exactly on its date; the
``status`` field mirrors that for operators and is kept current by ``services.activate_due``. Nothing is
deleted: superseded tables stay for audit.
"""

from __future__ import annotations

from django.db import models
from django.db.models import F, Q

RATE = {"max_digits": 9, "decimal_places": 6}
MONEY = {"max_digits": 18, "decimal_places": 6}


class JurisdictionKind(models.TextChoices):
    COUNTRY = "country", "Country (VAT)"
    STATE = "state", "State"
    COUNTY = "county", "County"
    CITY = "city", "City"
    SPECIAL = "special", "Special district"


class RateSource(models.TextChoices):
    AVALARA_ZIP5 = "avalara_zip5", "Avalara ZIP5 rate table"
    WA_DOR = "wa_dor", "Effective-dated jurisdiction table (WA DOR style)"
    EU_VAT = "eu_vat", "EU VAT rates (eu-vat-rates-data)"


class TableStatus(models.TextChoices):
    SCHEDULED = "scheduled", "Scheduled (effective in the future)"
    ACTIVE = "active", "Active"
    SUPERSEDED = "superseded", "Superseded (kept for audit)"
    REPLACED = "replaced", "Replaced by a later import for the same date"


class RateTable(models.Model):
    source = models.CharField(max_length=16, choices=RateSource.choices)
    # "US-WA" for a state's tables, "EU-VAT" for VAT: a newer table replaces an older one in the same scope.
    scope = models.CharField(max_length=16, db_index=True)
    name = models.CharField(max_length=255, help_text="File name or URL it came from.")
    checksum = models.CharField(max_length=64, help_text="sha256 of the imported content; re-imports are no-ops.")
    effective_from = models.DateField()
    effective_to = models.DateField(null=True, blank=True, help_text="Exclusive; empty while current.")
    expires_on = models.DateField(null=True, blank=True, help_text="Expiration stated by the file itself.")
    status = models.CharField(max_length=16, choices=TableStatus.choices, default=TableStatus.SCHEDULED)
    row_count = models.PositiveIntegerField(default=0)
    # Breakdown codes of every jurisdiction in the table, to spot ones that vanish from the next table.
    jurisdiction_codes = models.JSONField(default=list, blank=True)
    imported_at = models.DateTimeField()
    activated_at = models.DateTimeField(null=True, blank=True)

    class Meta:
        ordering = ["scope", "-effective_from", "-imported_at"]
        indexes = [models.Index(fields=["scope", "effective_from"])]
        constraints = [
            models.CheckConstraint(
                condition=Q(effective_to__isnull=True) | Q(effective_to__gte=F("effective_from")),
                name="tax_rate_table_window_ordered",
            ),
        ]

    def __str__(self) -> str:
        return f"{self.scope} from {self.effective_from} ({self.get_status_display()})"


class RateEntry(models.Model):
    """One row of a table: the rates in force for a ZIP (US) or a country's VAT category (EU)."""

    table = models.ForeignKey(RateTable, on_delete=models.PROTECT, related_name="entries")
    country = models.CharField(max_length=2)
    state = models.CharField(max_length=3, blank=True)
    zip = models.CharField(max_length=10, blank=True)
    # ZIP+4 range a row covers (WA DOR files); blank covers the whole ZIP5.
    plus4_low = models.CharField(max_length=4, blank=True)
    plus4_high = models.CharField(max_length=4, blank=True)
    # VAT category ("standard", "reduced", ...) for EU rows; "standard" for US rows.
    category = models.CharField(max_length=16, default="standard")
    jurisdiction_code = models.CharField(max_length=64, help_text="Tax region name or location code.")
    region_name = models.CharField(max_length=128, blank=True)
    county_name = models.CharField(max_length=128, blank=True)
    city_name = models.CharField(max_length=128, blank=True)
    country_rate = models.DecimalField(**RATE, default=0)
    state_rate = models.DecimalField(**RATE, default=0)
    county_rate = models.DecimalField(**RATE, default=0)
    city_rate = models.DecimalField(**RATE, default=0)
    special_rate = models.DecimalField(**RATE, default=0)

    class Meta:
        verbose_name_plural = "rate entries"
        indexes = [
            models.Index(fields=["table", "zip"]),
            models.Index(fields=["country", "zip"]),
            models.Index(fields=["table", "jurisdiction_code"]),
        ]

    def __str__(self) -> str:
        return f"{self.country}-{self.state} {self.zip or self.category}: {self.combined_rate}"

    @property
    def combined_rate(self):
        return self.country_rate + self.state_rate + self.county_rate + self.city_rate + self.special_rate


class Jurisdiction(models.Model):
    """Every taxing jurisdiction ever seen in an imported table; ``vanished_on`` is set when one disappears."""

    code = models.CharField(max_length=96, unique=True)
    scope = models.CharField(max_length=16, db_index=True)
    kind = models.CharField(max_length=16, choices=JurisdictionKind.choices)
    name = models.CharField(max_length=128)
    first_seen = models.ForeignKey(RateTable, on_delete=models.PROTECT, related_name="+")
    last_seen = models.ForeignKey(RateTable, on_delete=models.PROTECT, related_name="+")
    vanished_on = models.DateField(null=True, blank=True)

    class Meta:
        ordering = ["scope", "code"]

    def __str__(self) -> str:
        return self.code


class RateAlert(models.Model):
    """A jurisdiction that was in the previous table of its scope and is missing from the one now active."""

    table = models.ForeignKey(RateTable, on_delete=models.PROTECT, related_name="alerts")
    previous_table = models.ForeignKey(RateTable, on_delete=models.PROTECT, related_name="+")
    kind = models.CharField(max_length=32, default="jurisdiction_vanished")
    jurisdiction_code = models.CharField(max_length=96)
    message = models.CharField(max_length=255)
    created_at = models.DateTimeField()
    acknowledged = models.BooleanField(default=False)

    class Meta:
        ordering = ["-created_at"]
        constraints = [
            models.UniqueConstraint(fields=["table", "kind", "jurisdiction_code"], name="tax_alert_once_per_table"),
        ]

    def __str__(self) -> str:
        return self.message


class VatCategory(models.TextChoices):
    STANDARD = "standard", "Standard rate"
    REDUCED = "reduced", "Reduced rate (the highest reduced rate of the country)"
    REDUCED_LOW = "reduced_low", "Lowest reduced rate"
    SUPER_REDUCED = "super_reduced", "Super-reduced rate"
    ZERO = "zero", "Zero-rated"
    EXEMPT = "exempt", "Exempt"


class TaxCode(models.Model):
    """A product tax code. ``code`` follows TaxJar's numbers (20010 clothing); Avalara's code is mapped."""

    code = models.CharField(max_length=32, unique=True)
    name = models.CharField(max_length=128)
    avalara_code = models.CharField(max_length=32, blank=True)
    taxable_by_default = models.BooleanField(default=True)
    vat_category = models.CharField(max_length=16, choices=VatCategory.choices, default=VatCategory.STANDARD)

    class Meta:
        ordering = ["code"]

    def __str__(self) -> str:
        return f"{self.code} {self.name}"


class ProductTaxCode(models.Model):
    """Which tax code a SKU sells under; SKUs without one are taxed as general merchandise."""

    sku = models.CharField(max_length=64, unique=True)
    tax_code = models.ForeignKey(TaxCode, on_delete=models.PROTECT, related_name="products")

    def __str__(self) -> str:
        return f"{self.sku} -> {self.tax_code.code}"


class TaxCodeRule(models.Model):
    """Taxability of a tax code in a jurisdiction: the most specific match wins.

    ``state`` blank means the whole country, ``kind`` blank means every level. ``below_unit_price`` limits
    the rule to items cheaper than that (New York's clothing exemption under $110).
    """

    tax_code = models.ForeignKey(TaxCode, on_delete=models.CASCADE, related_name="rules")
    country = models.CharField(max_length=2)
    state = models.CharField(max_length=3, blank=True)
    kind = models.CharField(max_length=16, choices=JurisdictionKind.choices, blank=True)
    taxable = models.BooleanField(default=False)
    below_unit_price = models.DecimalField(**MONEY, null=True, blank=True)
    note = models.CharField(max_length=255, blank=True)

    class Meta:
        ordering = ["tax_code", "country", "state", "kind"]
        constraints = [
            models.UniqueConstraint(fields=["tax_code", "country", "state", "kind"], name="tax_code_rule_unique"),
        ]

    def __str__(self) -> str:
        where = "-".join(p for p in (self.country, self.state, self.kind) if p)
        return f"{self.tax_code.code} in {where}: {'taxable' if self.taxable else 'exempt'}"


class ShippingRule(models.Model):
    """Whether shipping charges are taxable; ``state`` blank covers the whole country."""

    country = models.CharField(max_length=2)
    state = models.CharField(max_length=3, blank=True)
    taxable = models.BooleanField()

    class Meta:
        ordering = ["country", "state"]
        constraints = [models.UniqueConstraint(fields=["country", "state"], name="tax_shipping_rule_unique")]

    def __str__(self) -> str:
        return f"shipping in {self.country}-{self.state or '*'}: {'taxable' if self.taxable else 'exempt'}"


class Nexus(models.Model):
    """Where the merchant must collect. ``state`` blank covers the whole country; country ``EU`` is OSS."""

    country = models.CharField(max_length=2)
    state = models.CharField(max_length=3, blank=True)
    since = models.DateField()
    until = models.DateField(null=True, blank=True, help_text="Exclusive.")

    class Meta:
        verbose_name_plural = "nexus"
        ordering = ["country", "state", "since"]

    def __str__(self) -> str:
        return f"nexus {self.country}-{self.state or '*'} since {self.since}"


class CustomerExemption(models.Model):
    """An exemption certificate on file; a request naming the customer is exempt only where one is valid."""

    customer_id = models.CharField(max_length=128, db_index=True)
    country = models.CharField(max_length=2)
    state = models.CharField(max_length=3, blank=True)
    exemption_type = models.CharField(max_length=32, default="wholesale")
    certificate_number = models.CharField(max_length=64, blank=True)
    valid_from = models.DateField()
    valid_to = models.DateField(null=True, blank=True, help_text="Exclusive.")

    class Meta:
        ordering = ["customer_id", "country", "state"]

    def __str__(self) -> str:
        return f"{self.customer_id} exempt in {self.country}-{self.state or '*'}"


class ProviderKind(models.TextChoices):
    TAXJAR = "taxjar", "TaxJar-compatible"
    AVALARA = "avalara", "Avalara-compatible"


class ProviderConfig(models.Model):
    """A remote tax provider. The active one with the lowest priority answers; the local tables are the fallback.

    The API key comes from the environment variable named in ``api_key_env`` when set, else from ``api_key``;
    it is never logged or shown in the admin.
    """

    name = models.SlugField(max_length=32, unique=True)
    kind = models.CharField(max_length=16, choices=ProviderKind.choices)
    base_url = models.URLField()
    api_key = models.CharField(max_length=255, blank=True)
    api_key_env = models.CharField(max_length=64, blank=True)
    account_id = models.CharField(max_length=64, blank=True, help_text="Avalara account id (basic auth user).")
    company_code = models.CharField(max_length=64, blank=True, default="DEFAULT")
    is_active = models.BooleanField(default=True)
    priority = models.PositiveIntegerField(default=100)
    timeout_ms = models.PositiveIntegerField(default=1500)
    attempts = models.PositiveSmallIntegerField(default=2)
    breaker_threshold = models.PositiveSmallIntegerField(default=5, help_text="Consecutive 5xx/timeouts that open it.")
    breaker_cooldown_seconds = models.PositiveIntegerField(default=30)

    class Meta:
        ordering = ["priority", "name"]

    def __str__(self) -> str:
        return f"{self.name} ({self.get_kind_display()})"
