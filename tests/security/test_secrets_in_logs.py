"""No secret reaches a log: a realistic flow through real Celery workers (JSON logs, DEBUG), then every log is scanned.

Webhooks are accepted and refused (a forged signature), a sale is pushed to a sandbox WooCommerce (works) and to a
sandbox Shopify whose token is wrong (401). The secrets used - webhook secrets, access tokens, consumer keys and
secrets, the raw HMAC header values - must appear in neither the worker's log file nor this process's logs.
"""

from __future__ import annotations

import pytest
from django.test import Client

from channels_app.models import InboundEvent, InboundStatus, PushLog
from tests.channels.helpers import list_sku, make_channel, post, shopify_headers, shopify_order
from tests.channels.sandboxed import CREDENTIALS, connect, remote
from tests.e2e.stack import LOG_DIR, Worker, purge_queues, wait_until
from tests.factories import make_location, make_sku

pytestmark = [pytest.mark.django_db(transaction=True), pytest.mark.slow]

SHOP_SECRET = "whsec-LOGSCAN-shop-5c1e9a"
WRONG_TOKEN = "shpat_LOGSCAN_wrong_token_0b7d"


def test_secrets_never_reach_the_logs(caplog, capfd):
    caplog.set_level("DEBUG")
    purge_queues()
    log_path = LOG_DIR / "worker-logscan.log"
    log_path.unlink(missing_ok=True)
    wh = make_location()
    tee = make_sku("LOG-TEE", stock_at={wh: 30})
    woo, woo_sandbox = connect("woocommerce", {tee: 30})
    bad, bad_sandbox = connect("shopify", {tee: 30}, credentials={"access_token": WRONG_TOKEN})
    shop = make_channel("shopify", slug="logscan-shop", secret=SHOP_SECRET)
    list_sku(shop, tee, external_variant_id="111")
    hmac_values = []
    worker = Worker("logscan", concurrency=2, LOG_FORMAT="json", LOG_LEVEL="DEBUG")
    try:
        with woo_sandbox, bad_sandbox:
            client = Client()
            body = shopify_order(4101, [(41011, "LOG-TEE", 111, 3)])
            headers = shopify_headers(SHOP_SECRET, body, "orders/create")
            hmac_values.append(headers["X-Shopify-Hmac-Sha256"])
            assert post(client, "logscan-shop", body, headers).status_code == 200
            forged = shopify_headers("not-the-secret", body, "orders/create")
            hmac_values.append(forged["X-Shopify-Hmac-Sha256"])
            assert post(client, "logscan-shop", body, forged).status_code == 401
            wait_until(lambda: remote(woo_sandbox, tee) == 27, timeout=60, message="the sale to reach WooCommerce")
            wait_until(lambda: PushLog.objects.filter(channel=bad, ok=False).exists(), timeout=60,
                       message="the push with a wrong token to fail")
            failed = PushLog.objects.filter(channel=bad, ok=False).first()
            assert failed.http_status == 401 or "401" in failed.error, (failed.http_status, failed.error)
            assert InboundEvent.objects.get(channel=shop).status == InboundStatus.PROCESSED
    finally:
        worker.stop()

    secrets = {SHOP_SECRET, WRONG_TOKEN, *hmac_values, woo.webhook_secret, bad.webhook_secret,
               *(v for kind in ("woocommerce", "shopify") for k, v in CREDENTIALS[kind].items() if k != "store_hash")}
    secrets = {s for s in secrets if len(s) >= 6}  # "wc"/"shh" are sandbox defaults too short to scan for
    worker_log = log_path.read_text(errors="replace")
    assert "push" in worker_log and "DEBUG" in worker_log, "the worker logged the flow at DEBUG"
    captured = capfd.readouterr()
    sources = {"worker log": worker_log, "test logs": caplog.text, "test stdout": captured.out,
                "test stderr": captured.err,
                "push log rows": " ".join(f"{p.error} {p.request_body if hasattr(p, 'request_body') else ''}"
                                          for p in PushLog.objects.all())}
    leaks = [(name, secret) for name, text in sources.items() for secret in secrets if secret in text]
    assert not leaks, leaks
