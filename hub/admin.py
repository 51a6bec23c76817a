from django.contrib import admin

from hub.models import JobRun


@admin.register(JobRun)
class JobRunAdmin(admin.ModelAdmin):
    list_display = ["job", "channel", "started_at", "finished_at", "ok", "count_in", "count_out", "count_rejected",
                    "variance_percent"]
    list_filter = ["job", "ok", "channel"]
    date_hierarchy = "started_at"
    readonly_fields = [f.name for f in JobRun._meta.fields]

    def has_add_permission(self, request):
        return False
