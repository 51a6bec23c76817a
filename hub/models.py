"""Run records: every scheduled job writes one (what it read, wrote, refused and found)."""

from __future__ import annotations

from django.db import models
from django.utils import timezone


class JobRun(models.Model):
    job = models.CharField(max_length=64, db_index=True)
    channel = models.ForeignKey("channels_app.Channel", null=True, blank=True, on_delete=models.CASCADE,
                                related_name="runs")
    started_at = models.DateTimeField(default=timezone.now, db_index=True)
    finished_at = models.DateTimeField(null=True, blank=True)
    ok = models.BooleanField(null=True)
    count_in = models.PositiveIntegerField(default=0, help_text="Rows or listings read.")
    count_out = models.PositiveIntegerField(default=0, help_text="Rows or listings written or sent.")
    count_rejected = models.PositiveIntegerField(default=0)
    variance_percent = models.DecimalField(max_digits=7, decimal_places=3, null=True, blank=True)
    details = models.JSONField(default=dict, blank=True)
    error = models.TextField(blank=True, default="")

    class Meta:
        ordering = ["-started_at"]

    def __str__(self) -> str:
        return f"{self.job} {self.channel or ''} {self.started_at:%Y-%m-%d %H:%M:%S}"
