"""Webhook ack latency on gunicorn: open-loop load of signed Shopify ``orders/create`` webhooks.

Every request is built and signed before its step starts (body, HMAC, unique X-Shopify-Webhook-Id, exactly as
the Shopify sandbox signs its deliveries), then an asyncio client on raw keep-alive sockets sends them on a
fixed schedule (open loop). Latency is measured from each request's *scheduled* send time to the end of its
response, so a stalled server is charged for the requests queued behind it (no coordinated omission).
Celery workers run during the test and process every accepted order (stock, pushes to the sandbox), as in
production; the figure is the ack.

    .venv/bin/python bench/ingest.py            # gunicorn settings sweep at 300/s, then 100..600/s on the best
    .venv/bin/python bench/ingest.py --quick    # smoke run, under a minute
    .venv/bin/python bench/ingest.py --celery-workers 0 --configs 2x4,2x2   # the ack path alone

Writes bench/results/ingest.md.
"""

from __future__ import annotations

import argparse
import asyncio
import collections
import contextlib
import gc
import json
import os
import platform
import sys
import time
import uuid
from datetime import UTC, datetime
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent))

import _django  # noqa: E402
import stack  # noqa: E402

NAME = "ingest"


def build_requests(sandbox, channel_slug: str, port: int, count: int, seq0: int) -> list[bytes]:
    """``count`` complete HTTP/1.1 requests, each a distinct signed orders/create for 1-3 catalog SKUs."""
    from channels_app.sandbox.base import Order, OrderLine

    state = sandbox.state
    items = list(state.items)
    out = []
    now = datetime.now(UTC)
    for n in range(seq0, seq0 + count):
        lines = []
        for j in range(1 + n % 3):
            item = items[(n * 7 + j * 13) % len(items)]
            lines.append(OrderLine(line_id=9_000_000_000 + n * 4 + j, sku=item.sku, quantity=1, price=item.price,
                                   name=item.name, product_id=item.product_id, variant_id=item.variant_id,
                                   inventory_item_id=item.inventory_item_id, location_id=item.location_id))
        order = Order(order_id=8_000_000_000 + n, number=100_000 + n, lines=lines, currency="USD", created_at=now,
                      updated_at=now)
        body = json.dumps(state._order_json(order), separators=(",", ":")).encode()
        headers = {"Content-Type": "application/json", "User-Agent": "Tally-Bench/ingest",
                   **state.sign_webhook("orders/create", body, str(uuid.uuid4()), None)}
        head = f"POST /webhooks/{channel_slug}/ HTTP/1.1\r\nHost: 127.0.0.1:{port}\r\nContent-Length: {len(body)}\r\n"
        head += "".join(f"{k}: {v}\r\n" for k, v in headers.items())
        out.append(head.encode() + b"\r\n" + body)
    return out


# Below gunicorn's keepalive (hub/gunicorn.conf.py: 5 s); an idle connection older than this is not reused.
KEEPALIVE_REUSE_SECONDS = 4.0


class Conn:
    def __init__(self, reader, writer):
        self.reader, self.writer = reader, writer
        self.used_at = 0.0

    async def exchange(self, request: bytes) -> int:
        self.writer.write(request)
        head = await self.reader.readuntil(b"\r\n\r\n")
        status = int(head[9:12])
        length, close = 0, False
        for line in head.split(b"\r\n")[1:]:
            name, _, value = line.partition(b":")
            name = name.strip().lower()
            if name == b"content-length":
                length = int(value)
            elif name == b"connection" and value.strip().lower() == b"close":
                close = True
        if length:
            await self.reader.readexactly(length)
        if close:
            raise ConnectionResetError("server closed")
        return status

    def close(self) -> None:
        self.writer.close()


async def run_step(port: int, requests_: list[bytes], rate: float, max_conns: int, timeout: float) -> dict:
    """Send ``requests_`` at ``rate``/s on a fixed schedule; returns latencies (ms, from schedule) and errors."""
    idle: list[Conn] = []
    waiting: collections.deque = collections.deque()
    opened = 0
    latencies: list[float] = []
    sent_at: list[float] = []  # each latency's scheduled send, seconds into the step
    errors: dict[str, int] = {}
    loop = asyncio.get_running_loop()

    def done(scheduled: float) -> None:
        latencies.append((loop.time() - scheduled) * 1000)
        sent_at.append(scheduled - start)

    async def open_conn() -> Conn:
        nonlocal opened
        opened += 1
        try:
            reader, writer = await asyncio.open_connection("127.0.0.1", port)
        except OSError:
            opened -= 1
            raise
        return Conn(reader, writer)

    async def get_conn() -> Conn:
        nonlocal opened
        while idle:
            conn = idle.pop()  # the most recently used first
            if loop.time() - conn.used_at < KEEPALIVE_REUSE_SECONDS:
                return conn
            # gunicorn closes a keep-alive connection idle for `keepalive` (5 s): sending on it as it closes
            # failed the request twice at times, an error of this client, not of the server.
            conn.close()
            opened -= 1
        if opened < max_conns:
            return await open_conn()
        future = loop.create_future()
        waiting.append(future)
        return await future

    def put_conn(conn: Conn) -> None:
        conn.used_at = loop.time()
        while waiting:
            future = waiting.popleft()
            if not future.done():
                future.set_result(conn)
                return
        idle.append(conn)

    async def replace_conn() -> None:
        with contextlib.suppress(OSError):
            put_conn(await open_conn())

    async def one(request: bytes, scheduled: float) -> None:
        nonlocal opened
        for attempt in range(2):
            conn = None
            try:
                conn = await get_conn()
                if loop.time() - scheduled > timeout:  # queued client-side past the deadline: a timeout, unsent
                    put_conn(conn)
                    done(scheduled)
                    errors["timeout"] = errors.get("timeout", 0) + 1
                    return
                status = await asyncio.wait_for(conn.exchange(request), timeout)
                done(scheduled)
                if status != 200:
                    errors[str(status)] = errors.get(str(status), 0) + 1
                put_conn(conn)
                return
            except (ConnectionError, asyncio.IncompleteReadError, OSError, TimeoutError) as exc:
                if conn is not None:
                    conn.close()
                    opened -= 1
                    if waiting:
                        asyncio.ensure_future(replace_conn())
                if attempt == 1 or isinstance(exc, TimeoutError):
                    done(scheduled)
                    errors[type(exc).__name__] = errors.get(type(exc).__name__, 0) + 1
                    return

    tasks = []
    start = loop.time() + 0.05
    late_max = 0.0
    for i, request in enumerate(requests_):
        scheduled = start + i / rate
        delay = scheduled - loop.time()
        if delay > 0.0005:
            await asyncio.sleep(delay)
        else:
            late_max = max(late_max, -delay)
        tasks.append(asyncio.ensure_future(one(request, scheduled)))
    send_end = loop.time()
    await asyncio.wait_for(asyncio.gather(*tasks), 2 * timeout + 30)
    end = loop.time()
    for conn in idle:
        conn.close()
    return {"latencies": latencies, "sent_at": sent_at, "errors": errors, "elapsed": end - start,
            "send_elapsed": send_end - start, "late_max_ms": late_max * 1000, "conns": opened}


def pending_events() -> int:
    from channels_app.models import InboundEvent

    return InboundEvent.objects.filter(status__in=["pending", "retrying"]).count()


def drop_backlog(s: stack.Stack) -> None:
    """Set aside what earlier steps left unapplied: its queued messages, and its inbox rows (a drain would
    take them up again), marked ignored so the step's "processed" counts its own orders only."""
    from django.db import transaction

    from channels_app.models import InboundEvent

    s.purge_queues()
    # Only rows no drain holds: waiting for the drains' row locks kept this statement's snapshot open for
    # up to 20 s, and with it every dead row version the stack made meanwhile, which slowed the next step's
    # reads of the busiest tables. The ones held are being applied; a few more rounds finds them done.
    for _ in range(100):
        left = InboundEvent.objects.filter(status__in=["pending", "retrying"])
        if not left.exists():
            break
        with transaction.atomic():
            InboundEvent.objects.filter(pk__in=left.select_for_update(skip_locked=True).values("pk")).update(
                status="ignored", last_error="bench: left unapplied by an earlier step")
        time.sleep(0.05)


def processed_events() -> int:
    from channels_app.models import InboundEvent

    return InboundEvent.objects.filter(status="processed").count()


def by_second(sent_at: list[float], latencies: list[float]) -> list[tuple[int, float]]:
    """p99 of the requests scheduled in each second of a step: shows whether a tail is spread or a stall."""
    seconds: dict[int, list[float]] = collections.defaultdict(list)
    for at, ms in zip(sent_at, latencies, strict=True):
        seconds[int(at)].append(ms)
    return [(second, _django.percentile(seconds[second], 99)) for second in sorted(seconds)]


TIMELINE = False


def measure(s: stack.Stack, rate: float, seconds: float, seq: list[int], max_conns: int, label: str) -> dict:
    count = int(rate * seconds)
    reqs = build_requests(s.sandboxes[0], s.channels[0].slug, s.port, count, seq[0])
    seq[0] += count
    drop_backlog(s)  # the backlog of an earlier step must not be worked off during this one
    processed0 = processed_events()
    cpu0, wall0 = s.cpu_breakdown(), time.monotonic()
    # The client's own pauses count against the server (latency runs from the scheduled send time), so the
    # collector must not stop this process mid-step: a full collection of this heap (Django, the sandboxes,
    # thousands of prepared requests) took tens of milliseconds and showed up as the hub's p99.
    gc.collect()
    gc.disable()
    try:
        result = asyncio.run(run_step(s.port, reqs, rate, max_conns, timeout=10))
    finally:
        gc.enable()
    wall = time.monotonic() - wall0
    cpu1 = s.cpu_breakdown()
    lat = result["latencies"]
    row = {
        "config": label, "offered": rate, "sent": count, "achieved": (count - sum(result["errors"].values()))
        / result["elapsed"], "p50": _django.percentile(lat, 50), "p95": _django.percentile(lat, 95),
        "p99": _django.percentile(lat, 99), "max": max(lat) if lat else float("nan"),
        "errors": sum(result["errors"].values()), "error_kinds": result["errors"],
        "cpu_web": (cpu1["web"] - cpu0["web"]) / wall, "cpu_celery": (cpu1["celery"] - cpu0["celery"]) / wall,
        "cpu_pg": (cpu1["postgres"] - cpu0["postgres"]) / wall, "cpu_gen": (cpu1["bench"] - cpu0["bench"]) / wall,
        "cpu_machine": (cpu1["machine"] - cpu0["machine"]) / wall,
        "processed": processed_events() - processed0, "backlog": pending_events(), "conns": result["conns"],
        "late_ms": result["late_max_ms"],
    }
    print(f"  {label:>10} {rate:5.0f}/s: achieved {row['achieved']:.0f}/s p50 {row['p50']:.1f} p95 {row['p95']:.1f} "
          f"p99 {row['p99']:.1f} max {row['max']:.0f} ms, errors {row['errors']} {row['error_kinds'] or ''}, "
          f"cpu web {row['cpu_web']:.2f} celery {row['cpu_celery']:.2f} pg {row['cpu_pg']:.2f} "
          f"gen {row['cpu_gen']:.2f} machine {row['cpu_machine']:.2f}, processed {row['processed']}, "
          f"conns {row['conns']}", flush=True)
    if TIMELINE:
        print("             p99 by second: " + " ".join(f"{ms:.0f}" for _, ms in by_second(result["sent_at"], lat)),
              flush=True)
    return row


TABLE_HEAD = ("| gunicorn | offered/s | achieved/s | p50 ms | p95 ms | p99 ms | max ms | errors | CPU web | CPU celery "
              "| CPU pg | CPU loadgen | CPU machine | orders processed | conns |\n"
              "|---|---:|---:|---:|---:|---:|---:|---:|---:|---:|---:|---:|---:|---:|---:|")


def table(rows: list[dict]) -> str:
    lines = [TABLE_HEAD]
    for r in rows:
        lines.append(f"| {r['config']} | {r['offered']:.0f} | {r['achieved']:.0f} | {r['p50']:.1f} | {r['p95']:.1f} | "
                     f"{r['p99']:.1f} | {r['max']:.0f} | {r['errors']} | {r['cpu_web']:.2f} | {r['cpu_celery']:.2f} | "
                     f"{r['cpu_pg']:.2f} | {r['cpu_gen']:.2f} | {r['cpu_machine']:.2f} | {r['processed']} | {r['conns']} |")
    return "\n".join(lines)


def parse_config(text: str) -> tuple[int, int]:
    workers, _, threads = text.partition("x")
    return int(workers), int(threads)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--quick", action="store_true", help="smoke run (< 60 s)")
    parser.add_argument("--configs", default="2x4,2x8,3x4,4x2,1x16",
                        help="gunicorn WORKERSxTHREADS settings to compare at --sweep-rate")
    parser.add_argument("--sweep-rate", type=float, default=300)
    parser.add_argument("--sweep-seconds", type=float, default=10)
    parser.add_argument("--rates", default="100,200,300,400,600")
    parser.add_argument("--seconds", type=float, default=15)
    parser.add_argument("--max-conns", type=int, default=64, help="client keep-alive connections at most")
    parser.add_argument("--celery-workers", type=int, default=1)
    parser.add_argument("--concurrency", type=int, default=2)
    parser.add_argument("--timeline", action="store_true", help="print each step's p99 second by second")
    args = parser.parse_args()
    global TIMELINE
    TIMELINE = args.timeline
    if args.quick:
        args.configs, args.sweep_seconds, args.rates, args.seconds = "2x4", 4, "100,300", 5
    configs = [parse_config(c) for c in args.configs.split(",") if c]
    rates = [float(r) for r in args.rates.split(",") if r]

    stack.setup_django(NAME)
    started = time.monotonic()
    seq = [0]
    sweep: list[dict] = []
    ladder: list[dict] = []
    with stack.Stack(NAME, channels=[("shopify", 50)], skus=50, stock=10_000_000, web_workers=configs[0][0],
                     web_threads=configs[0][1], celery_workers=args.celery_workers, concurrency=args.concurrency) as s:
        measure(s, 50, 2, seq, args.max_conns, "warm-up")
        if len(configs) > 1 or not args.quick:
            print(f"gunicorn sweep at {args.sweep_rate:.0f}/s, {args.sweep_seconds:.0f} s each", flush=True)
            for workers, threads in configs:
                if (workers, threads) != (s.web_workers, s.web_threads):
                    s.restart_web(workers, threads)
                    measure(s, 50, 2, seq, args.max_conns, "warm-up")
                sweep.append(measure(s, args.sweep_rate, args.sweep_seconds, seq, args.max_conns,
                                     f"{workers}x{threads}"))
            best = min(sweep, key=lambda r: (r["errors"], r["p99"]))["config"]
        else:
            best = f"{configs[0][0]}x{configs[0][1]}"
        workers, threads = parse_config(best)
        if (workers, threads) != (s.web_workers, s.web_threads):
            s.restart_web(workers, threads)
            measure(s, 50, 2, seq, args.max_conns, "warm-up")
        print(f"rate ladder on gunicorn {best}, {args.seconds:.0f} s each", flush=True)
        for rate in rates:
            ladder.append(measure(s, rate, args.seconds, seq, args.max_conns, best))
    header = (f"Webhook ingest benchmark · {platform.node()} · {os.cpu_count()} cores · PostgreSQL · "
              f"{time.strftime('%Y-%m-%d %H:%M UTC', time.gmtime())}{' · --quick' if args.quick else ''}\n\n"
              f"Signed Shopify `orders/create` (1-3 lines) to `POST /webhooks/<slug>/` on gunicorn (`hub.wsgi`, gthread); "
              f"open loop from an asyncio raw-socket client (≤ {args.max_conns} keep-alive connections); latency from "
              f"each request's scheduled send time to the end of the response. {args.celery_workers} Celery worker(s) "
              f"x{args.concurrency} (prefork) process the orders meanwhile (queues purged between steps). CPU columns "
              f"are cores used (CPU s / wall s); `CPU pg` counts the bench database's backends (an exited one "
              f"with what it had used when last seen); "
              f"`CPU machine` is every process on the box (other engineers' test runs share these {os.cpu_count()} cores).\n")
    text = header
    if sweep:
        text += f"\n### gunicorn settings at {args.sweep_rate:.0f}/s ({args.sweep_seconds:.0f} s each)\n\n" + table(sweep) + "\n"
    text += f"\n### Rate ladder on the best setting ({best}, {args.seconds:.0f} s each)\n\n" + table(ladder) + "\n"
    text += f"\nTotal run time {time.monotonic() - started:.0f} s.\n"
    print(text)
    # With no worker the figure is the ack path alone (the inbox absorbs the burst): kept apart from the
    # production layout's table.
    _django.write_result("ingest.md" if args.celery_workers else "ingest_ack_only.md", text)


if __name__ == "__main__":
    main()
