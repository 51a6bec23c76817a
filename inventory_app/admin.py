"""Admin: stock numbers are read-only; they change only through actions that call ``stock``."""

from __future__ import annotations

from django import forms
from django.contrib import admin, messages
from django.shortcuts import get_object_or_404, redirect, render
from django.urls import path, reverse
from django.utils import timezone
from django.utils.html import format_html

from hub.admin import RecordAdmin
from inventory_app import stock
from inventory_app.errors import StockError
from inventory_app.models import (
    BundleComponent,
    Location,
    Order,
    OrderLine,
    Price,
    Reservation,
    ReservationLine,
    ReservationStatus,
    Sku,
    StockLedgerEntry,
    StockLevel,
)


class BundleComponentInline(admin.TabularInline):
    """Set when the bundle is created, shown after: as in the API, components are not changed later (an edit here
    moved every channel's number of the bundle without marking it out of date, and a kit of 2 sold as one of 3)."""
    model = BundleComponent
    fk_name = "bundle"
    extra = 0
    autocomplete_fields = ["component"]

    def has_add_permission(self, request, obj=None):
        return obj is None and super().has_add_permission(request, obj)

    def has_change_permission(self, request, obj=None):
        return obj is None and super().has_change_permission(request, obj)

    def has_delete_permission(self, request, obj=None):
        return obj is None and super().has_delete_permission(request, obj)


class StockLevelInline(admin.TabularInline):
    model = StockLevel
    extra = 0
    can_delete = False
    fields = ["location", "on_hand", "reserved", "allowance", "updated_at", "adjust_link"]
    readonly_fields = fields

    def has_add_permission(self, request, obj=None):
        return False

    @admin.display(description="")
    def adjust_link(self, obj):
        return format_html('<a href="{}">Adjust…</a>', reverse("admin:inventory_app_stocklevel_adjust", args=[obj.pk]))


@admin.register(Sku)
class SkuAdmin(admin.ModelAdmin):
    list_display = ["code", "name", "is_active", "stock_policy", "oversell_limit", "updated_at"]
    list_filter = ["is_active", "stock_policy"]
    search_fields = ["code", "name"]
    inlines = [BundleComponentInline, StockLevelInline]
    readonly_fields = ["created_at", "updated_at"]

    def save_model(self, request, obj, form, change):
        if change and "is_active" in form.changed_data:
            # On sale or not moves every channel's number of it: through the stock module.
            active, obj.is_active = obj.is_active, not obj.is_active
            self._save_with_policy(request, obj, form, change)
            stock.set_sku_active(sku=obj, active=active)
            obj.is_active = active
            return
        self._save_with_policy(request, obj, form, change)

    def _save_with_policy(self, request, obj, form, change):
        policy_fields = {"stock_policy", "oversell_limit", "oversell_location"}
        if change and policy_fields & set(form.changed_data):
            # The allowance on stock rows must follow the policy: go through the stock module.
            wanted = (obj.stock_policy, obj.oversell_limit, obj.oversell_location)
            original = Sku.objects.get(pk=obj.pk)
            obj.stock_policy, obj.oversell_limit, obj.oversell_location = (
                original.stock_policy, original.oversell_limit, original.oversell_location)
            super().save_model(request, obj, form, change)
            try:
                stock.set_stock_policy(sku=obj, policy=wanted[0], limit=wanted[1], location=wanted[2])
            except StockError as exc:
                messages.error(request, exc.message)
            return
        super().save_model(request, obj, form, change)


@admin.register(Location)
class LocationAdmin(admin.ModelAdmin):
    list_display = ["code", "name", "kind", "priority", "is_active"]
    list_filter = ["kind", "is_active"]
    search_fields = ["code", "name"]

    def save_model(self, request, obj, form, change):
        # Opening or closing a location moves every channel's number of what is stocked there: through stock.
        if change and "is_active" in form.changed_data:
            active, obj.is_active = obj.is_active, not obj.is_active
            super().save_model(request, obj, form, change)
            stock.set_location_active(location=obj, active=active)
            obj.is_active = active
        else:
            super().save_model(request, obj, form, change)


class AdjustForm(forms.Form):
    delta = forms.IntegerField(help_text="Positive to add units, negative to remove them.")
    reason = forms.CharField(max_length=255)


@admin.register(StockLevel)
class StockLevelAdmin(admin.ModelAdmin):
    list_display = ["sku", "location", "on_hand", "reserved", "available_now", "allowance", "updated_at",
                    "adjust_link"]
    list_filter = ["location"]
    search_fields = ["sku__code"]
    readonly_fields = ["sku", "location", "on_hand", "reserved", "allowance", "updated_at"]
    list_select_related = ["sku", "location"]

    def has_add_permission(self, request):
        return False

    def has_delete_permission(self, request, obj=None):
        return False

    @admin.display(description="available")
    def available_now(self, obj):
        return obj.available

    @admin.display(description="")
    def adjust_link(self, obj):
        return format_html('<a href="{}">Adjust…</a>', reverse("admin:inventory_app_stocklevel_adjust", args=[obj.pk]))

    def get_urls(self):
        return [path("<int:pk>/adjust/", self.admin_site.admin_view(self.adjust_view),
                     name="inventory_app_stocklevel_adjust"), *super().get_urls()]

    def adjust_view(self, request, pk):
        level = get_object_or_404(StockLevel.objects.select_related("sku", "location"), pk=pk)
        form = AdjustForm(request.POST or None)
        if request.method == "POST" and form.is_valid():
            try:
                stock.adjust(sku=level.sku, location=level.location, delta=form.cleaned_data["delta"],
                             reason=form.cleaned_data["reason"], source=f"admin:{request.user.get_username()}"[:64])
            except StockError as exc:
                form.add_error(None, exc.message)
            else:
                messages.success(request, f"Adjusted {level.sku} at {level.location} by {form.cleaned_data['delta']:+}.")
                return redirect("admin:inventory_app_stocklevel_changelist")
        context = {**self.admin_site.each_context(request), "title": f"Adjust {level.sku} at {level.location}",
                   "form": form, "level": level, "opts": self.model._meta}
        return render(request, "admin/inventory_app/adjust.html", context)


@admin.register(StockLedgerEntry)
class StockLedgerEntryAdmin(RecordAdmin):
    list_display = ["id", "recorded_at", "sku", "location", "kind", "on_hand_delta", "reserved_delta",
                    "on_hand_after", "reserved_after", "source", "reference"]
    list_filter = ["kind", "location", "source"]
    search_fields = ["sku__code", "reference", "operation_key"]
    list_select_related = ["sku", "location"]


class ReservationLineInline(admin.TabularInline):
    model = ReservationLine
    extra = 0
    can_delete = False
    readonly_fields = ["requested_sku", "sku", "location", "quantity"]

    def has_add_permission(self, request, obj=None):
        return False


@admin.register(Reservation)
class ReservationAdmin(admin.ModelAdmin):
    list_display = ["id", "status", "channel", "reference", "expires_at", "created_at"]
    list_filter = ["status", "channel"]
    search_fields = ["id", "reference"]
    readonly_fields = ["id", "status", "channel", "reference", "expires_at", "created_at", "updated_at"]
    inlines = [ReservationLineInline]
    actions = ["commit_selected", "release_selected"]

    def has_add_permission(self, request):
        return False

    def _settle(self, request, queryset, operation, verb):
        done = 0
        for reservation in queryset.filter(status=ReservationStatus.ACTIVE):
            try:
                operation(reservation_id=reservation.pk, source=f"admin:{request.user.get_username()}"[:64])
                done += 1
            except StockError as exc:
                messages.error(request, f"{reservation.pk}: {exc.message}")
        messages.success(request, f"{verb} {done} reservation(s).")

    @admin.action(description="Commit selected active reservations")
    def commit_selected(self, request, queryset):
        self._settle(request, queryset, stock.commit, "Committed")

    @admin.action(description="Release selected active reservations")
    def release_selected(self, request, queryset):
        self._settle(request, queryset, stock.release, "Released")


class OrderLineInline(admin.TabularInline):
    model = OrderLine
    extra = 0
    can_delete = False
    readonly_fields = ["external_id", "sku", "quantity", "unit_price", "status", "restocked_quantity",
                       "written_off_quantity", "reservation"]

    def has_add_permission(self, request, obj=None):
        return False


@admin.register(Order)
class OrderAdmin(admin.ModelAdmin):
    list_display = ["__str__", "channel", "status", "total", "currency", "placed_at"]
    list_filter = ["channel", "status"]
    search_fields = ["external_id", "name"]
    readonly_fields = ["channel", "external_id", "name", "status", "currency", "total", "placed_at"]
    inlines = [OrderLineInline]

    def has_add_permission(self, request):
        return False


@admin.register(Price)
class PriceAdmin(admin.ModelAdmin):
    list_display = ["sku", "channel", "amount", "currency", "valid_from", "valid_to", "is_current"]
    list_filter = ["channel", "currency"]
    search_fields = ["sku__code"]
    autocomplete_fields = ["sku"]

    @admin.display(boolean=True)
    def is_current(self, obj):
        now = timezone.now()
        return obj.valid_from <= now and (obj.valid_to is None or obj.valid_to > now)
