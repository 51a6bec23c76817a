"""Admin: rate tables, entries, jurisdictions and alerts are read-only history (they change only by import);
tax codes, rules, nexus, exemptions and providers are edited here."""

from __future__ import annotations

from django import forms
from django.contrib import admin

from tax_app.models import (
    CustomerExemption,
    Jurisdiction,
    Nexus,
    ProductTaxCode,
    ProviderConfig,
    RateAlert,
    RateEntry,
    RateTable,
    ShippingRule,
    TaxCode,
    TaxCodeRule,
)


class ReadOnlyAdmin(admin.ModelAdmin):
    def has_add_permission(self, request, obj=None):
        return False

    def has_change_permission(self, request, obj=None):
        return False

    def has_delete_permission(self, request, obj=None):
        return False


class RateAlertInline(admin.TabularInline):
    model = RateAlert
    fk_name = "table"
    extra = 0
    can_delete = False
    fields = ["jurisdiction_code", "message", "created_at", "acknowledged"]
    readonly_fields = fields

    def has_add_permission(self, request, obj=None):
        return False


@admin.register(RateTable)
class RateTableAdmin(ReadOnlyAdmin):
    list_display = ["scope", "source", "effective_from", "effective_to", "status", "row_count", "imported_at", "name"]
    list_filter = ["status", "source", "scope"]
    search_fields = ["scope", "name", "checksum"]
    date_hierarchy = "effective_from"
    inlines = [RateAlertInline]


@admin.register(RateEntry)
class RateEntryAdmin(ReadOnlyAdmin):
    """Search a ZIP to see its rate in every table, past and future."""

    list_display = ["zip", "state", "country", "category", "jurisdiction_code", "state_rate", "county_rate", "city_rate",
                    "special_rate", "country_rate", "table"]
    list_filter = ["table__scope", "table__status"]
    search_fields = ["=zip", "jurisdiction_code", "region_name"]
    list_select_related = ["table"]
    show_full_result_count = False


@admin.register(Jurisdiction)
class JurisdictionAdmin(ReadOnlyAdmin):
    list_display = ["code", "kind", "name", "scope", "first_seen", "last_seen", "vanished_on"]
    list_filter = ["kind", "scope", ("vanished_on", admin.EmptyFieldListFilter)]
    search_fields = ["code", "name"]


@admin.register(RateAlert)
class RateAlertAdmin(admin.ModelAdmin):
    list_display = ["created_at", "table", "jurisdiction_code", "message", "acknowledged"]
    list_filter = ["acknowledged", "kind"]
    readonly_fields = ["table", "previous_table", "kind", "jurisdiction_code", "message", "created_at"]
    actions = ["acknowledge"]

    def has_add_permission(self, request, obj=None):
        return False

    @admin.action(description="Acknowledge selected alerts")
    def acknowledge(self, request, queryset):
        queryset.update(acknowledged=True)


class TaxCodeRuleInline(admin.TabularInline):
    model = TaxCodeRule
    extra = 0


@admin.register(TaxCode)
class TaxCodeAdmin(admin.ModelAdmin):
    list_display = ["code", "name", "avalara_code", "taxable_by_default", "vat_category"]
    search_fields = ["code", "name", "avalara_code"]
    inlines = [TaxCodeRuleInline]


@admin.register(TaxCodeRule)
class TaxCodeRuleAdmin(admin.ModelAdmin):
    list_display = ["tax_code", "country", "state", "kind", "taxable", "below_unit_price", "note"]
    list_filter = ["country", "taxable"]
    search_fields = ["tax_code__code", "state"]


@admin.register(ProductTaxCode)
class ProductTaxCodeAdmin(admin.ModelAdmin):
    list_display = ["sku", "tax_code"]
    search_fields = ["sku", "tax_code__code"]


@admin.register(ShippingRule)
class ShippingRuleAdmin(admin.ModelAdmin):
    list_display = ["country", "state", "taxable"]
    list_filter = ["country", "taxable"]


@admin.register(Nexus)
class NexusAdmin(admin.ModelAdmin):
    list_display = ["country", "state", "since", "until"]
    list_filter = ["country"]


@admin.register(CustomerExemption)
class CustomerExemptionAdmin(admin.ModelAdmin):
    list_display = ["customer_id", "country", "state", "exemption_type", "certificate_number", "valid_from", "valid_to"]
    search_fields = ["customer_id", "certificate_number"]


def _formfield(field, **kwargs):
    if field.name == "base_url":
        return field.formfield(assume_scheme="https", **kwargs)
    return field.formfield(**kwargs)


class ProviderConfigForm(forms.ModelForm):
    # Write-only: the stored key is never rendered back into the page.
    api_key = forms.CharField(required=False, widget=forms.PasswordInput(render_value=False),
                              help_text="Leave empty to keep the current key. Prefer api_key_env.")

    class Meta:
        model = ProviderConfig
        formfield_callback = _formfield
        fields = ["name", "kind", "base_url", "api_key", "api_key_env", "account_id", "company_code", "is_active",
                  "priority", "timeout_ms", "attempts", "breaker_threshold", "breaker_cooldown_seconds"]

    def clean_api_key(self):
        return self.cleaned_data["api_key"] or (self.instance.api_key if self.instance.pk else "")


@admin.register(ProviderConfig)
class ProviderConfigAdmin(admin.ModelAdmin):
    form = ProviderConfigForm
    list_display = ["name", "kind", "base_url", "is_active", "priority", "timeout_ms", "breaker_threshold", "has_key"]

    def formfield_for_dbfield(self, db_field, request, **kwargs):
        if db_field.name == "base_url":
            kwargs["assume_scheme"] = "https"
        return super().formfield_for_dbfield(db_field, request, **kwargs)

    @admin.display(boolean=True, description="key set")
    def has_key(self, obj):
        return bool(obj.api_key or obj.api_key_env)
