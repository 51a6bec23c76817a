"""The broker is configuration: the same tests run on Redis (the default) and RabbitMQ (``make test-rabbitmq``)."""

from __future__ import annotations

from django.conf import settings

from hub.celery import app
from tests.e2e.stack import purge_queues

QUEUES = ("default", "inbound", "push", "batch")
ON_AMQP = settings.CELERY_BROKER_URL.startswith(("amqp", "pyamqp"))


def test_the_configured_broker_is_the_one_in_use():
    with app.connection_for_write() as conn:
        conn.ensure_connection(max_retries=3)
        expected = "amqp" if ON_AMQP else "redis"
        assert conn.transport.driver_type == expected
    assert sorted(route["queue"] for route in settings.CELERY_TASK_ROUTES.values()) == ["batch", "inbound", "push"]


def _depth(conn, queue: str) -> int:
    channel = conn.channel()
    try:
        return channel.queue_declare(queue=queue, passive=True).message_count
    finally:
        channel.close()


# On AMQP purging a queue that does not exist closes the channel (404 NOT_FOUND); the later purges must still work.
def test_purge_empties_every_queue_even_when_one_does_not_exist():
    purge_queues()  # what earlier tests left behind
    with app.connection_for_write() as conn:
        channel = conn.channel()
        for queue in QUEUES:
            channel.queue_declare(queue=queue, durable=True, auto_delete=False)
        channel.queue_delete(queue="default")  # the first queue purged is missing
        producer = conn.Producer(channel)
        producer.publish({"left": "over"}, routing_key="inbound", serializer="json")
        if ON_AMQP:
            assert _depth(conn, "inbound") == 1
        channel.close()
    purge_queues()
    with app.connection_for_write() as conn:
        assert _depth(conn, "inbound") == 0 if ON_AMQP else conn.default_channel.client.llen("inbound") == 0
