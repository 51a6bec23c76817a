"""Contention benchmark for the stock operations, directly and through HTTP.

Prints a markdown table (ops/s, latency p50/p95/p99, oversold units, deadlocks) and writes it to
bench/results/contention.md. Direct runs use worker *processes* (not threads) so Python's GIL does not
hide the database's behaviour; the HTTP run drives gunicorn on loopback.

    DATABASE_URL=postgres://postgres:postgres@127.0.0.1:5432/tally_bench .venv/bin/python bench/contention.py
"""

from __future__ import annotations

import argparse
import multiprocessing as mp
import os
import platform
import socket
import subprocess
import sys
import threading
import time
import uuid

import _django

_django.setup(fresh=True)

from django.contrib.auth import get_user_model  # noqa: E402
from django.db import OperationalError, connection  # noqa: E402
from django.db.models import Sum  # noqa: E402
from rest_framework.authtoken.models import Token  # noqa: E402

from inventory_app import stock  # noqa: E402
from inventory_app.errors import InsufficientStock  # noqa: E402
from inventory_app.models import Location, Sku, StockLevel  # noqa: E402
from inventory_app.stock import LineRequest  # noqa: E402


def prepare(n_skus: int, units_each: int, tag: str) -> list[str]:
    locations = [Location.objects.get_or_create(code=f"bench-{i}", defaults={"name": f"bench {i}", "priority": i})[0]
                 for i in (1, 2)]
    codes = []
    for i in range(n_skus):
        sku = Sku.objects.create(code=f"{tag}-{i}", name=f"bench {i}")
        for location in locations:
            stock.receive(sku=sku, location=location, quantity=units_each // 2, source="bench")
        codes.append(sku.code)
    return codes


def _direct_worker(args) -> tuple[list[float], int, int, int]:
    codes, count, seed, mode = args
    import random

    from django.db import connections

    connections.close_all()
    rng = random.Random(seed)
    latencies, ok, refused, deadlocks = [], 0, 0, 0
    for i in range(count):
        code = codes[0] if mode == "hot" else rng.choice(codes)
        started = time.perf_counter()
        try:
            result = stock.reserve(lines=[LineRequest(code, 1)], key=f"bench-{seed}-{i}-{uuid.uuid4().hex[:6]}")
            if mode == "cycle":
                stock.commit(reservation_id=result["id"])
            ok += 1
        except InsufficientStock:
            refused += 1
        except OperationalError:
            deadlocks += 1
        latencies.append((time.perf_counter() - started) * 1000)
    connections.close_all()
    return latencies, ok, refused, deadlocks


def settle_statistics() -> None:
    # Fresh tables have no planner statistics until autovacuum analyses them, mid-run; analysed up front,
    # every scenario runs on the plans production would have.
    with connection.cursor() as cursor:
        cursor.execute("ANALYZE")
    connection.close()


def oversold(codes: list[str]) -> int:
    rows = StockLevel.objects.filter(sku__code__in=codes)
    return sum(max(r.reserved - r.on_hand, 0) for r in rows) + sum(max(-r.on_hand, 0) for r in rows)


def run_direct(name: str, mode: str, n_skus: int, units_each: int, attempts: int, procs: int) -> dict:
    codes = prepare(n_skus, units_each, f"{name}-{uuid.uuid4().hex[:6]}")
    settle_statistics()
    per = attempts // procs
    started = time.perf_counter()
    with mp.get_context("fork").Pool(procs) as pool:
        results = pool.map(_direct_worker, [(codes, per, seed, mode) for seed in range(procs)])
    elapsed = time.perf_counter() - started
    latencies = [x for r in results for x in r[0]]
    ok = sum(r[1] for r in results)
    reserved = StockLevel.objects.filter(sku__code__in=codes).aggregate(s=Sum("reserved"))["s"] or 0
    committed_or_held = ok if mode != "cycle" else ok  # every success holds or sold exactly one unit
    return {
        "scenario": name, "path": "stock module", "workers": f"{procs} processes", "attempts": per * procs,
        "ok": ok, "ops_s": per * procs / elapsed, "p50": _django.percentile(latencies, 50),
        "p95": _django.percentile(latencies, 95), "p99": _django.percentile(latencies, 99),
        "oversold": oversold(codes) + max(committed_or_held - n_skus * units_each, 0) if mode == "limited" else
        oversold(codes), "deadlocks": sum(r[3] for r in results), "check": reserved,
    }


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def run_http(name: str, n_skus: int, units_each: int, attempts: int, threads: int) -> dict:
    import requests

    codes = prepare(n_skus, units_each, f"{name}-{uuid.uuid4().hex[:6]}")
    user, _ = get_user_model().objects.get_or_create(username="bench")
    token, _ = Token.objects.get_or_create(user=user)
    port = free_port()
    env = {**os.environ, "DB_CONN_MAX_AGE": "600"}
    server = subprocess.Popen(
        [sys.executable, "-m", "gunicorn", "hub.wsgi:application", "--bind", f"127.0.0.1:{port}", "--workers", "3",
         "--threads", "4", "--log-level", "warning"], cwd=_django.ROOT, env=env)
    try:
        for _ in range(100):
            try:
                requests.get(f"http://127.0.0.1:{port}/healthz", timeout=1)
                break
            except requests.RequestException:
                time.sleep(0.1)
        latencies: list[float] = []
        statuses: dict[int, int] = {}
        lock = threading.Lock()
        per = attempts // threads

        def client(seed: int):
            import random

            rng = random.Random(seed)
            session = requests.Session()
            session.headers["Authorization"] = f"Token {token.key}"
            for i in range(per):
                started = time.perf_counter()
                resp = session.post(f"http://127.0.0.1:{port}/api/v1/reservations/",
                                    json={"lines": [{"sku": rng.choice(codes), "quantity": 1}]},
                                    headers={"Idempotency-Key": f"{seed}-{i}-{uuid.uuid4().hex[:6]}"}, timeout=30)
                elapsed = (time.perf_counter() - started) * 1000
                with lock:
                    latencies.append(elapsed)
                    statuses[resp.status_code] = statuses.get(resp.status_code, 0) + 1

        started = time.perf_counter()
        pool = [threading.Thread(target=client, args=(seed,)) for seed in range(threads)]
        for t in pool:
            t.start()
        for t in pool:
            t.join()
        elapsed = time.perf_counter() - started
    finally:
        server.terminate()
        server.wait(timeout=10)
    return {
        "scenario": name, "path": "HTTP (gunicorn 3x4)", "workers": f"{threads} client threads",
        "attempts": per * threads, "ok": statuses.get(201, 0), "ops_s": per * threads / elapsed,
        "p50": _django.percentile(latencies, 50), "p95": _django.percentile(latencies, 95),
        "p99": _django.percentile(latencies, 99), "oversold": oversold(codes),
        "deadlocks": sum(v for k, v in statuses.items() if k >= 500),
    }


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__)
    parser.add_argument("--attempts", type=int, default=4000)
    parser.add_argument("--procs", type=int, default=4)
    parser.add_argument("--http-attempts", type=int, default=2000)
    args = parser.parse_args()
    rows = [
        run_direct("reserve, 50 SKUs", "spread", 50, 100_000, args.attempts, args.procs),
        run_direct("reserve, 1 hot SKU", "hot", 1, 100_000, args.attempts, args.procs),
        run_direct("reserve+commit, 50 SKUs", "cycle", 50, 100_000, args.attempts, args.procs),
        run_direct("1 hot SKU, 100 units, 16 procs", "hot", 1, 100, 1600, 16),
        run_http("reserve via API, 50 SKUs", 50, 100_000, args.http_attempts, 16),
    ]
    header = (f"Contention benchmark · {platform.node()} · {os.cpu_count()} cores · PostgreSQL · "
              f"{time.strftime('%Y-%m-%d %H:%M UTC', time.gmtime())}\n\n")
    table = ["| scenario | path | concurrency | attempts | succeeded | ops/s | p50 ms | p95 ms | p99 ms | oversold "
             "| deadlocks/5xx |",
             "|---|---|---|---:|---:|---:|---:|---:|---:|---:|---:|"]
    for r in rows:
        table.append(f"| {r['scenario']} | {r['path']} | {r['workers']} | {r['attempts']} | {r['ok']} | {r['ops_s']:.0f} | "
                     f"{r['p50']:.2f} | {r['p95']:.2f} | {r['p99']:.2f} | {r['oversold']} | {r['deadlocks']} |")
    text = header + "\n".join(table) + "\n\n(reserve+commit counts one op per reservation, two transactions each)\n"
    print(text)
    _django.write_result("contention.md", text)


if __name__ == "__main__":
    main()
