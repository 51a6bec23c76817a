"""Chaos: order and cancel events against the whole stack under faults, then correctness checks.

Whole stack (bench/stack.py, database ``tally_bench_chaos``) on a *private* ``redis-server`` (free loopback port,
db 8, started and stopped here, never the shared 6379 server): gunicorn, Celery workers as `make run` has them
(inbound pool, push pool), beat, 8 sandbox
channels (2 Shopify, 2 WooCommerce, BigCommerce, Amazon, 2 Standard Webhooks) that retry failed webhook
deliveries (up to 6 times, exponential backoff from 1 s, as platforms do). Events, open loop at ``--rate``/s on a
uniformly chosen channel: 95% orders (``POST /_sandbox/orders``, Zipf SKU choice, 1-2 units; the channel sells
only what it shows), 5% cancels of an earlier order of that channel (``POST /_sandbox/cancel``, restock).

Faults while the events are sent:
* SIGKILL of a Celery worker's whole process group every 10 s (alternating), restarted at once;
* one restart of the private Redis (SIGKILL, everything in memory lost: queued tasks, wake flags, buckets,
  the beat lock), down 3 s, at 40% of the send phase;
* every channel: 5% duplicate deliveries, deliveries reordered within a 100 ms window, 5% 5xx on API calls,
  a burst of five 429s on one channel every 5 s (rotating);
* one channel (woocommerce-1) down for 60 s (``--quick``: 20 s) from 20% of the send phase: its API closes
  connections. ``down_for`` only affects the channel's API (our pushes), not ``/_sandbox/orders``: the
  storefront keeps selling what it last showed, so an oversell on that channel during/after the outage is
  possible and is reported separately (it is the cost of a channel we cannot update, not a hub fault).

When the events are sent, every fault is cleared and the checks run (non-zero exit if one fails):
1. no event lost: every order a sandbox accepted exists in the hub with its lines; every sandbox cancel is a
   cancelled hub order;
2. none applied twice: one ledger COMMIT row per committed order line, one RESTOCK row per cancelled line, and
   per SKU ``on_hand == received - committed + restocked`` from the ledger == the stock row, reserved == 0,
   and hub committed units == units the sandboxes sold minus units they took back;
3. nothing oversold: no ``short`` order line (except, reported apart, on the channel that was down);
4. every channel converged: each sandbox listing == the hub's number for it (the channel's rules), with the
   time from "faults stopped" to convergence (target <= 60 s).

    .venv/bin/python bench/chaos.py            # 20,000 events
    .venv/bin/python bench/chaos.py --quick    # 2,000 events
    .venv/bin/python bench/chaos.py --quick --broker amqp://guest:guest@127.0.0.1:5672//   # on RabbitMQ

Writes bench/results/chaos.md (chaos_quick.md with --quick; _rabbitmq added with --broker).
"""

from __future__ import annotations

import argparse
import collections
import os
import platform
import random
import signal
import sys
import threading
import time
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent))

import _tally  # noqa: E402
import stack  # noqa: E402

NAME = "chaos"
KINDS = ["shopify", "shopify", "woocommerce", "woocommerce", "bigcommerce", "amazon", "standard", "standard"]
DOWN_SLUG = "woocommerce-1"
QUIET = {"reconcile_interval_seconds": 86_400, "catalog_interval_seconds": 86_400}
BASE_FAULTS = {"error_rate": 0.05, "duplicate_rate": 0.05, "reorder_window_ms": 100}


class Chaos:
    """Runs the fault schedule in a thread; every fault is logged with its time."""

    def __init__(self, s: stack.Stack, redis: _tally.PrivateRedis, send_seconds: float, down_seconds: float):
        self.s, self.redis = s, redis
        self.send_seconds, self.down_seconds = send_seconds, down_seconds
        self.stop = threading.Event()
        self.log: list[tuple[float, str]] = []
        self.t0 = time.monotonic()
        self.down_index = [sb.state.channel_slug for sb in s.sandboxes].index(DOWN_SLUG)
        self.down_window: tuple[float, float] | None = None
        self.thread = threading.Thread(target=self._run, daemon=True, name="chaos")

    def note(self, text: str) -> None:
        self.log.append((time.monotonic() - self.t0, text))
        print(f"  [chaos {time.monotonic() - self.t0:6.1f}s] {text}", file=sys.stderr, flush=True)

    def faults(self, i: int, **extra) -> None:
        self.s.sandboxes[i].state.set_faults({**BASE_FAULTS, **extra})

    def start(self) -> Chaos:
        for i in range(len(self.s.sandboxes)):
            self.faults(i)
        self.note("faults on: 5% 5xx, 5% duplicates, 100 ms reorder window on every channel")
        self.thread.start()
        return self

    def _run(self) -> None:
        next_kill, next_429, kills, burst = 10.0, 5.0, 0, 0
        redis_at, down_at = 0.4 * self.send_seconds, 0.2 * self.send_seconds
        redis_done = down_done = False
        while not self.stop.wait(0.2):
            now = time.monotonic() - self.t0
            if not down_done and now >= down_at:
                down_done = True
                self.faults(self.down_index, down_for=self.down_seconds)
                self.down_window = (time.monotonic(), time.monotonic() + self.down_seconds)
                self.note(f"{DOWN_SLUG} down for {self.down_seconds:g} s")
            if now >= next_429:
                next_429 += 5
                i = burst % len(self.s.sandboxes)
                burst += 1
                if i != self.down_index or not self._down():
                    self.faults(i, burst_429=5, retry_after=1)
            if now >= next_kill:
                next_kill += 10
                w = kills % len(self.s.workers)
                kills += 1
                role = self.s.workers[w].role
                self.s.kill_worker(w, signal.SIGKILL)
                self.s.workers[w].stop(grace=1)
                self.note(f"SIGKILL {role} (process group), restarted")
                self.s.respawn_worker(w)
            if not redis_done and now >= redis_at:
                redis_done = True
                self.note("private redis: SIGKILL")
                outage = self.redis.restart(down_seconds=3.0)
                self.note(f"private redis back after {outage:.1f} s (empty)")

    def _down(self) -> bool:
        return self.down_window is not None and time.monotonic() < self.down_window[1]

    def finish(self) -> float:
        self.stop.set()
        self.thread.join(timeout=30)
        for i in range(len(self.s.sandboxes)):
            self.s.sandboxes[i].state.set_faults({})
        self.note("all faults cleared")
        return time.monotonic()


def plan_events(count: int, rate: float, n_channels: int, skus: list[str], seed: int) -> list[dict]:
    rng = random.Random(seed)
    weights = [1 / (i + 1) ** 0.8 for i in range(len(skus))]
    out = []
    for i in range(count):
        kind = "cancel" if i > 50 and rng.random() < 0.05 else "order"
        out.append({"i": i, "at": i / rate, "ch": rng.randrange(n_channels), "kind": kind,
                    "sku": rng.choices(skus, weights=weights)[0], "qty": 1 if rng.random() < 0.9 else 2,
                    "pick": rng.random()})
    return out


def send_events(s: stack.Stack, events: list[dict], seq_base: int, threads: int = 16) -> dict:
    import requests

    local = threading.local()
    statuses: collections.Counter = collections.Counter()
    accepted: dict[int, list[int]] = collections.defaultdict(list)  # channel -> order ids it accepted
    lock = threading.Lock()

    def post(e: dict) -> None:
        session = getattr(local, "session", None)
        if session is None:
            session = local.session = requests.Session()
        base = s.sandboxes[e["ch"]].url
        try:
            if e["kind"] == "order":
                oid = seq_base + e["i"]
                resp = session.post(f"{base}/_sandbox/orders", timeout=15, json={
                    "lines": [{"sku": e["sku"], "quantity": e["qty"]}], "order_id": oid, "wait": False})
                if resp.status_code == 201:
                    with lock:
                        accepted[e["ch"]].append(oid)
            else:
                with lock:
                    mine = accepted[e["ch"]]
                    oid = mine.pop(int(e["pick"] * len(mine))) if mine else None
                if oid is None:
                    statuses["cancel-nothing"] += 1
                    return
                resp = session.post(f"{base}/_sandbox/cancel", timeout=15, json={"order_id": oid, "wait": False})
            statuses[f"{e['kind']}-{resp.status_code}"] += 1
        except requests.RequestException as exc:
            statuses[f"{e['kind']}-{type(exc).__name__}"] += 1

    t0 = time.perf_counter() + 0.05
    with ThreadPoolExecutor(max_workers=threads) as pool:
        for e in events:
            delay = t0 + e["at"] - time.perf_counter()
            if delay > 0:
                time.sleep(delay)
            pool.submit(post, e)
    return {"statuses": statuses, "wall": time.perf_counter() - t0}


# --- checks ------------------------------------------------------------------------------------------------


def sandbox_truth(s: stack.Stack) -> dict:
    """Orders as the sandboxes hold them: {(slug, order id): (status, [(line id, sku, qty)])}."""
    out = {}
    for sb in s.sandboxes:
        with sb.state.lock:
            for order in sb.state.orders.values():
                out[(sb.state.channel_slug, str(order.order_id))] = (
                    order.status, [(str(ln.line_id), ln.sku, ln.quantity) for ln in order.lines])
    return out


def mismatches(s: stack.Stack) -> list[str]:
    """Listings whose sandbox number differs from the hub's number for that channel, plus unfinished work."""
    from channels_app.models import InboundEvent, Listing
    from channels_app.rules import desired_quantities

    out = []
    pending = sum(sb.state.sender.pending() for sb in s.sandboxes)
    if pending:
        out.append(f"{pending} webhook deliveries pending")
    unfinished = InboundEvent.objects.filter(status__in=["pending", "retrying"]).count()
    if unfinished:
        out.append(f"{unfinished} inbox events unfinished")
    for channel, sb in zip(s.channels, s.sandboxes, strict=True):
        listings = list(Listing.objects.filter(channel=channel).select_related("sku"))
        want = desired_quantities(channel, listings)
        for listing in listings:
            shows = sb.state.quantity(listing.sku.code)
            if shows != want[listing.id]:
                out.append(f"{channel.slug} {listing.sku.code}: shows {shows}, hub {want[listing.id]}")
    return out


def run_checks(s: stack.Stack, chaos: Chaos) -> dict:
    from django.db.models import Count, Sum

    from channels_app.models import InboundEvent, Listing
    from inventory_app.models import Order, OrderLine, StockLedgerEntry, StockLevel

    truth = sandbox_truth(s)
    hub_orders = {(o.channel, o.external_id): o for o in Order.objects.all()}
    hub_lines = collections.defaultdict(dict)
    for line in OrderLine.objects.select_related("order", "sku"):
        hub_lines[(line.order.channel, line.order.external_id)][line.external_id] = line
    lost_orders, lost_lines, cancel_missed, extra = [], 0, [], []
    sold, returned = collections.Counter(), collections.Counter()
    for key, (status, lines) in truth.items():
        for _, sku, qty in lines:
            sold[sku] += qty
            if status == "cancelled":
                returned[sku] += qty
        if key not in hub_orders:
            lost_orders.append(key)
            continue
        have = hub_lines.get(key, {})
        lost_lines += sum(1 for line_id, _, _ in lines if line_id not in have)
        if status == "cancelled" and hub_orders[key].status != "cancelled":
            cancel_missed.append(key)
    extra = [k for k in hub_orders if k not in truth]

    # the ledger
    commit_rows = dict(StockLedgerEntry.objects.filter(kind="commit").values("operation_key")
                       .annotate(n=Count("id")).values_list("operation_key", "n"))
    twice = {k: n for k, n in commit_rows.items() if n != 1}
    committed_lines = OrderLine.objects.exclude(status="short").count()
    restock_keys = dict(StockLedgerEntry.objects.filter(kind="restock").values("operation_key")
                        .annotate(n=Count("id")).values_list("operation_key", "n"))
    restock_twice = {k: n for k, n in restock_keys.items() if n != 1}
    per_kind = collections.defaultdict(lambda: collections.Counter())
    for code, kind, delta in StockLedgerEntry.objects.values_list("sku__code", "kind").annotate(d=Sum("on_hand_delta")):
        per_kind[code][kind] += delta
    ledger_bad = []
    hub_committed, hub_restocked = collections.Counter(), collections.Counter()
    for level in StockLevel.objects.select_related("sku"):
        k = per_kind[level.sku.code]
        hub_committed[level.sku.code] = -k["commit"]
        hub_restocked[level.sku.code] = k["restock"]
        expected = k["receive"] + k["commit"] + k["restock"]
        other = sum(v for kind, v in k.items() if kind not in ("receive", "commit", "restock"))
        if expected + other != level.on_hand or other or level.reserved != 0:
            ledger_bad.append(f"{level.sku.code}: on_hand {level.on_hand} vs receive {k['receive']} commit "
                              f"{k['commit']} restock {k['restock']} other {other}, reserved {level.reserved}")
    short_lines = list(OrderLine.objects.filter(status="short").select_related("order"))
    short_units = sum(x.quantity for x in short_lines)
    short_units_down = sum(x.quantity for x in short_lines if x.order.channel == DOWN_SLUG)
    sandbox_net = {sku: sold[sku] - returned[sku] for sku in sold}
    unit_mismatch = []
    short_sku_units = collections.Counter()
    for x in OrderLine.objects.filter(status="short").select_related("sku"):
        short_sku_units[x.sku.code] += x.quantity
    for sku, net in sandbox_net.items():
        if hub_committed[sku] - hub_restocked[sku] + short_sku_units[sku] != net:
            unit_mismatch.append(f"{sku}: sandboxes net {net}, hub committed {hub_committed[sku]} - restocked "
                                 f"{hub_restocked[sku]} + short {short_sku_units[sku]}")
    return {
        "sandbox_orders": len(truth), "sandbox_cancelled": sum(1 for v in truth.values() if v[0] == "cancelled"),
        "hub_orders": len(hub_orders), "lost_orders": lost_orders, "lost_lines": lost_lines,
        "cancel_missed": cancel_missed, "extra_orders": extra, "commit_rows": sum(commit_rows.values()),
        "committed_lines": committed_lines, "commit_twice": twice, "restock_rows": sum(restock_keys.values()),
        "restock_twice": restock_twice, "ledger_bad": ledger_bad, "unit_mismatch": unit_mismatch,
        "short_units": short_units, "short_units_down": short_units_down, "short_lines": len(short_lines),
        "inbox": dict(InboundEvent.objects.values_list("status").annotate(n=Count("id"))),
        "failed_listings": Listing.objects.filter(status="failed").count(),
    }


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--quick", action="store_true", help="2,000 events, channel down 20 s")
    parser.add_argument("--events", type=int, default=20_000)
    parser.add_argument("--rate", type=float, default=12,
                        help="events per second (open loop); the 2-core box sustains about 25 orders/s without faults")
    parser.add_argument("--down", type=float, default=60, help="seconds the channel is down")
    parser.add_argument("--converge", type=float, default=180, help="max seconds to wait for convergence")
    parser.add_argument("--celery-workers", type=int, default=1, help="workers for inbound, default and batch work")
    parser.add_argument("--concurrency", type=int, default=2)
    parser.add_argument("--pushers", type=int, default=1, help="push-queue workers (threads pool), as make run has")
    parser.add_argument("--push-threads", type=int, default=8)
    parser.add_argument("--seed", type=int, default=5)
    parser.add_argument("--broker", default="", help="Celery broker URL, e.g. amqp://guest:guest@127.0.0.1:5672// "
                        "(default: the private redis-server); Redis still holds flags, buckets and the beat lock")
    args = parser.parse_args()
    if args.quick:
        args.events, args.down, args.converge = 2_000, 20, 120
    started = time.monotonic()
    with _tally.PrivateRedis(tag="chaos") as redis:
        _tally.use_redis(redis.url(8))
        stack.BROKER_URL = args.broker or None
        stack.setup_django(NAME)
        n_skus = 50
        weights = [1 / (i + 1) ** 0.8 for i in range(n_skus)]
        demand = args.events * 1.1
        # Plenty for everyone: twice each SKU's expected demand, so a channel showing a fresh number never oversells.
        stocks = [int(2 * demand * w / sum(weights)) + 20 for w in weights]
        plan = {"webhook_retries": 6, "webhook_retry_backoff_s": 1.0}
        channels = [(kind, n_skus, {"plan": plan, "channel": QUIET}) for kind in KINDS]
        with stack.Stack(NAME, channels=channels, skus=n_skus, stock=stocks, web_workers=2, web_threads=4,
                         celery_workers=args.celery_workers, concurrency=args.concurrency, webhook_workers=2,
                         beat=True, pushers=args.pushers, push_threads=args.push_threads) as s:
            events = plan_events(args.events, args.rate, len(s.sandboxes), [sku.code for sku in s.skus], args.seed)
            send_seconds = args.events / args.rate
            cpu0 = s.cpu_breakdown()
            chaos = Chaos(s, redis, send_seconds, args.down).start()
            try:
                sent = send_events(s, events, 5_000_000)
            finally:
                stopped = chaos.finish()
            cpu1 = s.cpu_breakdown()
            # convergence: every delivery made, inbox empty, every sandbox listing == the hub's number
            converged_at, last = None, []
            while time.monotonic() - stopped < args.converge:
                try:
                    last = mismatches(s)
                except Exception as exc:  # noqa: BLE001 - keep polling through a transient DB error
                    last = [f"{type(exc).__name__}: {exc}"]
                if not last:
                    converged_at = time.monotonic()
                    break
                time.sleep(0.5)
            converge_s = converged_at - stopped if converged_at else None
            checks = run_checks(s, chaos)
            dead = [w.role for w in s.workers if not w.alive()]
        redis_note = f"private redis-server on port {redis.port}" + (
            f", broker {args.broker.split('@')[-1]} (RabbitMQ)" if args.broker else " (also the broker)")
    total = time.monotonic() - started
    results = [
        ("no event lost: every sandbox order in the hub, with its lines",
         not checks["lost_orders"] and not checks["lost_lines"],
         f"{checks['sandbox_orders']} sandbox orders, {checks['hub_orders']} hub orders, missing "
         f"{len(checks['lost_orders'])} orders / {checks['lost_lines']} lines"
         + (f" e.g. {checks['lost_orders'][:3]}" if checks["lost_orders"] else "")),
        ("no cancel lost", not checks["cancel_missed"],
         f"{checks['sandbox_cancelled']} cancelled at the sandboxes, {len(checks['cancel_missed'])} not cancelled in hub"),
        ("no phantom order (hub order no sandbox has)", not checks["extra_orders"], f"{len(checks['extra_orders'])}"),
        ("none applied twice: one COMMIT row per committed line", not checks["commit_twice"]
         and checks["commit_rows"] == checks["committed_lines"],
         f"{checks['commit_rows']} COMMIT rows, {checks['committed_lines']} committed/cancelled lines, "
         f"{len(checks['commit_twice'])} keys with != 1 row"),
        ("none restocked twice: one RESTOCK row per key", not checks["restock_twice"],
         f"{checks['restock_rows']} RESTOCK rows, {len(checks['restock_twice'])} keys with != 1 row"),
        ("ledger: on_hand == received - committed + restocked, reserved 0", not checks["ledger_bad"],
         "; ".join(checks["ledger_bad"][:3]) or "all 50 SKUs"),
        ("hub units == sandbox units (sold - taken back)", not checks["unit_mismatch"],
         "; ".join(checks["unit_mismatch"][:3]) or "all SKUs"),
        ("nothing oversold (outside the down channel)", checks["short_units"] == checks["short_units_down"],
         f"{checks['short_units']} short units, {checks['short_units_down']} of them sold by {DOWN_SLUG} (down)"),
        ("every channel converged", converge_s is not None, "; ".join(last[:4]) if last else "all listings equal"),
        ("convergence after faults stopped <= 60 s", converge_s is not None and converge_s <= 60,
         f"{converge_s:.1f} s" if converge_s is not None else f"not within {args.converge:g} s"),
    ]
    ok = all(r[1] for r in results)
    cpu = {k: (cpu1[k] - cpu0[k]) / sent["wall"] for k in cpu0}
    text = (f"# Chaos\n\n{platform.node()} · {os.cpu_count()} cores · PostgreSQL · "
            f"{time.strftime('%Y-%m-%d %H:%M UTC', time.gmtime())}{' · `--quick`' if args.quick else ''} · seed {args.seed}"
            f"\n\n{args.events:,} events at {args.rate:g}/s ({sent['wall']:.0f} s; 95% orders, 5% cancels) on 8 sandbox "
            f"channels ({', '.join(f'{KINDS.count(k)} {k}' for k in dict.fromkeys(KINDS))}); gunicorn 2x4, "
            f"{args.celery_workers} Celery worker(s) x{args.concurrency} (inbound, default, batch) + {args.pushers} push "
            f"worker(s) x{args.push_threads} threads, beat, {redis_note}. Sandboxes retry failed "
            f"webhook deliveries 6 times (1, 2, 4 ... 32 s).\n\n"
            f"Faults during the send phase: {sum(1 for _, t in chaos.log if t.startswith('SIGKILL'))} worker SIGKILLs "
            f"(every 10 s, restarted at once), 1 Redis restart (SIGKILL, empty, 3 s down), 5% duplicate deliveries, "
            f"100 ms reorder window, 5% 5xx, a burst of five 429s every 5 s (rotating), {DOWN_SLUG} down {args.down:g} "
            f"s (API only: its storefront keeps selling what it last showed).\n\n"
            f"| check | result | detail |\n|---|---|---|\n"
            + "\n".join(f"| {name} | {'PASS' if good else '**FAIL**'} | {detail} |" for name, good, detail in results)
            + f"\n\nSend statuses: {dict(sorted(sent['statuses'].items()))}. Inbox: {checks['inbox']}. "
            f"Failed listings: {checks['failed_listings']}. Workers dead at the end: {dead or 'none'}. "
            f"Sandbox faults injected: "
            + "; ".join(f"{sb.state.channel_slug} {sb.state.injected}" for sb in s.sandboxes)
            + f".\n\nCPU during the send phase (cores): web {cpu['web']:.2f}, celery {cpu['celery']:.2f} (live "
            f"workers only), beat {cpu['beat']:.2f}, postgres {cpu['postgres']:.2f}, bench {cpu['bench']:.2f}, machine "
            f"{cpu['machine']:.2f}.\n\nFault log (s from start of the send phase): "
            + "; ".join(f"{t:.0f} {what}" for t, what in chaos.log) + f"\n\nTotal run time {total:.0f} s.\n")
    name = "chaos" + ("_quick" if args.quick else "") + ("_rabbitmq" if args.broker else "")
    out = Path(__file__).resolve().parent / "results" / f"{name}.md"
    out.write_text(text)
    print(text)
    sys.exit(0 if ok else 1)


if __name__ == "__main__":
    main()
