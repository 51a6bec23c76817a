"""Scaling: end-to-end orders/s and pushes/s with 1, 2 and 4 Celery worker processes, then two "worker hosts" in
network namespaces sharing one broker and one database, with no duplicate pushes.

One stack (bench/stack.py, database ``tally_bench_scale``) on a private ``redis-server`` (db 8): gunicorn 2x4, beat,
7 sandbox channels (2 Shopify, 2 WooCommerce, BigCommerce, 2 Standard Webhooks; Amazon left out: its 5
listings/s platform limit caps pushes/s whatever the worker count), 50 SKUs with ample stock.

Each step sends ``--orders`` orders (1-2 units, Zipf SKU, uniform channel) open loop at ``--rate``/s (above what
the workers can apply, so a backlog forms) and times first send → every webhook applied and every listing pushed.
``orders/s`` = orders / that time; ``pushes/s`` = successful PushLog rows / that time.

Steps: one ``celery worker -c N`` (N = 1, 2, 4 pool processes) in the root namespace; then two hosts:
``ip netns add tally-a`` / ``tally-b``, each joined by a veth pair (root 10.200.<n>.1, namespace 10.200.<n>.2), one
``celery worker -c 2`` inside each (``ip netns exec``, hostnames ``hostA``/``hostB``). They reach the broker (the
private redis-server, bound to 127.0.0.1 and both root-side veth addresses) and PostgreSQL (a ``socat`` forwarder
bound to each root-side veth address → 127.0.0.1:5432) at the root-side veth address; the sandboxes listen on
10.200.1.1 so both namespaces reach them (namespace b through the root namespace). Namespaces, forwarders and the
private redis are removed at exit. Without permission for namespaces the two hosts are two root-namespace
worker processes with distinct hostnames (said in the table).

No duplicate pushes: no two successful PushLog rows of one (listing, version), and per listing the sandbox's push
writes (recorded at the sandboxes, this process) == successful PushLog rows (a push the hub did not record, e.g.
by a second pusher holding an expired lease, would show as an extra write).

    .venv/bin/python bench/scaling.py            # 1,000 orders per step
    .venv/bin/python bench/scaling.py --quick    # 150 orders per step

Writes bench/results/scaling.md.
"""

from __future__ import annotations

import argparse
import collections
import contextlib
import os
import platform
import random
import sys
import threading
import time
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent))

import _tally  # noqa: E402
import stack  # noqa: E402

NAME = "scale"
KINDS = ["shopify", "shopify", "woocommerce", "woocommerce", "bigcommerce", "standard", "standard"]
QUIET = {"reconcile_interval_seconds": 86_400, "catalog_interval_seconds": 86_400}


def worker_argv(name: str, concurrency: int) -> list[str]:
    return [sys.executable, "-m", "celery", "-A", "hub", "worker", "-Q", ",".join(stack.QUEUES), "-c", str(concurrency),
            "-n", name, "--without-gossip", "--without-mingle", "--without-heartbeat", "-l", "INFO"]


def set_workers(s: stack.Stack, procs: list[stack.Proc]) -> None:
    for old in s.workers:
        old.stop(grace=10)
    s.workers = procs
    s.n_celery = len(procs)
    s._wait_ready()


def run_step(s: stack.Stack, rec: _tally.WriteRecorder, label: str, n_orders: int, rate: float, seq_base: int,
             seed: int, timeout: float) -> dict:
    import requests
    from django.db.models import Count

    from channels_app.models import PushLog

    rng = random.Random(seed)
    skus = [sku.code for sku in s.skus]
    weights = [1 / (i + 1) ** 0.8 for i in range(len(skus))]
    orders = [{"i": i, "ch": rng.randrange(len(s.sandboxes)), "sku": rng.choices(skus, weights=weights)[0],
               "qty": 1 if rng.random() < 0.9 else 2} for i in range(n_orders)]
    pushes0 = PushLog.objects.filter(ok=True).count()
    statuses: collections.Counter = collections.Counter()
    local = threading.local()

    def post(o: dict) -> None:
        session = getattr(local, "session", None)
        if session is None:
            session = local.session = requests.Session()
        try:
            resp = session.post(f"{s.sandboxes[o['ch']].url}/_sandbox/orders", timeout=15, json={
                "lines": [{"sku": o["sku"], "quantity": o["qty"]}], "order_id": seq_base + o["i"], "wait": False})
            statuses[resp.status_code] += 1
        except requests.RequestException as exc:
            statuses[type(exc).__name__] += 1

    cpu0 = s.cpu_breakdown()
    t0 = time.perf_counter()
    with ThreadPoolExecutor(max_workers=16) as pool:
        for o in orders:
            delay = t0 + o["i"] / rate - time.perf_counter()
            if delay > 0:
                time.sleep(delay)
            pool.submit(post, o)
    send = time.perf_counter() - t0
    converged = s.wait_converged(timeout=timeout, interval=0.1)
    wall = time.perf_counter() - t0
    cpu1 = s.cpu_breakdown()
    pushes = PushLog.objects.filter(ok=True).count() - pushes0
    dup = PushLog.objects.filter(ok=True).values("listing_id", "version").annotate(n=Count("id")).filter(n__gt=1).count()
    cpu = {k: (cpu1[k] - cpu0[k]) / wall for k in cpu0}
    row = {"label": label, "orders": n_orders, "accepted": statuses.get(201, 0), "send": send, "wall": wall,
           "converged": converged, "orders_s": n_orders / wall, "pushes": pushes, "pushes_s": pushes / wall,
           "dup_versions": dup, "cpu": cpu, "statuses": dict(statuses)}
    print(f"  {label}: {n_orders} orders in {wall:.1f} s ({row['orders_s']:.1f}/s), {pushes} pushes "
          f"({row['pushes_s']:.1f}/s), converged {converged}, dup (listing, version) {dup}, cpu celery "
          f"{cpu['celery']:.2f} web {cpu['web']:.2f} pg {cpu['postgres']:.2f} machine {cpu['machine']:.2f}",
          file=sys.stderr, flush=True)
    return row


def write_check(s: stack.Stack, rec: _tally.WriteRecorder) -> tuple[int, int, list[str]]:
    """Sandbox push writes per listing vs successful PushLog rows per listing (whole run)."""
    from django.db.models import Count

    from channels_app.models import Listing, PushLog

    writes = collections.Counter((ch, sku) for _, ch, sku, _, oid in rec.writes if oid == -1)
    logged = {row["listing_id"]: row["n"] for row in PushLog.objects.filter(ok=True).values("listing_id")
              .annotate(n=Count("id"))}
    index = {ch.pk: i for i, ch in enumerate(s.channels)}
    bad = []
    for listing in Listing.objects.select_related("sku"):
        key = (index[listing.channel_id], listing.sku.code)
        if writes.get(key, 0) != logged.get(listing.pk, 0):
            bad.append(f"{s.channels[key[0]].slug}/{key[1]}: {writes.get(key, 0)} writes, {logged.get(listing.pk, 0)} logs")
    return sum(writes.values()), sum(logged.values()), bad


def host_tasks(log_path: Path) -> int:
    with contextlib.suppress(OSError):
        return log_path.read_text(errors="replace").count("push.channel[") // 2  # received + succeeded lines
    return 0


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--quick", action="store_true", help="150 orders per step")
    parser.add_argument("--orders", type=int, default=1000)
    parser.add_argument("--rate", type=float, default=60)
    parser.add_argument("--procs", default="1,2,4")
    parser.add_argument("--timeout", type=float, default=300, help="max seconds per step to apply and push everything")
    parser.add_argument("--no-netns", action="store_true", help="skip namespaces: two root-namespace worker processes")
    parser.add_argument("--seed", type=int, default=3)
    args = parser.parse_args()
    if args.quick:
        args.orders, args.timeout = 150, 90
    started = time.monotonic()
    rows, namespaces, forwarders, netns_note = [], [], [], ""
    if not args.no_netns:
        try:
            namespaces = [_tally.Netns("tally-a", 1).open(), _tally.Netns("tally-b", 2).open()]
        except Exception as exc:  # noqa: BLE001 - no permission: fall back, and say why
            netns_note = f"network namespaces impossible here ({type(exc).__name__}: {getattr(exc, 'stderr', exc)!s})"
            for ns in namespaces:
                ns.close()
            namespaces = []
    bind = " ".join(["127.0.0.1", *(ns.root_ip for ns in namespaces)])
    try:
        with _tally.PrivateRedis(bind=bind, tag="scale") as redis:
            _tally.use_redis(redis.url(8))
            stack.setup_django(NAME)
            if namespaces:
                import channels_app.sandbox as sandbox_pkg

                original = sandbox_pkg.start_sandbox

                def start_on_veth(kind, **kwargs):
                    return original(kind, host=namespaces[0].root_ip, **kwargs)

                sandbox_pkg.start_sandbox = start_on_veth
                forwarders = [_tally.Forwarder(ns.root_ip, 5432, "127.0.0.1:5432") for ns in namespaces]
            channels = [(kind, 50, {"channel": QUIET}) for kind in KINDS]
            with stack.Stack(NAME, channels=channels, skus=50, stock=1_000_000, web_workers=2, web_threads=4,
                             celery_workers=1, concurrency=1, webhook_workers=2, beat=True) as s:
                rec = _tally.WriteRecorder(s.sandboxes)
                rec.on = True
                seq = 1_000_000
                for n, procs in enumerate(int(p) for p in args.procs.split(",")):
                    set_workers(s, [stack.Proc("worker0", worker_argv(f"solo{procs}@%h", procs), s.env(),
                                               s.log_dir / f"solo{procs}.log")])
                    rows.append(run_step(s, rec, f"1 worker, {procs} process{'es' if procs > 1 else ''}", args.orders,
                                         args.rate, seq, args.seed + n, args.timeout))
                    seq += 1_000_000
                hosts = []
                for i, tag in enumerate("AB"):
                    if namespaces:
                        ns = namespaces[i]
                        env = s.env(DATABASE_URL=f"{stack.PG_BASE.rsplit('@', 1)[0]}@{ns.root_ip}:5432/{s.db}",
                                    REDIS_URL=redis.url(8).replace("127.0.0.1", ns.root_ip),
                                    CELERY_BROKER_URL=redis.url(8).replace("127.0.0.1", ns.root_ip))
                        argv = ns.prefix() + worker_argv(f"host{tag}@{ns.name}", 2)
                    else:
                        env, argv = s.env(), worker_argv(f"host{tag}@%h", 2)
                    hosts.append(stack.Proc(f"host{tag}", argv, env, s.log_dir / f"host{tag}.log"))
                set_workers(s, hosts)
                where = ("2 hosts (netns tally-a, tally-b), 2 processes each" if namespaces
                         else "2 worker processes (distinct hostnames, root namespace), 2 processes each")
                rows.append(run_step(s, rec, where, args.orders, args.rate, seq, args.seed + 9, args.timeout))
                per_host = {p.role: host_tasks(p.log_path) for p in hosts}
                time.sleep(0.5)
                rec.on = False
                writes, logged, bad = write_check(s, rec)
                rec.close()
                if namespaces:
                    ns_check = _tally.Netns.ip("netns", "exec", "tally-a", "ip", "-4", "-o", "addr").stdout
                    netns_note = netns_note or ("tally-a addresses: " + ", ".join(
                        line.split()[3] for line in ns_check.splitlines()))
    finally:
        for fwd in forwarders:
            fwd.close()
        for ns in namespaces:
            ns.close()
    total = time.monotonic() - started
    dup_total = max(r["dup_versions"] for r in rows)
    ok = dup_total == 0 and not bad and all(r["converged"] for r in rows)
    lines = ["| workers | orders | time s | orders/s end to end | pushes | pushes/s | converged | duplicate (listing, "
             "version) | CPU celery | CPU web | CPU pg | CPU bench | CPU machine |",
             "|---|---:|---:|---:|---:|---:|---|---:|---:|---:|---:|---:|---:|"]
    for r in rows:
        c = r["cpu"]
        lines.append(f"| {r['label']} | {r['orders']} | {r['wall']:.1f} | {r['orders_s']:.1f} | {r['pushes']} | "
                     f"{r['pushes_s']:.1f} | {'yes' if r['converged'] else 'NO'} | {r['dup_versions']} | "
                     f"{c['celery']:.2f} | {c['web']:.2f} | {c['postgres']:.2f} | {c['bench']:.2f} | {c['machine']:.2f} |")
    text = (f"# Scaling\n\n{platform.node()} · {os.cpu_count()} cores · PostgreSQL · "
            f"{time.strftime('%Y-%m-%d %H:%M UTC', time.gmtime())}{' · `--quick`' if args.quick else ''}\n\n"
            f"7 sandbox channels ({', '.join(f'{KINDS.count(k)} {k}' for k in dict.fromkeys(KINDS))}), 50 SKUs; per "
            f"step {args.orders} orders sent open loop at {args.rate:g}/s; time = first send → every webhook applied and "
            f"every listing pushed. gunicorn 2x4, beat, private redis-server (broker), PostgreSQL.\n\n"
            + "\n".join(lines)
            + f"\n\nTwo hosts: push tasks run per host {per_host}. {netns_note}.\n\n"
            f"No duplicate pushes: {'PASS' if ok else '**FAIL**'} — {dup_total} (listing, version) with two successful "
            f"PushLog rows; sandbox push writes {writes} vs successful PushLog rows {logged}"
            + (f"; listings differing: {len(bad)} e.g. {bad[:3]}" if bad else " (equal for every listing)")
            + f".\n\nTotal run time {total:.0f} s.\n")
    out = Path(__file__).resolve().parent / "results" / "scaling.md"
    out.write_text(text)
    print(text)
    sys.exit(0 if ok else 1)


if __name__ == "__main__":
    main()
