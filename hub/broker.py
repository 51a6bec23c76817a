"""What the broker holds, for sweepers that must not flood it.

A sweeper re-enqueues work whose message may have been lost (a crash between commit and enqueue, a broker
restart). Under a backlog, "pending for a few seconds" is also true of work whose message is simply waiting
in the queue: re-enqueueing all of it every sweep multiplies the backlog (measured: a chaos run at 40
events/s never drained). So a sweeper re-enqueues only as many as the queue is short of.
"""

from __future__ import annotations

import logging

log = logging.getLogger(__name__)


def queue_depth(queue: str) -> int | None:
    """Messages waiting in ``queue`` (not those a worker holds), or None when the broker cannot say."""
    from amqp.exceptions import ChannelError

    from hub.celery import app

    try:
        with app.connection_for_write() as conn:
            return conn.default_channel.queue_declare(queue=queue, passive=True).message_count
    except ChannelError:
        return 0  # no such queue (Redis drops an empty list; RabbitMQ before first use): nothing waiting
    except Exception:  # noqa: BLE001 - unknown depth: the caller falls back to re-enqueueing everything due
        log.warning("could not read the depth of queue %s", queue)
        return None


def missing_messages(queue: str, unfinished: int) -> int:
    """How many of ``unfinished`` rows have no message waiting in ``queue`` (all of them if unknown)."""
    depth = queue_depth(queue)
    return unfinished if depth is None else max(unfinished - depth, 0)
