"""Retention: what is done with goes after its time; what is still to do stays."""

from __future__ import annotations

from datetime import timedelta

import pytest
from django.utils import timezone

from hub.models import DeliveryAttempt, DeliveryStatus, EventDelivery, Subscription
from hub.tasks import retention

pytestmark = pytest.mark.django_db


def test_ended_event_deliveries_and_their_attempts_go_after_the_retention_days():
    """Deliveries were never deleted: with a stock subscriber, a row per subscriber per stock change, for ever
    (review finding, 2026-12-07)."""
    subscription = Subscription.objects.create(name="erp", url="http://127.0.0.1:1/", secret="whsec_x",
                                               event_types=["stock.changed"])
    old, recent = timezone.now() - timedelta(days=31), timezone.now() - timedelta(days=29)

    def delivery(status, created_at):
        row = EventDelivery.objects.create(subscription=subscription, message_id=f"msg_{status}_{created_at:%j}",
                                           event_type="stock.changed", payload={}, status=status, created_at=created_at)
        DeliveryAttempt.objects.create(delivery=row, status_code=200)
        return row

    gone = [delivery(DeliveryStatus.DELIVERED, old), delivery(DeliveryStatus.DEAD, old)]
    kept = [delivery(DeliveryStatus.PENDING, old), delivery(DeliveryStatus.DELIVERED, recent)]
    assert retention()["event_deliveries"] == 2 + 2  # each with its attempt
    assert set(EventDelivery.objects.values_list("pk", flat=True)) == {row.pk for row in kept}
    assert not DeliveryAttempt.objects.filter(delivery_id__in=[row.pk for row in gone]).exists()
