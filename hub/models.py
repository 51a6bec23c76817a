"""Run records: every scheduled job writes one (what it read, wrote, refused and found)."""

from __future__ import annotations

from django.core.exceptions import ValidationError
from django.db import models
from django.utils import timezone

from hub.crypto import EncryptedTextField


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


class EventType(models.TextChoices):
    STOCK_CHANGED = "stock.changed", "Stock changed"
    ORDER_CREATED = "order.created", "Order created"
    # A channel order seen again with lines it did not have: the new lines only. Sent as order.created again, an ERP
    # booked the order twice.
    ORDER_UPDATED = "order.updated", "Order updated (lines added)"
    RESERVATION_EXPIRED = "reservation.expired", "Reservation expired"


class Subscription(models.Model):
    """Another system (ERP, email, WMS) that wants Tally's events, signed the Standard Webhooks way."""

    name = models.CharField(max_length=128)
    url = models.URLField(max_length=500)
    secret = EncryptedTextField(help_text="whsec_… signing secret; shown once when created.")
    event_types = models.JSONField(default=list, help_text="Event types to receive; empty means all.")
    enabled = models.BooleanField(default=True)
    disabled_reason = models.CharField(max_length=255, blank=True, default="")
    created_at = models.DateTimeField(auto_now_add=True)

    class Meta:
        ordering = ["name"]

    def __str__(self) -> str:
        return self.name

    def clean(self) -> None:
        from hub.addresses import refused_address

        super().clean()
        refused = refused_address(self.url, unresolved_ok=True) if self.url else None
        if refused:
            raise ValidationError({"url": refused})
        types = self.event_types
        if not isinstance(types, list) or not all(isinstance(t, str) for t in types):
            raise ValidationError({"event_types": "A list of event types, e.g. [\"order.created\"]; empty means all."})
        unknown = sorted(set(types) - set(EventType.values))
        if unknown:
            # A misspelt type matched nothing and the subscriber silently received nothing.
            raise ValidationError({"event_types": f"Unknown event type(s): {', '.join(unknown)}. "
                                                  f"Known: {', '.join(EventType.values)}."})

    def wants(self, event_type: str) -> bool:
        return self.enabled and (not self.event_types or event_type in self.event_types)


class DeliveryStatus(models.TextChoices):
    PENDING = "pending", "Pending"
    DELIVERED = "delivered", "Delivered"
    DEAD = "dead", "Gave up (replayable)"


class EventDelivery(models.Model):
    """The outbox: one row per (event, subscription), written in the transaction that caused the event."""

    subscription = models.ForeignKey(Subscription, on_delete=models.CASCADE, related_name="deliveries")
    message_id = models.CharField(max_length=64, help_text="webhook-id: the same on every retry.")
    event_type = models.CharField(max_length=64)
    payload = models.JSONField()
    status = models.CharField(max_length=16, choices=DeliveryStatus.choices, default=DeliveryStatus.PENDING)
    attempts = models.PositiveIntegerField(default=0)
    next_attempt_at = models.DateTimeField(default=timezone.now)
    last_status = models.PositiveSmallIntegerField(null=True, blank=True)
    last_error = models.TextField(blank=True, default="")
    created_at = models.DateTimeField(default=timezone.now, db_index=True)
    delivered_at = models.DateTimeField(null=True, blank=True)

    class Meta:
        ordering = ["-id"]
        indexes = [models.Index(fields=["next_attempt_at"], condition=models.Q(status="pending"), name="delivery_due")]


class DeliveryAttempt(models.Model):
    delivery = models.ForeignKey(EventDelivery, on_delete=models.CASCADE, related_name="attempt_log")
    attempted_at = models.DateTimeField(default=timezone.now)
    status_code = models.PositiveSmallIntegerField(null=True, blank=True)
    error = models.CharField(max_length=500, blank=True, default="")
    duration_ms = models.PositiveIntegerField(default=0)

    class Meta:
        ordering = ["id"]
