from django import forms
from django.contrib import admin, messages

from hub.events import forget_subscribers, new_secret, replay
from hub.models import DeliveryAttempt, EventDelivery, EventType, JobRun, Subscription


class RecordAdmin(admin.ModelAdmin):
    """A record the system writes and nobody edits (ledger rows, allocations): listed and searched, never
    added, changed or deleted from the admin."""

    def has_add_permission(self, request):
        return False

    def has_change_permission(self, request, obj=None):
        return False

    def has_delete_permission(self, request, obj=None):
        return False


@admin.register(JobRun)
class JobRunAdmin(admin.ModelAdmin):
    list_display = ["job", "channel", "started_at", "finished_at", "ok", "count_in", "count_out", "count_rejected",
                    "variance_percent"]
    list_filter = ["job", "ok", "channel"]
    date_hierarchy = "started_at"
    readonly_fields = [f.name for f in JobRun._meta.fields]

    def has_add_permission(self, request):
        return False


class SubscriptionForm(forms.ModelForm):
    class Meta:
        model = Subscription
        fields = ["name", "url", "event_types", "enabled", "disabled_reason"]

    url = forms.URLField(assume_scheme="https", max_length=500)
    # Ticked from the known types: typed as JSON, a misspelt type matched nothing and the subscriber heard nothing.
    event_types = forms.MultipleChoiceField(choices=EventType.choices, required=False,
                                            widget=forms.CheckboxSelectMultiple,
                                            help_text="None ticked: every event, including types added later.")


@admin.register(Subscription)
class SubscriptionAdmin(admin.ModelAdmin):
    form = SubscriptionForm
    list_display = ["name", "url", "enabled", "disabled_reason", "created_at"]
    list_filter = ["enabled"]

    def save_model(self, request, obj, form, change):
        if not obj.secret:
            obj.secret = new_secret()
            # Shown once: the receiver needs it to verify our signatures; it is stored encrypted.
            messages.warning(request, f"Signing secret for {obj.name} (copy it now, it is not shown again): {obj.secret}")
        super().save_model(request, obj, form, change)
        forget_subscribers()


class DeliveryAttemptInline(admin.TabularInline):
    model = DeliveryAttempt
    extra = 0
    can_delete = False
    readonly_fields = ["attempted_at", "status_code", "error", "duration_ms"]

    def has_add_permission(self, request, obj=None):
        return False


@admin.register(EventDelivery)
class EventDeliveryAdmin(admin.ModelAdmin):
    list_display = ["id", "subscription", "event_type", "status", "attempts", "last_status", "next_attempt_at",
                    "created_at"]
    list_filter = ["status", "event_type", "subscription"]
    readonly_fields = [f.name for f in EventDelivery._meta.fields]
    inlines = [DeliveryAttemptInline]
    actions = ["replay"]

    def has_add_permission(self, request):
        return False

    @admin.action(description="Replay selected deliveries")
    def replay(self, request, queryset):
        messages.success(request, f"{replay(list(queryset.values_list('pk', flat=True)))} delivery(ies) queued again.")
