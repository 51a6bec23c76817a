"""Metrics move as events flow; logs are JSON with the correlation id; secrets never reach a log line."""

from __future__ import annotations

import json
import logging
import re

import pytest
from django.test import Client

from hub.observability import JsonFormatter, correlation_id, redact
from tests.channels.helpers import list_sku, make_channel, post, shopify_headers, shopify_order
from tests.factories import make_location, make_sku

pytestmark = pytest.mark.django_db


def metric(text: str, name: str, **labels) -> float:
    total = 0.0
    for line in text.splitlines():
        if line.startswith(name) and all(f'{k}="{v}"' in line for k, v in labels.items()):
            total += float(line.rsplit(" ", 1)[1])
    return total


def test_metrics_endpoint_counters_move_as_webhooks_flow():
    client = Client()
    channel = make_channel("shopify", slug="shop", secret="shh")
    list_sku(channel, make_sku("TEE", stock_at={make_location(): 5}), external_variant_id="111")
    before = client.get("/metrics")
    assert before.status_code == 200
    accepted = metric(before.content.decode(), "tally_webhooks_total", channel="shop", outcome="accepted")
    refused = metric(before.content.decode(), "tally_webhooks_total", channel="shop", outcome="bad_signature")
    for order in range(3):
        body = shopify_order(order, [(order, "TEE", 111, 1)])
        post(client, "shop", body, shopify_headers("shh", body, "orders/create"))
    post(client, "shop", b"{}", shopify_headers("wrong", b"{}", "orders/create"))
    after = client.get("/metrics").content.decode()
    assert metric(after, "tally_webhooks_total", channel="shop", outcome="accepted") == accepted + 3
    assert metric(after, "tally_webhooks_total", channel="shop", outcome="bad_signature") == refused + 1
    assert metric(after, "tally_inbox_events", channel="shop", status="pending") == 3
    assert metric(after, "tally_push_backlog_listings", channel="shop") == 1


def test_metrics_token_when_configured(monkeypatch):
    monkeypatch.setenv("TALLY_METRICS_TOKEN", "scrape-me")
    client = Client()
    assert client.get("/metrics").status_code == 401
    assert client.get("/metrics", HTTP_AUTHORIZATION="Bearer scrape-me").status_code == 200


def test_json_log_lines_carry_the_correlation_id_and_extra_fields():
    record = logging.LogRecord("tally.test", logging.INFO, __file__, 1, "pushed %s", ("TEE",), None)
    record.channel = "shop"
    token = correlation_id.set("abc123")
    try:
        line = json.loads(JsonFormatter().format(record))
    finally:
        correlation_id.reset(token)
    assert line["message"] == "pushed TEE" and line["correlation_id"] == "abc123" and line["channel"] == "shop"


@pytest.mark.parametrize("secret", ["whsec_MfKQ9r8GKYqrTwjUPD8ILPZIo2LaLaSw", "shpat_0123456789abcdef0123",
                                    "ck_0123456789abcdef0123456789", "Authorization: Bearer relay-token-123",
                                    '"access_token": "super-secret-value"', "Atza|IwEBIAmzTokenValue0123",
                                    "Atzr|IwEBIRefreshValue0123"])
def test_redaction_of_known_secret_shapes(secret):
    out = redact(f"calling channel with {secret} now")
    assert "[redacted]" in out
    assert not re.search(r"MfKQ9r8G|0123456789abcdef|relay-token-123|super-secret-value|IwEBI", out)


def test_webhook_response_carries_the_events_correlation_id():
    client = Client()
    channel = make_channel("shopify", slug="shop", secret="shh")
    list_sku(channel, make_sku("TEE", stock_at={make_location(): 5}), external_variant_id="111")
    body = shopify_order(1, [(1, "TEE", 111, 1)])
    response = post(client, "shop", body, shopify_headers("shh", body, "orders/create"))
    assert response["X-Correlation-Id"] == response.json()["correlation_id"]


def test_celery_logs_failed_and_retried_tasks_but_not_each_success(caplog):
    """The real trace of a task run by Celery's tracer, through the logging configuration the workers use."""
    from celery import Celery
    from celery.app.trace import build_tracer

    app = Celery("obs-test", set_as_current=False)

    @app.task(name="obs.ok")
    def ok():
        return 1

    @app.task(name="obs.broken")
    def broken():
        raise ValueError("boom")

    trace_logger = logging.getLogger("celery.app.trace")
    caplog.set_level(logging.INFO, logger="celery.app.trace")
    trace_logger.addHandler(caplog.handler)  # caplog's own handler sits on the root, after the logger's filters
    try:
        for task in (ok, broken):
            build_tracer(task.name, task, app=app, eager=False)("task-id", (), {}, {})
    finally:
        trace_logger.removeHandler(caplog.handler)
    messages = [r.getMessage() for r in caplog.records if r.name == "celery.app.trace"]
    assert not any("obs.ok" in m and "succeeded" in m for m in messages), messages
    assert any("obs.broken" in m and "boom" in m for m in messages), messages
