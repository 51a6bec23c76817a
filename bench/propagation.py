"""End-to-end stock propagation: a sale on one channel, until every other channel shows it.

Eight sandbox channels (3 Shopify, 2 WooCommerce, BigCommerce, Amazon, Standard Webhooks) list the same ~50
SKUs. Orders are placed open-loop at fixed rates on each sandbox (its ``place_order``, what ``POST /_sandbox/orders``
with ``wait: false`` calls; ``--orders http`` goes through that endpoint): the sandbox takes the units off its own
stock and sends the signed webhook to gunicorn; Celery workers apply it and push the new numbers to the other
seven channels.

Measured at the sandboxes, with no polling: every sandbox stock write is recorded by wrapping the sandbox
``Item.touch`` method in this process (and each sandbox's ``place_order`` on its instance, to tell the
channel's own sales apart). An order is *reflected* on another channel c at the first write after which
``c's quantity + c's own sales of that SKU since the order <= max(0, S0 - units of the SKU sold everywhere up to
and including this order)``, S0 being the SKU's availability when the step began. The order's lag is
measured from its *scheduled* send time to the moment the last other channel reflects it; orders not reflected
within the drain time count as ``unreflected``.

    .venv/bin/python bench/propagation.py            # 10, 50, 200 orders/s, 25 s each
    .venv/bin/python bench/propagation.py --quick    # smoke run (< 60 s)
    .venv/bin/python bench/propagation.py --profile  # also py-spy the Celery pool during the middle step

Writes bench/results/propagation.md.
"""

from __future__ import annotations

import argparse
import bisect
import collections
import os
import platform
import random
import subprocess
import sys
import threading
import time
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent))

import _django  # noqa: E402
import _tally  # noqa: E402
import stack  # noqa: E402

NAME = "propagation"
CHANNELS = [("shopify", 50), ("shopify", 50), ("shopify", 50), ("woocommerce", 50), ("woocommerce", 50),
            ("bigcommerce", 50), ("amazon", 50), ("standard", 50)]

# --- recording sandbox stock writes ---------------------------------------------------------------------


class Recorder:
    """Wraps sandbox ``Item.touch`` (class-wide, this process only) and each sandbox's ``place_order``."""

    def __init__(self, sandboxes):
        from channels_app.sandbox.base import Item

        self.on = False
        self.writes: list[tuple[float, int, int, int]] = []  # (t, id(item), quantity, order seq or -1)
        self.sales: list[dict] = []
        self.local = threading.local()
        self.item_of: dict[int, tuple[int, str]] = {}
        for ch, sandbox in enumerate(sandboxes):
            for item in sandbox.state.items:
                self.item_of[id(item)] = (ch, item.sku)
        original_touch = Item.touch
        recorder = self

        def touch(item, quantity):
            original_touch(item, quantity)
            if recorder.on:
                recorder.writes.append((time.perf_counter(), id(item), item.quantity, getattr(recorder.local, "seq", -1)))

        Item.touch = touch
        for ch, sandbox in enumerate(sandboxes):
            self._wrap(ch, sandbox.state)

    def _wrap(self, ch: int, state) -> None:
        original = state.place_order
        recorder = self

        def place_order(lines, **kwargs):
            order_id = kwargs.get("order_id")
            seq = int(order_id) if isinstance(order_id, int) else -2
            recorder.local.seq = seq
            try:
                status, body = original(lines, **kwargs)
            finally:
                recorder.local.seq = -1
            if recorder.on:
                recorder.sales.append({"seq": seq, "ch": ch, "status": status, "t": time.perf_counter(),
                                       "lines": [(str(x["sku"]), int(x["quantity"])) for x in lines]})
            return status, body

        state.place_order = place_order


# --- load ------------------------------------------------------------------------------------------------


def schedule(rate: float, seconds: float, n_channels: int, skus: list[str], rng: random.Random) -> list[dict]:
    weights = [1 / (i + 1) ** 0.8 for i in range(len(skus))]
    count = int(rate * seconds)
    chosen = rng.choices(skus, weights=weights, k=count)
    return [{"i": i, "at": i / rate, "ch": rng.randrange(n_channels), "sku": sku, "qty": 1 if rng.random() < 0.9 else 2}
            for i, sku in enumerate(chosen)]


def send_orders(s: stack.Stack, plan: list[dict], seq_base: int, threads: int = 16, direct: bool = True) -> dict:
    """Open loop: each order is handed to a sender thread at its scheduled time; returns send times and stats.

    ``direct``: the thread calls the sandbox's ``place_order`` (what its ``POST /_sandbox/orders`` calls) instead
    of going through its control API over HTTP. That hop is the shopper's, not Tally's: on this 2-core machine its
    client and server took about a third of the bench process's CPU (py-spy), CPU the hub then lacked. The
    webhook to the hub and every push back still cross a socket."""
    import requests

    local = threading.local()
    statuses: collections.Counter = collections.Counter()
    lateness: list[float] = []

    def post(order: dict, scheduled: float) -> None:
        lines = [{"sku": order["sku"], "quantity": order["qty"]}]
        lateness.append(time.perf_counter() - scheduled)
        if direct:
            try:
                status, _ = s.sandboxes[order["ch"]].state.place_order(lines, order_id=seq_base + order["i"], wait=False)
            except Exception as exc:  # noqa: BLE001 - counted like a failed request
                status = type(exc).__name__
            statuses[status] += 1
            return
        session = getattr(local, "session", None)
        if session is None:
            session = local.session = requests.Session()
            session.trust_env = False  # loopback: no proxy or netrc lookups on every request
        url = f"{s.sandboxes[order['ch']].url}/_sandbox/orders"
        try:
            resp = session.post(url, json={"lines": lines,
                                           "order_id": seq_base + order["i"], "wait": False}, timeout=10)
            statuses[resp.status_code] += 1
        except requests.RequestException as exc:
            statuses[type(exc).__name__] += 1

    t0 = time.perf_counter() + 0.05
    with ThreadPoolExecutor(max_workers=threads) as pool:
        for order in plan:
            order["sched"] = t0 + order["at"]
            delay = order["sched"] - time.perf_counter()
            if delay > 0:
                time.sleep(delay)
            if direct:  # queues the webhook and returns: a thread hand-off cost more than the call
                post(order, order["sched"])
            else:
                pool.submit(post, order, order["sched"])
    return {"t0": t0, "statuses": statuses, "late_p99": _django.percentile(lateness, 99) * 1000}


# --- analysis --------------------------------------------------------------------------------------------


def analyse(rec: Recorder, plan: list[dict], seq_base: int, s0: dict[str, int], listed: list[set[str]],
            kinds: list[str]) -> dict:
    by_seq = {seq_base + o["i"]: o for o in plan}
    sales = sorted((x for x in rec.sales if x["status"] == 201 and x["seq"] in by_seq), key=lambda x: x["t"])
    # each channel's writes per SKU, time ordered, with whether the write was that channel's own sale
    series: dict[tuple[int, str], list[tuple[float, int, int]]] = collections.defaultdict(list)
    sale_time: dict[int, float] = {}
    for t, item_id, qty, seq in sorted(rec.writes):
        ch, sku = rec.item_of.get(item_id, (-1, ""))
        if ch < 0:
            continue
        series[(ch, sku)].append((t, qty, seq))
        if seq in by_seq and seq not in sale_time:
            sale_time[seq] = t
    times = {key: [w[0] for w in rows] for key, rows in series.items()}
    sold: collections.Counter = collections.Counter()
    order_lags, pair_lags = [], collections.defaultdict(list)
    unreflected = 0
    for sale in sales:
        order = by_seq[sale["seq"]]
        sku, tk = order["sku"], sale_time.get(sale["seq"], sale["t"])
        sold[sku] += order["qty"]
        target = max(0, s0[sku] - sold[sku])
        worst = 0.0
        for ch, kind in enumerate(kinds):
            if ch == sale["ch"] or sku not in listed[ch]:
                continue
            rows, ts = series.get((ch, sku), []), times.get((ch, sku), [])
            start = bisect.bisect_right(ts, tk)
            current = rows[start - 1][1] if start else s0[sku]
            reflected_at = tk if current <= target else None
            local = 0
            for t, qty, seq in rows[start:] if reflected_at is None else ():
                if seq in by_seq:  # this channel's own sale after ours: it lowers its number by itself
                    local += by_seq[seq]["qty"]
                if qty + local <= target:
                    reflected_at = t
                    break
            if reflected_at is None:
                unreflected += 1
                worst = float("inf")
                continue
            lag = (reflected_at - order["sched"]) * 1000
            pair_lags[kind].append(lag)
            worst = max(worst, lag)
        if worst != float("inf"):
            order_lags.append(worst)
    return {"order_lags": order_lags, "pair_lags": pair_lags, "unreflected": unreflected, "accepted": len(sales),
            "refused": sum(1 for x in rec.sales if x["status"] == 409 and x["seq"] in by_seq),
            "refused_orders": [by_seq[x["seq"]] for x in rec.sales if x["status"] == 409 and x["seq"] in by_seq]}


# --- hub figures -----------------------------------------------------------------------------------------


def refused_in_stock(refused: list[dict], left: dict[str, int]) -> int:
    return sum(1 for order in refused if left.get(order["sku"], 0) >= order["qty"])


def hub_availability() -> dict[str, int]:
    from django.db.models import F, Sum

    from inventory_app.models import StockLevel

    rows = StockLevel.objects.values("sku__code").annotate(avail=Sum(F("on_hand") - F("reserved")))
    return {row["sku__code"]: row["avail"] for row in rows}


def oversold_units() -> collections.Counter:
    """Units of hub order lines recorded ``short``, per channel slug that sold them."""
    from django.db.models import Sum

    from inventory_app.models import OrderLine

    return collections.Counter({row["order__channel"]: row["n"] for row in OrderLine.objects.filter(
        status="short").values("order__channel").annotate(n=Sum("quantity"))})


def push_counts() -> dict[int, int]:
    from django.db.models import Count

    from channels_app.models import PushLog

    return {row["channel_id"]: row["n"] for row in PushLog.objects.filter(ok=True).values("channel_id").annotate(
        n=Count("id"))}


def api_requests(s: stack.Stack) -> list[int]:
    return [sum(sb.state.snapshot()["requests"].values()) for sb in s.sandboxes]


def py_spy(pids: list[int], seconds: int, tag: str) -> list[subprocess.Popen]:
    spy = stack.BIN / "py-spy"
    if not spy.exists():
        print("py-spy not installed (.venv/bin/pip install py-spy); skipping the profile", file=sys.stderr)
        return []
    # SPY_IDLE=1: wall clock, waits included; SPY_MODE: py-spy's options as given (" ": its default, threads not idle).
    mode = os.environ["SPY_MODE"].split() if "SPY_MODE" in os.environ else ["--idle"] if os.environ.get("SPY_IDLE") else ["--gil"]
    return [subprocess.Popen([str(spy), "record", "-p", str(pid), "-d", str(seconds), "-r", "100", "-f", "raw", *mode,
                              "--nonblocking", "-o", f"/tmp/{stack.db_name(NAME)}/spy-{tag}-{pid}.txt"],
                             stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL) for pid in pids]


def summarize_spy(tag: str, top: int = 25) -> str:
    inclusive: collections.Counter = collections.Counter()
    total = 0
    for path in Path(f"/tmp/{stack.db_name(NAME)}").glob(f"spy-{tag}-*.txt"):
        for line in path.read_text().splitlines():
            frames, _, n = line.rpartition(" ")
            if not n.isdigit():
                continue
            total += int(n)
            for frame in set(frames.split(";")):
                if "/site-packages/" not in frame and "threading.py" not in frame:
                    inclusive[frame] += int(n)
    if not total:
        return ""
    return "\n".join(f"{100 * n / total:5.1f}%  {frame[:140]}" for frame, n in inclusive.most_common(top))


# --- main ------------------------------------------------------------------------------------------------


def stages(since) -> dict[str, tuple[float, float]]:
    """Where the lag goes, from the hub's own timestamps of a step: each webhook's wait in the inbox (received →
    applied), and per channel kind each push's lag (the oldest change it carried → the channel's acknowledgement,
    ``PushLog.lag_ms``). p50 and p90 in ms: a push's lag counts from the oldest change it carried, and a few pushes
    of a step carry changes from before it (the first pushes of a run, listings held back), which the tail shows."""
    from django.db.models import F

    from channels_app.models import InboundEvent, PushLog

    inbox = [(e - r).total_seconds() * 1000 for r, e in InboundEvent.objects.filter(
        received_at__gte=since, processed_at__isnull=False).values_list("received_at", "processed_at")]
    out = {"inbox": (_django.percentile(inbox, 50), _django.percentile(inbox, 90))}
    pushes: dict[str, list[float]] = collections.defaultdict(list)
    for kind, lag in PushLog.objects.filter(created_at__gte=since, ok=True, lag_ms__isnull=False).values_list(
            F("channel__kind"), "lag_ms"):
        pushes[kind].append(lag)
    out.update({f"push {kind}": (_django.percentile(v, 50), _django.percentile(v, 90)) for kind, v in pushes.items()})
    return out


def not_converged(s: stack.Stack) -> str:
    """What is still out of date when a step did not converge: per channel, its listings behind, their last error,
    and what its sandbox counted (requests, refusals; Shopify's GraphQL points)."""
    from django.db.models import Count, F, Max, Min

    from channels_app.models import Channel, Listing
    from channels_app.ratelimit import limiter_for
    from channels_app.sync import wake_key
    from hub.redis import get_redis

    behind = {row["channel__slug"]: row for row in Listing.objects.filter(desired_version__gt=F("pushed_version"))
              .values("channel__slug").annotate(n=Count("id"), error=Max("last_error"), due=Min("next_attempt_at"),
                                                 lease=Max("lease_until"))}
    lines = ["not converged:"]
    for sandbox in s.sandboxes:
        slug = sandbox.state.channel_slug
        if slug not in behind:
            continue
        snapshot = sandbox.state.snapshot()
        points = sandbox.state.graphql_bucket.status(time.monotonic()) if hasattr(sandbox.state, "graphql_bucket") else ""
        channel = Channel.objects.get(slug=slug)
        redis = get_redis()
        bucket = redis.hgetall(limiter_for(channel).key)
        now_ms = int(time.time() * 1000)
        lines.append(f"  {slug}: {behind[slug]['n']} behind, last error {behind[slug]['error'][:80]!r}, next attempt "
                     f"{behind[slug]['due']}, lease {behind[slug]['lease']}; sandbox requests {snapshot['requests']}, "
                     f"refused {snapshot['rate_limited']} {points}; bucket {bucket} (now {now_ms}), wake flag ttl "
                     f"{redis.pttl(wake_key(channel.pk))} ms")
    return "\n".join(lines)


def run_step(s: stack.Stack, rec: Recorder, rate: float, seconds: float, seq_base: int, rng: random.Random,
             drain: float, profile: bool, orders: str = "direct") -> dict:
    skus = [sku.code for sku in s.skus]
    plan = schedule(rate, seconds, len(s.sandboxes), skus, rng)
    s0 = hub_availability()
    requests0, pushes0 = api_requests(s), push_counts()
    short0 = oversold_units()
    cpu0, wall0 = s.cpu_breakdown(), time.monotonic()
    from django.utils import timezone

    started_at = timezone.now()
    rec.writes.clear()
    rec.sales.clear()
    rec.on = True
    spies = py_spy(s.pids()["celery"][1:] + s.pids()["web"][1:], int(seconds), f"r{rate:.0f}") if profile else []
    sent = send_orders(s, plan, seq_base, direct=orders == "direct")
    send_wall = time.monotonic() - wall0
    cpu_mid = s.cpu_breakdown()
    converged = s.wait_converged(timeout=drain)
    if not converged:
        print(not_converged(s), file=sys.stderr)
    settle = time.monotonic()
    while time.monotonic() - settle < 0.5:  # writes already in flight at the sandboxes
        time.sleep(0.05)
    rec.on = False
    total_wall = time.monotonic() - wall0
    for spy in spies:
        spy.wait(timeout=30)
    result = analyse(rec, plan, seq_base, s0, [set(skus)] * len(s.sandboxes), [sb.kind for sb in s.sandboxes])
    requests1, pushes1 = api_requests(s), push_counts()
    lags = result["order_lags"]
    others = max(1, result["accepted"]) * (len(s.sandboxes) - 1) / len(s.sandboxes)
    per_kind = {}
    for kind, values in result["pair_lags"].items():
        per_kind[kind] = (_django.percentile(values, 50), _django.percentile(values, 99))
    non_amazon = [v for k, vs in result["pair_lags"].items() if k != "amazon" for v in vs]
    row = {
        "rate": rate, "seconds": seconds, "orders": len(plan), "accepted": result["accepted"],
        "refused": result["refused"], "send_status": dict(sent["statuses"]), "late_p99": sent["late_p99"],
        "throughput": result["accepted"] / send_wall, "p50": _django.percentile(lags, 50),
        "p95": _django.percentile(lags, 95), "p99": _django.percentile(lags, 99),
        "max": max(lags) if lags else float("nan"), "unreflected": result["unreflected"],
        "pair_p50_non_amazon": _django.percentile(non_amazon, 50), "pair_p99_non_amazon": _django.percentile(non_amazon, 99),
        "per_kind": per_kind, "converged": converged, "drain_s": total_wall - send_wall,
        "requests_per_order": [(b - a) / others for a, b in zip(requests0, requests1, strict=True)],
        "pushlogs": {ch.slug: pushes1.get(ch.pk, 0) - pushes0.get(ch.pk, 0) for ch in s.channels},
        # Orders a channel refused for a SKU the hub still had enough of at the end: sales the channels' rules turned
        # away (buffers, fences: a fenced channel shows 0 while its refill travels). 0 when every refused SKU sold out.
        "refused_in_stock": refused_in_stock(result["refused_orders"], hub_availability()),
        "oversold": sum((oversold_units() - short0).values()),
        "oversold_by": dict(oversold_units() - short0),
        "stages": stages(started_at),
        "cpu": {k: (cpu_mid[k] - cpu0[k]) / send_wall for k in cpu0},
    }
    kinds = " ".join(f"{k} {v[0]:.0f}/{v[1]:.0f}" for k, v in sorted(per_kind.items()))
    print(f"  {rate:5.0f}/s: accepted {row['accepted']} refused {row['refused']} thr {row['throughput']:.1f}/s lag "
          f"p50 {row['p50']:.0f} p95 {row['p95']:.0f} p99 {row['p99']:.0f} max {row['max']:.0f} ms, unreflected "
          f"{row['unreflected']}, oversold {row['oversold']}, refused in stock {row['refused_in_stock']}, "
          f"converged {converged} "
          f"(+{row['drain_s']:.1f}s); "
          f"per kind p50/p99 {kinds}; cpu " + " ".join(f"{k} {v:.2f}" for k, v in row["cpu"].items()), flush=True)
    if profile:
        text = summarize_spy(f"r{rate:.0f}")
        row["profile"] = text
        print(text, file=sys.stderr)
    return row


def channels(shopify_plan: str, guard: float = 0, amazon_guard: float | None = None, *, buffer: int = 0,
             buffer_for: dict[str, int] | None = None, fence: dict[str, int] | None = None,
             keeper: int | None = None, bigcommerce_plan: str = "standard") -> list[tuple]:
    """CHANNELS, the Shopify stores on ``shopify_plan``: the sandbox enforces that plan's GraphQL points, and each
    channel is told them (``rate_limit_*``, as a merchant sets them in the admin), in mutations. The BigCommerce
    store on ``bigcommerce_plan``: its requests per 30 s window, the channel's bucket sized within it (capacity +
    rate x window <= quota, as for the standard plan's 150).
    ``guard``: every channel's sell-out guard in seconds (``amazon_guard``: Amazon's, if not the same).
    ``buffer``: every channel's safety buffer (``buffer_for``: per kind), but the ``keeper``'s (an index into
    CHANNELS), which sells the last units alone; ``fence``: ring-fenced kinds and their allocation targets."""
    options: dict[str, dict] = {kind: {"channel": {}} for kind, _ in CHANNELS}
    if shopify_plan != "standard":
        from channels_app.adapters.shopify import MUTATION_COST
        from channels_app.sandbox.shopify import ShopifyState

        plan = {**ShopifyState.DEFAULT_PLAN, **ShopifyState.PLANS[shopify_plan]}
        options["shopify"] = {"plan": {"name": shopify_plan}, "channel": {
            "rate_limit_capacity": int(plan["graphql_bucket"] // MUTATION_COST),
            "rate_limit_per_second": plan["graphql_restore"] / MUTATION_COST}}
    if bigcommerce_plan != "standard":
        from channels_app.sandbox.bigcommerce import BigCommerceState

        plan = {**BigCommerceState.DEFAULT_PLAN, **BigCommerceState.PLANS[bigcommerce_plan]}
        capacity = 15
        options["bigcommerce"] = {"plan": {"name": bigcommerce_plan}, "channel": {
            "rate_limit_capacity": capacity,
            "rate_limit_per_second": (plan["window_quota"] - capacity) / (plan["window_ms"] / 1000)}}
    for kind in options:
        seconds = amazon_guard if kind == "amazon" and amazon_guard is not None else guard
        if seconds:
            options[kind]["channel"]["sellout_guard_seconds"] = seconds
        if (fence or {}).get(kind) is not None:
            options[kind]["channel"]["allocation_target"] = fence[kind]
    specs = []
    for index, (kind, n) in enumerate(CHANNELS):
        units = 0 if index == keeper else (buffer_for or {}).get(kind, buffer)
        specs.append((kind, n, {**options[kind], "channel": {**options[kind]["channel"], "safety_buffer": units}}
                      if units else options[kind]))
    return specs


def rules_note(args) -> str:
    """The channel rules of the run, for the report's head."""
    parts = []
    if args.safety_buffer or args.buffer_for:
        units = f"{args.safety_buffer} unit(s)" + "".join(f", {k} {n}" for k, n in args.buffer_for.items())
        keeper = (f" but {CHANNELS[args.last_units_channel][0]} #{args.last_units_channel + 1} (which sells the last "
                  f"units alone)" if args.last_units_channel is not None else "")
        parts.append(f"every channel{keeper} holds back {units} per SKU (`safety_buffer`)")
    parts += [f"{kind} ring-fenced at {n} unit(s) per SKU (`allocation_target`)" for kind, n in args.fence.items()]
    return "".join(f", {part}" for part in parts)


def report(rows: list[dict], s: stack.Stack, args, total: float) -> str:
    kinds = [sb.kind for sb in s.sandboxes]
    placed = "on each sandbox (`place_order`)" if args.orders == "direct" else "via `POST /_sandbox/orders`"
    sellouts = (" (every SKU with plenty: `--no-sellouts`)" if args.no_sellouts
                else " (the 4 hottest with 40-220 units, to sell out)")
    head = (f"Propagation benchmark · {platform.node()} · {os.cpu_count()} cores · PostgreSQL · "
            f"{time.strftime('%Y-%m-%d %H:%M UTC', time.gmtime())}{' · --quick' if args.quick else ''}\n\n"
            f"{len(kinds)} sandbox channels ({', '.join(f'{kinds.count(k)} {k}' for k in dict.fromkeys(kinds))}), "
            f"{len(s.skus)} SKUs listed on every channel"
            f"{sellouts}{f', Shopify stores on the {args.shopify_plan} plan' if args.shopify_plan != 'standard' else ''}"
            f"{f', BigCommerce on the {args.bigcommerce_plan} plan' if args.bigcommerce_plan != 'standard' else ''}"
            f"{f', sell-out guard {args.sellout_guard} s' if args.sellout_guard else ''}"
            f"{f' (Amazon {args.amazon_guard} s)' if args.amazon_guard is not None else ''}"
            f"{rules_note(args)}"
            f", orders of 1-2 units (Zipf-like SKU choice, uniform channel) "
            f"placed open-loop {placed}; gunicorn {s.web_workers}x{s.web_threads}, "
            f"{s.n_celery} Celery worker(s) x{s.concurrency}"
            f"{f' + {s.n_pushers} push worker(s) x{s.push_threads} {s.push_pool}' if s.n_pushers else ''}"
            f"{', celery beat (sweepers)' if s.beat else ', no beat'}. "
            f"Lag = scheduled send → the last *other* channel's "
            f"stock reflects the sale (sandbox write hooks, no polling). CPU = cores used while sending.\n\n")
    lines = ["| orders/s | s | orders | accepted | refused | throughput/s | lag p50 ms | p95 ms | p99 ms | max ms "
             "| unreflected | p50/p99 ms w/o Amazon (per channel) | oversold units | refused in stock | CPU web "
             "| CPU celery | CPU pg | CPU bench | CPU machine |",
             "|---:|---:|---:|---:|---:|---:|---:|---:|---:|---:|---:|---|---:|---:|---:|---:|---:|---:|---:|"]
    for r in rows:
        c = r["cpu"]
        lines.append(f"| {r['rate']:.0f} | {r['seconds']:.0f} | {r['orders']} | {r['accepted']} | {r['refused']} | "
                     f"{r['throughput']:.1f} | {r['p50']:.0f} | {r['p95']:.0f} | {r['p99']:.0f} | {r['max']:.0f} | "
                     f"{r['unreflected']} | {r['pair_p50_non_amazon']:.0f} / {r['pair_p99_non_amazon']:.0f} | "
                     f"{r['oversold']} | {r['refused_in_stock']} | {c['web']:.2f} | {c['celery']:.2f} | "
                     f"{c['postgres']:.2f} | "
                     f"{c['bench']:.2f} | "
                     f"{c['machine']:.2f} |")
    text = head + "\n".join(lines) + "\n\n### Lag per channel kind (order → that channel), p50 / p99 ms\n\n"
    kind_names = sorted({k for r in rows for k in r["per_kind"]})
    text += "| orders/s | " + " | ".join(kind_names) + " |\n|---:|" + "---:|" * len(kind_names) + "\n"
    for r in rows:
        text += f"| {r['rate']:.0f} | " + " | ".join(
            f"{r['per_kind'][k][0]:.0f} / {r['per_kind'][k][1]:.0f}" if k in r["per_kind"] else "-" for k in kind_names
        ) + " |\n"
    stage_names = sorted({k for r in rows for k in r["stages"]}, key=lambda k: (k != "inbox", k))
    text += ("\n### Where the lag goes (the hub's timestamps): inbox = webhook received → applied; push = the oldest "
             "change a push carried → the channel's acknowledgement (`PushLog.lag_ms`), p50 / p90 ms\n\n")
    text += "| orders/s | " + " | ".join(stage_names) + " |\n|---:|" + "---:|" * len(stage_names) + "\n"
    for r in rows:
        text += f"| {r['rate']:.0f} | " + " | ".join(
            f"{r['stages'][k][0]:.0f} / {r['stages'][k][1]:.0f}" if k in r["stages"] else "-" for k in stage_names
        ) + " |\n"
    text += "\n### Coalescing: channel API requests per order sold elsewhere (pushes recorded in PushLog)\n\n"
    text += "| orders/s | " + " | ".join(ch.slug for ch in s.channels) + " |\n|---:|" + "---:|" * len(s.channels) + "\n"
    for r in rows:
        text += f"| {r['rate']:.0f} | " + " | ".join(
            f"{q:.2f} ({r['pushlogs'][ch.slug]})" for q, ch in zip(r["requests_per_order"], s.channels, strict=True)
        ) + " |\n"
    text += "\nOversold units by the channel that sold them: " + "; ".join(
        f"{r['rate']:.0f}/s " + (", ".join(f"{slug} {n}" for slug, n in sorted(r["oversold_by"].items())) or "none")
        for r in rows) + ".\n"
    text += ("\n`refused` = the sandbox had no stock left (409, no webhook); `oversold` = hub order lines recorded "
             "`short`; `unreflected` = (order, channel) pairs not reflected before the drain timeout; "
             "`refused in stock` = refused orders for a SKU the hub still had enough of after the step (turned away "
             "by the channels' rules: buffers, fences).\n")
    for r in rows:
        if r.get("profile"):
            text += (f"\n<details><summary>py-spy --gil, Celery pool + gunicorn workers at {r['rate']:.0f}/s "
                     f"(inclusive, app frames)</summary>\n\n```\n{r['profile']}\n```\n</details>\n")
    text += f"\nTotal run time {total:.0f} s.\n"
    return text


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--quick", action="store_true", help="smoke run (< 60 s)")
    parser.add_argument("--rates", default="10,50,200")
    parser.add_argument("--seconds", type=float, default=25)
    parser.add_argument("--drain", type=float, default=60, help="seconds to wait for convergence after each step")
    parser.add_argument("--skus", type=int, default=50)
    parser.add_argument("--web", default="2x4", help="gunicorn WORKERSxTHREADS")
    parser.add_argument("--celery-workers", type=int, default=1)
    parser.add_argument("--concurrency", type=int, default=2)
    parser.add_argument("--pushers", type=int, default=1,
                        help="push-queue workers (threads pool) beside the others, as make run has; 0: one pool for all")
    parser.add_argument("--push-threads", type=int, default=8, help="push pool concurrency")
    parser.add_argument("--push-pool", default="threads", help="threads (make run) or prefork")
    parser.add_argument("--no-beat", action="store_true", help="run without celery beat (no inbox/push sweepers)")
    parser.add_argument("--profile", action="store_true", help="py-spy the Celery pool and gunicorn (needs py-spy)")
    parser.add_argument("--seed", type=int, default=7)
    parser.add_argument("--no-sellouts", action="store_true",
                        help="plenty of every SKU: every order becomes a webhook (no sold-out refusals)")
    parser.add_argument("--bigcommerce-plan", choices=("standard", "plus", "pro"), default="standard",
                        help="the BigCommerce store's plan: 150 or 450 requests per 30 s, told to the hub too")
    parser.add_argument("--shopify-plan", choices=("standard", "advanced", "plus"), default="standard",
                        help="the Shopify stores' plan: its GraphQL points a second (100, 200, 1,000), told to the hub too")
    parser.add_argument("--sellout-guard", type=float, default=0,
                        help="every channel's sell-out guard, seconds: what a SKU sells meanwhile is held back")
    parser.add_argument("--amazon-guard", type=float, default=None, help="Amazon's sell-out guard, if not the same")
    parser.add_argument("--safety-buffer", type=int, default=0, help="units every channel holds back per SKU")
    parser.add_argument("--buffer-for", type=_tally.kind_buffers, default={},
                        help="per channel kind, overriding --safety-buffer: amazon=12,woocommerce=4")
    parser.add_argument("--fence", type=_tally.kind_buffers, default={},
                        help="ring-fence channels of a kind: amazon=4 shows Amazon only 4 units per SKU set aside for it")
    parser.add_argument("--last-units-channel", type=int, default=None, choices=range(len(CHANNELS)),
                        help="index into the channel list (0 = the first Shopify) of the one channel that holds nothing "
                             "back: with --safety-buffer, it sells the last units of each SKU alone")
    parser.add_argument("--orders", choices=("direct", "http"), default="direct",
                        help="place orders by calling each sandbox (direct) or through its POST /_sandbox/orders (http)")
    args = parser.parse_args()
    if args.quick:
        args.rates, args.seconds, args.drain = "10,50", 4, 8
    rates = [float(r) for r in args.rates.split(",") if r]
    workers, _, threads = args.web.partition("x")
    stack.setup_django(NAME)
    started = time.monotonic()
    rng = random.Random(args.seed)
    # Hot SKUs get little stock so they sell out during the run (oversell races); the rest plenty. A sold-out SKU's
    # orders are refused at the sandbox and send no webhook: at 200/s about a fifth. --no-sellouts: every SKU has
    # plenty, so every order is a webhook (the nominal rate, no oversell races).
    stock_of = [40 + 60 * i if i < 4 and not args.no_sellouts else 20_000 for i in range(args.skus)]
    rows = []
    specs = channels(args.shopify_plan, args.sellout_guard, args.amazon_guard, buffer=args.safety_buffer,
                     buffer_for=args.buffer_for, fence=args.fence, keeper=args.last_units_channel,
                     bigcommerce_plan=args.bigcommerce_plan)
    with stack.Stack(NAME, channels=specs, skus=args.skus, stock=stock_of, web_workers=int(workers),
                     web_threads=int(threads), celery_workers=args.celery_workers, concurrency=args.concurrency,
                     webhook_workers=2, beat=not args.no_beat, pushers=args.pushers,
                     push_threads=args.push_threads, push_pool=args.push_pool) as s:
        if args.safety_buffer or args.buffer_for or args.fence:
            _tally.settle_rules(s)
        rec = Recorder(s.sandboxes)
        for n, rate in enumerate(rates):
            rows.append(run_step(s, rec, rate, args.seconds, (n + 1) * 1_000_000, rng, args.drain,
                                 args.profile and rate == rates[len(rates) // 2], args.orders))
        text = report(rows, s, args, time.monotonic() - started)
    print(text)
    _django.write_result("propagation.md", text)


if __name__ == "__main__":
    main()
