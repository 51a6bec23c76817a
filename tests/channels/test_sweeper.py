"""The inbox sweeper re-enqueues lost messages only: under a backlog it must not multiply the queue.

Against the real Redis broker (the test settings' database): the tests read the inbound queue's length.
"""

from __future__ import annotations

from datetime import timedelta

import pytest
from django.utils import timezone

from channels_app import inbound
from channels_app.models import InboundEvent, InboundStatus
from tests.channels.helpers import make_channel

pytestmark = pytest.mark.django_db


@pytest.fixture
def inbound_queue():
    from hub.celery import app

    with app.connection_for_write() as conn:
        client = conn.default_channel.client
        client.delete("inbound")
        yield client
        client.delete("inbound")


def pending_events(n: int, *, age: timedelta = timedelta(minutes=1)) -> list[InboundEvent]:
    channel = make_channel("standard")
    events = [InboundEvent.objects.create(channel=channel, dedup_key=f"k{i}", delivery_id=f"k{i}", topic="t",
                                          headers={}, body="{}") for i in range(n)]
    InboundEvent.objects.filter(pk__in=[e.pk for e in events]).update(received_at=timezone.now() - age)
    return events


def test_lost_messages_are_re_enqueued_once_not_every_sweep(inbound_queue):
    pending_events(3)
    assert inbound.sweep_inbox() == 3  # nothing in the queue: all three messages were lost
    assert inbound_queue.llen("inbound") == 3
    assert inbound.sweep_inbox() == 0  # their messages are waiting now: a backlog, not a loss
    assert inbound_queue.llen("inbound") == 3


def test_only_the_shortfall_is_re_enqueued_oldest_first(inbound_queue):
    events = pending_events(4)
    inbound._enqueue(events[3].pk)  # one message made it to the broker
    assert inbound.sweep_inbox() == 3
    queued = inbound_queue.lrange("inbound", 0, -1)
    assert len(queued) == 4


def test_overdue_retries_are_re_enqueued_whatever_the_queue_holds(inbound_queue):
    (event,) = pending_events(1)
    InboundEvent.objects.filter(pk=event.pk).update(status=InboundStatus.RETRYING,
                                                    next_attempt_at=timezone.now() - timedelta(seconds=30))
    for _ in range(5):
        inbound._enqueue(999_999)  # an unrelated backlog
    assert inbound.sweep_inbox() == 1


def test_an_empty_queue_has_depth_zero_not_unknown(inbound_queue):
    # Redis deletes an empty list: the queue "does not exist", which means nothing waits in it.
    from hub.broker import queue_depth

    assert queue_depth("inbound") == 0
    inbound._enqueue(1)
    assert queue_depth("inbound") == 1
