"""A sale on one channel reaches the others through real workers, traced by one correlation id."""

from __future__ import annotations

import json

import pytest
from django.test import Client

from channels_app.models import InboundEvent, InboundStatus, PushLog
from tests.channels.helpers import list_sku, make_channel, post, shopify_headers, shopify_order
from tests.channels.sandboxed import connect, remote
from tests.e2e.stack import Worker, purge_queues, wait_until
from tests.factories import make_location, make_sku

pytestmark = [pytest.mark.django_db(transaction=True), pytest.mark.slow]


def test_order_webhook_to_other_channels_with_one_correlation_id():
    purge_queues()
    wh = make_location()
    tee = make_sku("TEE", stock_at={wh: 30})
    woo, woo_sandbox = connect("woocommerce", {tee: 30})
    shop = make_channel("shopify", slug="shop", secret="shh")
    list_sku(shop, tee, external_variant_id="111")
    worker = Worker("flow", concurrency=2, LOG_FORMAT="json")
    try:
        with woo_sandbox:
            body = shopify_order(77, [(771, "TEE", 111, 4)])
            response = post(Client(), "shop", body, shopify_headers("shh", body, "orders/create"))
            cid = response.json()["correlation_id"]
            wait_until(lambda: remote(woo_sandbox, tee) == 26, timeout=90, message="the sale to reach WooCommerce")
            assert InboundEvent.objects.get(channel=shop).status == InboundStatus.PROCESSED
            push = wait_until(lambda: PushLog.objects.filter(channel=woo, ok=True, quantity=26).first(), timeout=10,
                              message="the push record")
            assert push.correlation_id == cid
    finally:
        worker.stop()
    lines = [json.loads(line) for line in worker.log_path.read_text().splitlines() if line.startswith("{")]
    traced = [line for line in lines if line.get("correlation_id") == cid]
    assert traced, "worker log lines carry the webhook's correlation id"
    applied = [line for line in traced if line.get("message") == "inbound event processed"]
    assert applied and applied[0]["topic"] == "orders/create" and applied[0]["channel"] == "shop"
