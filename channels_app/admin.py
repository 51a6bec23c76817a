"""Admin for merchants (channel set-up on one page) and operators (inbox, failed listings, replay)."""

from __future__ import annotations

import json

from django import forms
from django.contrib import admin, messages
from django.urls import reverse
from django.utils.html import format_html, format_html_join

from channels_app import allocation, inbound, outbound, selectors, services
from channels_app.models import (
    Channel,
    ChannelAllocation,
    ChannelLocation,
    InboundEvent,
    InboundStatus,
    Listing,
    PushLog,
    SyncLagMinute,
    WebhookRejection,
)
from channels_app.rules import RULE_FIELDS
from channels_app.sync import mark_channel_dirty
from hub.admin import RecordAdmin

HEALTH_COLOURS = {"green": "#2e7d32", "amber": "#ef6c00", "red": "#c62828", "grey": "#757575"}


class ChannelForm(forms.ModelForm):
    api_base_url = forms.URLField(assume_scheme="https", required=False, max_length=500,
                                  help_text="The platform's API root (a sandbox URL for demos).")
    # Secrets are write-only: the form never shows what is stored.
    credentials_json = forms.CharField(
        label="API credentials (JSON)", required=False, widget=forms.Textarea(attrs={"rows": 3}),
        help_text="Leave blank to keep the stored credentials. Stored encrypted; never shown again.")
    new_webhook_secret = forms.CharField(
        label="New webhook secret", required=False, widget=forms.PasswordInput(render_value=False),
        help_text="Setting one rotates: the previous secret keeps verifying for 24 hours.")

    class Meta:
        model = Channel
        fields = ["slug", "name", "kind", "enabled", "paused", "api_base_url", "external_id", "publish_location_id",
                  "safety_buffer", "share_percent", "max_quantity", "zero_below", "include_backorders", "conservative",
                  "sellout_guard_seconds", "allocation_target", "rate_limit_capacity", "rate_limit_per_second", "push_batch_size",
                  "catalog_interval_seconds",
                  "reconcile_interval_seconds"]

    def clean_credentials_json(self):
        raw = self.cleaned_data.get("credentials_json", "").strip()
        if not raw:
            return None
        try:
            value = json.loads(raw)
        except ValueError as exc:
            raise forms.ValidationError(f"Not valid JSON: {exc}") from None
        if not isinstance(value, dict):
            raise forms.ValidationError("Credentials must be a JSON object.")
        return value


class ChannelLocationInline(admin.TabularInline):
    model = ChannelLocation
    extra = 0
    autocomplete_fields = ["location"]


@admin.register(Channel)
class ChannelAdmin(admin.ModelAdmin):
    form = ChannelForm
    list_display = ["slug", "name", "kind", "health_badge", "enabled", "paused", "last_push_at"]
    list_filter = ["kind", "enabled", "paused"]
    search_fields = ["slug", "name"]
    inlines = [ChannelLocationInline]
    readonly_fields = ["secret_state", "sync_summary", "previous_secret_expires_at", "created_at", "updated_at"]
    actions = ["pause", "resume", "force_resync"]
    fieldsets = [
        (None, {"fields": ["slug", "name", "kind", "enabled", "paused"]}),
        ("Platform", {"fields": ["api_base_url", "external_id", "publish_location_id", "credentials_json",
                                 "new_webhook_secret", "secret_state", "previous_secret_expires_at"]}),
        ("What this channel is sent", {"fields": ["safety_buffer", "share_percent", "max_quantity", "zero_below",
                                                  "include_backorders", "conservative", "sellout_guard_seconds",
                                                  "allocation_target"]}),
        ("Limits and schedules", {"fields": ["rate_limit_capacity", "rate_limit_per_second", "push_batch_size",
                                             "catalog_interval_seconds", "reconcile_interval_seconds"]}),
        ("Sync", {"fields": ["sync_summary", "created_at", "updated_at"]}),
    ]

    def save_model(self, request, obj, form, change):
        credentials = form.cleaned_data.get("credentials_json")
        if credentials is not None:
            obj.credentials = credentials
        secret = form.cleaned_data.get("new_webhook_secret")
        if secret:
            services.rotate_webhook_secret(channel=obj, new_secret=secret, save=False)
        super().save_model(request, obj, form, change)
        if "allocation_target" in form.changed_data or (
                obj.allocation_target is not None and "max_quantity" in form.changed_data):
            # Before anything else here locks listings: it takes stock rows first, as every stock write does (and a
            # new maximum moves what the fence is filled to: see services.update_channel).
            allocation.target_changed(obj, form.initial.get("allocation_target"))
        if change and set(form.changed_data) & RULE_FIELDS:
            mark_channel_dirty(obj)

    def save_related(self, request, form, formsets, change):
        super().save_related(request, form, formsets, change)
        # Which locations feed the channel moves every number it is sent, as the API's PATCH of them does.
        if change and any(formset.has_changed() for formset in formsets):
            mark_channel_dirty(form.instance)

    @admin.display(description="Webhook secret")
    def secret_state(self, obj):
        if not obj.pk:
            return "-"
        parts = ["set" if obj.webhook_secret else "NOT SET"]
        if obj.previous_webhook_secret:
            parts.append(f"previous one valid until {obj.previous_secret_expires_at:%Y-%m-%d %H:%M} UTC")
        return "; ".join(parts)

    def get_queryset(self, request):
        return selectors.with_health(super().get_queryset(request))

    @admin.display(description="Health")
    def health_badge(self, obj):
        health, reason = selectors.health_of(obj)
        return format_html('<span title="{}" style="color:#fff;background:{};padding:2px 8px;border-radius:8px">{}</span>',
                           reason, HEALTH_COLOURS[health], health)

    @admin.display(description="Sync status and preview")
    def sync_summary(self, obj):
        if not obj.pk:
            return "-"
        status = selectors.sync_status(obj)
        rows = format_html_join("", "<tr><td>{}</td><td>{}</td><td>{}</td><td>{}</td><td>{}</td></tr>", (
            (p["sku"], p["would_send"], "-" if p["pushed"] is None else p["pushed"],
             "-" if p["remote"] is None else p["remote"], p["status"]) for p in selectors.preview(obj, limit=50)))
        return format_html(
            "<p><b>{}</b>: {} · backlog {} · failed {} · dead-lettered inbound {}</p>"
            "<table><tr><th>SKU</th><th>would send</th><th>pushed</th><th>channel shows</th><th>status</th></tr>{}</table>",
            status["health"], status["reason"], status["push_backlog"], status["failed_listings"],
            status["inbox_dead_lettered"], rows)

    @admin.action(description="Pause selected channels (pushes wait)")
    def pause(self, request, queryset):
        for channel in queryset:
            services.set_paused(channel=channel, paused=True)
        messages.success(request, f"Paused {queryset.count()} channel(s).")

    @admin.action(description="Resume selected channels")
    def resume(self, request, queryset):
        for channel in queryset:
            services.set_paused(channel=channel, paused=False)
        messages.success(request, f"Resumed {queryset.count()} channel(s).")

    @admin.action(description="Force a full resync of selected channels")
    def force_resync(self, request, queryset):
        total = sum(mark_channel_dirty(channel) for channel in queryset)
        messages.success(request, f"{total} listing(s) queued for push.")


@admin.register(ChannelAllocation)
class ChannelAllocationAdmin(RecordAdmin):
    """Units set aside for ring-fenced channels. Read-only: stock writes keep them (``channels_app.allocation``);
    the channel's allocation target is what an operator sets."""

    list_display = ["channel", "sku", "units", "updated_at"]
    list_filter = ["channel"]
    search_fields = ["sku__code"]
    list_select_related = ["channel", "sku"]


@admin.register(Listing)
class ListingAdmin(admin.ModelAdmin):
    list_display = ["channel", "sku", "status", "desired_version", "pushed_version", "pushed_quantity",
                    "remote_quantity", "edited_on_channel_at", "attempts", "short_error", "history_link"]
    list_filter = ["channel", "status"]
    search_fields = ["sku__code", "external_product_id", "external_variant_id", "external_inventory_item_id"]
    list_select_related = ["channel", "sku"]
    autocomplete_fields = ["sku"]
    readonly_fields = ["desired_version", "desired_quantity", "dirty_since", "pushed_version", "pushed_quantity",
                       "pushed_at", "remote_quantity", "remote_seen_at", "edited_on_channel_at", "status", "attempts",
                       "next_attempt_at", "last_error", "lease_owner", "lease_until", "attempted_quantity", "remote_unsure",
                       "recheck_after"]  # the pushers' and stock writes' own: an operator changes the mapping only
    actions = ["replay"]

    def get_readonly_fields(self, request, obj=None):
        # A listing is one SKU on one channel: another SKU or channel is another listing, not an edit of this one.
        return [*self.readonly_fields, "channel", "sku"] if obj else self.readonly_fields

    def save_model(self, request, obj, form, change):
        if change:  # the mapping fields the form changed, and nothing the pushers and stock writes keep
            services.remap_listing(obj, **{name: getattr(obj, name) for name in form.changed_data
                                           if name in services.MAPPING_FIELDS})
            return
        super().save_model(request, obj, form, change)
        if obj.channel.allocation_target is not None:
            allocation.top_up(obj.channel, [obj.sku_id])

    def delete_model(self, request, obj):
        services.delete_listings(Listing.objects.filter(pk=obj.pk))

    def delete_queryset(self, request, queryset):
        services.delete_listings(queryset)

    @admin.display(description="error")
    def short_error(self, obj):
        return obj.last_error[:80]

    @admin.display(description="")
    def history_link(self, obj):
        return format_html('<a href="{}?listing__id__exact={}">pushes</a>', reverse("admin:channels_app_pushlog_changelist"),
                           obj.pk)

    @admin.action(description="Replay: push selected listings again with a fresh retry budget")
    def replay(self, request, queryset):
        count = outbound.replay_listings(list(queryset.values_list("pk", flat=True)))
        messages.success(request, f"{count} listing(s) queued for push.")


class DeadLetterFilter(admin.SimpleListFilter):
    title = "needs attention"
    parameter_name = "attention"

    def lookups(self, request, model_admin):
        return [("yes", "Parked, failed or dead")]

    def queryset(self, request, queryset):
        if self.value() == "yes":
            return queryset.filter(status__in=[InboundStatus.PARKED, InboundStatus.FAILED, InboundStatus.DEAD])
        return queryset


@admin.register(InboundEvent)
class InboundEventAdmin(admin.ModelAdmin):
    list_display = ["id", "channel", "topic", "status", "attempts", "received_at", "processed_at", "short_error"]
    list_filter = [DeadLetterFilter, "status", "channel", "topic"]
    search_fields = ["delivery_id", "dedup_key", "correlation_id"]
    list_select_related = ["channel"]
    readonly_fields = [f.name for f in InboundEvent._meta.fields]
    actions = ["replay"]

    def has_add_permission(self, request):
        return False

    @admin.display(description="reason")
    def short_error(self, obj):
        return obj.last_error[:100]

    @admin.action(description="Replay selected parked / failed / dead events")
    def replay(self, request, queryset):
        count = inbound.replay(list(queryset.values_list("pk", flat=True)))
        messages.success(request, f"{count} event(s) queued again.")


@admin.register(WebhookRejection)
class WebhookRejectionAdmin(admin.ModelAdmin):
    list_display = ["received_at", "channel_slug", "reason", "http_status", "detail", "remote_addr"]
    list_filter = ["reason", "channel_slug"]
    readonly_fields = [f.name for f in WebhookRejection._meta.fields]

    def has_add_permission(self, request):
        return False


@admin.register(SyncLagMinute)
class SyncLagMinuteAdmin(admin.ModelAdmin):
    list_display = ["minute", "channel", "count", "p50_ms", "p95_ms", "p99_ms", "max_ms"]
    list_filter = ["channel"]
    date_hierarchy = "minute"
    list_select_related = ["channel"]

    def has_add_permission(self, request):
        return False

    def has_change_permission(self, request, obj=None):
        return False


@admin.register(PushLog)
class PushLogAdmin(admin.ModelAdmin):
    list_display = ["created_at", "channel", "listing", "version", "quantity", "ok", "http_status", "lag_ms", "error"]
    list_filter = ["ok", "channel"]
    readonly_fields = [f.name for f in PushLog._meta.fields]
    list_select_related = ["channel", "listing__sku", "listing__channel"]  # a listing shows as channel:sku

    def has_add_permission(self, request):
        return False
