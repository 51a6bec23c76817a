"""CPU and statements of the hot paths, in one process, without Celery or gunicorn around them.

* receive one webhook: a signed Shopify ``orders/create`` through Django's WSGI handler;
* apply one channel order: ``inbound.process_event`` on a stored one-line Shopify ``orders/create``, and the same
  orders applied by the inbox drain, several to a transaction (``inbound.drain``);
* one push: a reservation on one of 50 SKUs, then ``outbound.push_channel`` to a Shopify or WooCommerce
  sandbox served over HTTP by a thread of this process (so its CPU is counted in the figure too).

Prints a markdown table and writes bench/results/hot_paths.md. CPU is this process's ``process_time`` and,
separately, its PostgreSQL backend's (from /proc: the database must run on this machine).

    .venv/bin/python bench/hot_paths.py
"""

from __future__ import annotations

import argparse
import contextlib
import io
import os
import platform
import sys
import time
import uuid
from datetime import UTC, datetime
from pathlib import Path

import _django

# Its own Redis database: the receipt row wakes an inbox drain (one task while its flag stands) and no worker
# takes it, so every receipt after the first costs the flag check alone, as while a drain is queued.
os.environ.setdefault("REDIS_URL", "redis://127.0.0.1:6379/13")
_django.setup(fresh=True)

from django.db import connection  # noqa: E402
from django.db.models import F  # noqa: E402
from django.test.utils import CaptureQueriesContext  # noqa: E402

from channels_app import inbound, outbound  # noqa: E402
from channels_app.models import InboundEvent, Listing  # noqa: E402
from inventory_app import stock  # noqa: E402
from inventory_app.stock import LineRequest  # noqa: E402
from tests.channels.helpers import list_sku, make_channel, map_location, shopify_headers, shopify_order  # noqa: E402
from tests.channels.sandboxed import connect  # noqa: E402
from tests.factories import make_location, make_sku  # noqa: E402

RESULTS = Path(__file__).resolve().parent / "results"


def backend_cpu() -> float:
    """CPU seconds of this connection's PostgreSQL backend (same machine: /proc)."""
    with connection.cursor() as cursor:
        cursor.execute("SELECT pg_backend_pid()")
        pid = cursor.fetchone()[0]
    fields = Path(f"/proc/{pid}/stat").read_text().rsplit(")", 1)[1].split()
    return (int(fields[11]) + int(fields[12])) / os.sysconf("SC_CLK_TCK")


def measure(step, count: int) -> tuple[int, float, float, float]:
    step(0)  # warms per-process caches
    with CaptureQueriesContext(connection) as queries:
        step(1)
    pg = backend_cpu()
    wall, cpu = time.perf_counter(), time.process_time()
    for i in range(2, count + 2):
        step(i)
    return (len(queries.captured_queries), (time.process_time() - cpu) / count * 1000,
            (backend_cpu() - pg) / count * 1000, (time.perf_counter() - wall) / count * 1000)


def one_line_orders(prefix: str, base: int):
    """A Shopify channel listing 20 SKUs, and ``make(first, n)``: n of its one-line ``orders/create`` events,
    stored as receipt stores them (ids returned)."""
    wh = make_location()
    skus = [make_sku(stock_at={wh: 1_000_000}) for _ in range(20)]
    channel = make_channel("shopify")
    map_location(channel, wh, "1")
    for i, sku in enumerate(skus):
        list_sku(channel, sku, external_variant_id=str(100 + i), external_inventory_item_id=str(200 + i))

    def make(first: int, n: int) -> list[int]:
        return [event.pk for event in InboundEvent.objects.bulk_create([InboundEvent(
            channel=channel, dedup_key=f"{prefix}{k}", delivery_id=f"{prefix}{k}", topic="orders/create", headers={},
            body=shopify_order(base + k, [(base + k, skus[k % 20].code, 100 + k % 20, 1)]).decode())
            for k in range(first, first + n)])]

    return make


def orders(count: int) -> tuple[int, float, float, float]:
    events = one_line_orders("hp", int(time.time() * 1000) % 10**9)(0, count + 2)

    def step(i: int) -> None:
        assert inbound.process_event(events[i]) == "processed"

    return measure(step, count)


def drained_orders(count: int) -> tuple[int, float, float, float]:
    """The same orders applied by the inbox drain, ``inbound.DRAIN_BATCH`` to a transaction; figures per order."""
    store = one_line_orders("hd", int(time.time() * 1000) % 10**9 + 500_000)
    # The receipts measured before stay pending (no worker here); set aside, or the drain would apply them too.
    InboundEvent.objects.filter(status="pending").update(status="ignored")
    store(0, inbound.DRAIN_BATCH)
    assert inbound.drain() == inbound.DRAIN_BATCH  # warms per-process caches
    store(inbound.DRAIN_BATCH, inbound.DRAIN_BATCH)
    with CaptureQueriesContext(connection) as queries:
        assert inbound.drain() == inbound.DRAIN_BATCH
    statements = len(queries.captured_queries) / inbound.DRAIN_BATCH
    store(2 * inbound.DRAIN_BATCH, count)
    pg = backend_cpu()
    wall, cpu = time.perf_counter(), time.process_time()
    assert inbound.drain(max_events=count, max_seconds=600) == count
    return (round(statements), (time.process_time() - cpu) / count * 1000, (backend_cpu() - pg) / count * 1000,
            (time.perf_counter() - wall) / count * 1000)


def receipts(count: int) -> tuple[int, float, float, float]:
    """A signed Shopify orders/create through Django's WSGI handler (what gunicorn calls), for a channel the
    process has seen: verify, store in the inbox, enqueue, answer."""
    from django.core.handlers.wsgi import WSGIHandler

    from hub.redis import get_redis

    app, secret = WSGIHandler(), "hot-paths"
    channel = make_channel("shopify", secret=secret)
    bodies = [shopify_order(9_000_000 + i, [(1, "TEE", 111, 1)]) for i in range(count + 3)]

    def step(i: int) -> None:
        headers = shopify_headers(secret, bodies[i], "orders/create")
        environ = {"REQUEST_METHOD": "POST", "PATH_INFO": f"/webhooks/{channel.slug}/", "SERVER_NAME": "127.0.0.1",
                   "SERVER_PORT": "8000", "HTTP_HOST": "127.0.0.1", "wsgi.url_scheme": "http", "wsgi.errors": sys.stderr,
                   "REMOTE_ADDR": "127.0.0.1", "wsgi.input": io.BytesIO(bodies[i]), "CONTENT_TYPE": "application/json",
                   "CONTENT_LENGTH": str(len(bodies[i])),
                   **{f"HTTP_{k.upper().replace('-', '_')}": v for k, v in headers.items()}}
        status = []
        b"".join(app(environ, lambda s, h: status.append(s)))
        assert status == ["200 OK"], status

    try:
        _, cpu, pg, wall = measure(step, count)
        # The request cycle resets Django's query log, so count this path's statements as they execute.
        executed: list[str] = []

        def counting(execute, sql, params, many, context):
            executed.append(sql)
            return execute(sql, params, many, context)

        with connection.execute_wrapper(counting):
            step(count + 2)
        return len(executed), cpu, pg, wall
    finally:
        get_redis().flushdb()  # the bench's own database (above): the queued tasks nobody will run


def reservations(count: int) -> tuple[int, float, float, float]:
    wh = make_location()
    skus = [make_sku(stock_at={wh: 1_000_000}) for _ in range(50)]
    run = uuid.uuid4().hex[:6]

    def step(i: int) -> None:
        stock.reserve(lines=[LineRequest(skus[i % 50].code, 1)], key=f"hp-{run}-{i}")

    return measure(step, count)


def pushes(kind: str, count: int) -> tuple[int, float, float, float]:
    wh = make_location()
    skus = [make_sku(stock_at={wh: 1_000_000}) for _ in range(50)]
    channel, sandbox = connect(kind, {sku: 0 for sku in skus},
                               channel_fields={"rate_limit_capacity": 10_000, "rate_limit_per_second": 10_000},
                               plan={"rest_bucket": 10_000, "rest_leak": 10_000, "graphql_bucket": 1_000_000,
                                     "graphql_restore": 1_000_000})
    with sandbox:
        outbound.push_channel(channel.pk)

        def step(i: int) -> None:
            stock.reserve(lines=[LineRequest(skus[i % 50].code, 1)])
            outbound.push_channel(channel.pk)

        result = measure(step, count)
        assert not Listing.objects.filter(channel=channel, status="failed").exists()
    return result


ROUND_KINDS = ("shopify", "shopify", "woocommerce", "bigcommerce", "standard")


def round_pushes(count: int) -> tuple[int, float, float, float]:
    """A sale of three SKUs listed on five channels, and the push round that sends each channel its three numbers."""
    wh = make_location()
    skus = [make_sku(stock_at={wh: 1_000_000}) for _ in range(30)]
    unlimited = {"rate_limit_capacity": 10_000, "rate_limit_per_second": 10_000}
    plan = {"rest_bucket": 10_000, "rest_leak": 10_000, "graphql_bucket": 1_000_000, "graphql_restore": 1_000_000,
            "window_quota": 1_000_000}
    pairs = [connect(kind, {sku: 0 for sku in skus}, channel_fields=unlimited, plan=plan) for kind in ROUND_KINDS]
    channel_ids = [channel.pk for channel, _ in pairs]
    with contextlib.ExitStack() as servers:
        for _, sandbox in pairs:
            servers.enter_context(sandbox)
        outbound.push_channels(channel_ids)

        def step(i: int) -> None:
            stock.reserve(lines=[LineRequest(skus[(3 * i + j) % 30].code, 1) for j in range(3)])
            outbound.push_channels(channel_ids)

        result = measure(step, count)
        assert not Listing.objects.filter(channel_id__in=channel_ids, status="failed").exists()
        assert not Listing.objects.filter(channel_id__in=channel_ids, desired_version__gt=F("pushed_version")).exists()
    return result


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--count", type=int, default=300)
    parser.add_argument("--only", help="run the paths whose name contains this (e.g. under valgrind)")
    args = parser.parse_args()
    paths = [("receive a webhook for a known channel (WSGI handler, in process)", receipts),
             ("apply a one-line channel order (process_event)", orders),
             (f"the same, applied by the inbox drain ({inbound.DRAIN_BATCH} a transaction; per order)", drained_orders),
             ("reserve one unit with a caller key (stock.reserve)", reservations)]
    for kind in ("shopify", "woocommerce"):
        paths.append((f"reserve one unit + push it to {kind} (sandbox in process)",
                      lambda count, kind=kind: pushes(kind, count)))
    paths.append((f"reserve three SKUs + one push round to {len(ROUND_KINDS)} channels "
                  f"({', '.join(ROUND_KINDS)}; sandboxes in process)", round_pushes))
    rows = [(name, *path(args.count)) for name, path in paths if not args.only or args.only in name]
    text = (f"Hot paths · {platform.node()} · {datetime.now(UTC):%Y-%m-%d %H:%M} UTC · {args.count} each · "
            f"run {uuid.uuid4().hex[:6]}\n\n| path | statements | CPU ms (this process) | CPU ms (PostgreSQL backend) "
            f"| wall ms |\n|---|---:|---:|---:|---:|\n")
    text += "".join(f"| {name} | {n} | {cpu:.2f} | {pg:.2f} | {wall:.1f} |\n" for name, n, cpu, pg, wall in rows)
    print(text)
    RESULTS.mkdir(exist_ok=True)
    (RESULTS / "hot_paths.md").write_text(text)


if __name__ == "__main__":
    main()
