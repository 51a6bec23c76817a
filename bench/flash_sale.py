"""Flash sale: the same seeded sale run three times, event-driven Tally vs. polling every 1 and every 15 minutes.

Whole stack per mode (bench/stack.py, database ``tally_bench_fs``, Redis db 8): gunicorn, Celery workers
(inbound and push pools, as `make run` has), beat, eight in-process sandbox channels
(2 Shopify, 2 WooCommerce, BigCommerce, Amazon, 2 Standard Webhooks).
50 SKUs with 5-40 units each; SKU popularity Zipf(1.0) over a seeded random ranking; each attempt is a
``POST /_sandbox/orders`` on a uniformly chosen channel for 1 unit (90%) or 2: the sandbox sells only if *it
shows* enough stock (else 409), then sends its signed webhook to gunicorn. Three restocks (10 SKUs each) are
received at the hub during the sale, so a channel still showing 0 afterwards loses sales.

Modes (identical attempt sequence, same seed):
* ``event``  - Tally as built: every stock change wakes the pushers (Celery) at once.
* ``poll1``  - every channel paused (Celery pushes nothing); a poller thread per channel in this process pushes the
  hub's current numbers for its out-of-date listings (same claim → rules → adapter path) every 1 simulated minute.
* ``poll15`` - the same, every 15 simulated minutes.
Orders still reach the hub by webhook in real time in the polling modes (only stock pushes are periodic), which
flatters the baselines.

Time compression: 1 simulated minute = 1 real second (x60). The arrival schedule is compressed by the same
factor: the rate ramps linearly from 20 to 200 attempts per *real* second (= 20 to 200 attempts per simulated
minute), so 20,000 attempts take 2N/(20+200) = 182 real s = 3.0 simulated hours; poll intervals are 1 s and 15 s
real. Tally itself runs uncompressed, so each real ms of its lag stands for 60 simulated ms (against Tally).

Measured per mode: oversold units (hub order lines ``short``; and sandbox-accepted units beyond supply), orders
short, sales lost (409 while the hub's availability for the SKU, sampled every 50 ms in this process, covered
the attempt), end-to-end lag per accepted order (scheduled send → every other channel shows a number that
reflects it, from sandbox write hooks), throughput, pushes, CPU.

    .venv/bin/python bench/flash_sale.py            # 20,000 attempts per mode
    .venv/bin/python bench/flash_sale.py --quick    # 1,200 attempts per mode (smoke run)

Writes bench/results/flash_sale.md and bench/results/flash_sale.png (``_buffer<N>`` in the names with
``--safety-buffer N``).
"""

from __future__ import annotations

import argparse
import bisect
import collections
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

NAME = "fs"
REDIS = "redis://127.0.0.1:6379/8"
COMPRESSION = 60  # simulated seconds per real second
QUIET = {"reconcile_interval_seconds": 86_400, "catalog_interval_seconds": 86_400}
KINDS = ["shopify", "shopify", "woocommerce", "woocommerce", "bigcommerce", "amazon", "standard", "standard"]
MODES = {"event": None, "poll1": 60.0, "poll15": 900.0}  # poll interval in simulated seconds
DEFAULT_MODES = ",".join(MODES)


# --- the sale (built once, replayed identically in every mode) ---------------------------------------------


def build_sale(count: int, n_skus: int, r0: float, r1: float, seed: int, scale: float = 1.0) -> dict:
    rng = random.Random(seed)
    stocks = [max(1, round(rng.randint(5, 40) * scale)) for _ in range(n_skus)]
    ranking = list(range(n_skus))
    rng.shuffle(ranking)  # popularity rank independent of stock
    weights = [0.0] * n_skus
    for rank, sku in enumerate(ranking):
        weights[sku] = 1.0 / (rank + 1)
    duration = 2 * count / (r0 + r1)
    skus = rng.choices(range(n_skus), weights=weights, k=count)
    attempts = []
    for i in range(count):
        # invert the cumulative count of a linear ramp: n(t) = r0 t + (r1 - r0) t^2 / (2 T)
        a, b, c = (r1 - r0) / (2 * duration), r0, -i
        at = (-b + (b * b - 4 * a * c) ** 0.5) / (2 * a) if a else i / r0
        attempts.append({"i": i, "at": at, "ch": rng.randrange(len(KINDS)), "sku": f"B{skus[i]:04d}",
                         "qty": 1 if rng.random() < 0.9 else 2})
    restocks = []
    for frac in (0.3, 0.55, 0.8):
        for sku in rng.sample(range(n_skus), 10):
            restocks.append({"at": frac * duration, "sku": f"B{sku:04d}", "qty": max(1, round(rng.randint(5, 20) * scale))})
    return {"stocks": stocks, "attempts": attempts, "restocks": restocks, "duration": duration}


# --- one mode ---------------------------------------------------------------------------------------------


def poller(s: stack.Stack, interval_real: float, stop: threading.Event, counts: collections.Counter) -> list:
    """One thread per channel: every ``interval_real`` s push that channel's out-of-date listings, nothing between."""
    from django.db import connection

    def run(channel_id: int) -> None:
        try:
            next_tick = time.monotonic() + interval_real
            while not stop.wait(max(0.0, next_tick - time.monotonic())):
                counts["polls"] += 1
                counts["claimed"] += _tally.push_now(channel_id)
                next_tick += interval_real
                while next_tick < time.monotonic():  # a poll longer than the interval skips the missed ticks
                    next_tick += interval_real
        finally:
            connection.close()

    threads = [threading.Thread(target=run, args=(ch.pk,), daemon=True, name=f"poll-{ch.slug}") for ch in s.channels]
    for thread in threads:
        thread.start()
    return threads


def send_sale(s: stack.Stack, sale: dict, sampler: _tally.HubSampler, seq_base: int, threads: int) -> dict:
    import requests

    from inventory_app import stock

    local = threading.local()
    results: list[dict] = []
    restocked: list[tuple[float, str, int]] = []

    def post(a: dict) -> None:
        session = getattr(local, "session", None)
        if session is None:
            session = local.session = requests.Session()
        row = {**a, "status": None}
        try:
            resp = session.post(f"{s.sandboxes[a['ch']].url}/_sandbox/orders", timeout=15,
                                json={"lines": [{"sku": a["sku"], "quantity": a["qty"]}], "order_id": seq_base + a["i"],
                                      "wait": False})
            row["status"] = resp.status_code
        except requests.RequestException as exc:
            row["status"] = type(exc).__name__
        row["t_resp"] = time.perf_counter()
        row["hub_avail"] = sampler.current.get(a["sku"], 0)
        results.append(row)

    def restock_all(t0: float) -> None:
        from django.db import connection

        try:
            for r in sale["restocks"]:
                delay = t0 + r["at"] - time.perf_counter()
                if delay > 0:
                    time.sleep(delay)
                stock.receive(sku=r["sku"], location=s.location, quantity=r["qty"], source="bench-restock")
                restocked.append((time.perf_counter(), r["sku"], r["qty"]))
        finally:
            connection.close()

    t0 = time.perf_counter() + 0.1
    restocker = threading.Thread(target=restock_all, args=(t0,), daemon=True)
    restocker.start()
    lateness = []
    with ThreadPoolExecutor(max_workers=threads) as pool:
        for a in sale["attempts"]:
            a["sched"] = t0 + a["at"]
            delay = a["sched"] - time.perf_counter()
            if delay > 0:
                time.sleep(delay)
            lateness.append(time.perf_counter() - a["sched"])
            pool.submit(post, a)
    restocker.join()
    return {"t0": t0, "results": results, "restocked": restocked, "send_wall": time.perf_counter() - t0,
            "late_p99_ms": _tally.percentile(lateness, 99) * 1000}


def reflection_lags(rec: _tally.WriteRecorder, accepted: list[dict], initial: dict[str, int],
                    restocked: list[tuple[float, str, int]], n_channels: int,
                    by_channel: dict[int, list[float]] | None = None) -> tuple[list[float], int]:
    """Per accepted order: scheduled send → the moment the last other channel shows a number reflecting it
    (and into ``by_channel``, per channel index, when that channel did, for orders it had to reflect)."""
    series: dict[tuple[int, str], list[tuple[float, int, int]]] = collections.defaultdict(list)
    sale_time: dict[int, float] = {}
    for t, ch, sku, qty, oid in sorted(rec.writes):
        series[(ch, sku)].append((t, qty, oid))
        if oid >= 0 and oid not in sale_time:
            sale_time[oid] = t
    times = {key: [w[0] for w in rows] for key, rows in series.items()}
    restock_times = collections.defaultdict(list)
    for t, sku, qty in sorted(restocked):
        restock_times[sku].append((t, qty))
    by_oid = {a["oid"]: a for a in accepted}

    def supply(sku: str, t: float) -> int:
        return initial[sku] + sum(q for tr, q in restock_times[sku] if tr <= t)

    lags, unreflected = [], 0
    sold: collections.Counter = collections.Counter()
    for a in sorted(accepted, key=lambda x: sale_time.get(x["oid"], x["t_resp"])):
        sku, tk = a["sku"], sale_time.get(a["oid"], a["t_resp"])
        sold[sku] += a["qty"]
        sold_now = sold[sku]
        worst = 0.0
        for ch in range(n_channels):
            if ch == a["ch"]:
                continue
            rows, ts = series.get((ch, sku), []), times.get((ch, sku), [])
            start = bisect.bisect_right(ts, tk)
            current = rows[start - 1][1] if start else initial[sku]
            if current <= max(0, supply(sku, tk) - sold_now):
                continue
            local, reflected = 0, None
            for t, qty, oid in rows[start:]:
                if oid in by_oid:
                    local += by_oid[oid]["qty"]
                if qty + local <= max(0, supply(sku, t) - sold_now):
                    reflected = t
                    break
            if reflected is None:
                worst = float("inf")
                break
            worst = max(worst, reflected - a["sched"])
            if by_channel is not None:
                by_channel.setdefault(ch, []).append((reflected - a["sched"]) * 1000)
        if worst == float("inf"):
            unreflected += 1
        else:
            lags.append(max(worst, tk - a["sched"]) * 1000)
    return lags, unreflected


def true_left(refusal: dict, initial: dict[str, int], restocked: list, accepted: list[dict]) -> int:
    """Units of the SKU really unsold when the refusal was answered: supply so far - units every channel sold."""
    sku, t = refusal["sku"], refusal["t_resp"]
    supply = initial[sku] + sum(q for tr, k, q in restocked if k == sku and tr <= t)
    return supply - sum(a["qty"] for a in accepted if a["sku"] == sku and a["t_resp"] <= t)


def run_mode(mode: str, sale: dict, args) -> dict:
    from django.db.models import Sum

    from channels_app.models import InboundEvent, PushLog
    from inventory_app.models import OrderLine

    interval_sim = MODES[mode]
    interval_real = interval_sim / COMPRESSION if interval_sim else None
    channels = [(kind, len(sale["stocks"]), {"channel": {
        **QUIET, "safety_buffer": buffer_for(args, index, kind), "paused": interval_real is not None,
        "allocation_target": args.fence.get(kind)}})
        for index, kind in enumerate(KINDS)]
    print(f"== {mode}: {len(sale['attempts'])} attempts over {sale['duration']:.0f} s"
          + (f", pushes every {interval_real:g} s real ({interval_sim / 60:g} simulated min)" if interval_real else
             ", real-time pushes"), file=sys.stderr, flush=True)
    with stack.Stack(NAME, channels=channels, skus=len(sale["stocks"]), stock=sale["stocks"], web_workers=2,
                     web_threads=4, celery_workers=args.celery_workers, concurrency=args.concurrency, webhook_workers=2,
                     beat=True, pushers=args.pushers, push_threads=args.push_threads,
                     push_pool=args.push_pool) as s:
        initial = dict(s.stock)
        rec = _tally.WriteRecorder(s.sandboxes)
        if args.fence or args.safety_buffer or args.buffer_for:
            rec.on = True  # the lag measure starts from what each channel shows, these numbers included
            _tally.settle_rules(s, polled=interval_real is not None)
        stop, counts, pollers = threading.Event(), collections.Counter(), []
        try:
            with _tally.HubSampler(0.05) as sampler:
                if interval_real:
                    pollers = poller(s, interval_real, stop, counts)
                cpu0, wall0 = s.cpu_breakdown(), time.monotonic()
                rec.on = True
                sent = send_sale(s, sale, sampler, 1_000_000, args.threads)
                send_wall = time.monotonic() - wall0
                cpu1 = s.cpu_breakdown()
                converged = s.wait_converged(timeout=max(args.drain, 2 * (interval_real or 0) + 5), interval=0.2)
                done_wall = time.monotonic() - wall0
                time.sleep(0.5)
                rec.on = False
        finally:
            stop.set()
            for thread in pollers:
                thread.join(timeout=30)
            rec.close()
        results = sent["results"]
        for row in results:
            row["oid"] = 1_000_000 + row["i"]
        accepted = [r for r in results if r["status"] == 201]
        refused = [r for r in results if r["status"] == 409]
        lost = [r for r in refused if r["hub_avail"] >= r["qty"]]
        lost_true = [r for r in refused if true_left(r, initial, sent["restocked"], accepted) >= r["qty"]]
        supply = collections.Counter(initial)
        for _, sku, qty in sent["restocked"]:
            supply[sku] += qty
        sold = collections.Counter()
        for r in accepted:
            sold[r["sku"]] += r["qty"]
        beyond = sum(max(0, sold[sku] - supply[sku]) for sku in sold)
        short = OrderLine.objects.filter(status="short", order__external_id__isnull=False)
        short_units = short.aggregate(n=Sum("quantity"))["n"] or 0
        lag_by_channel: dict[int, list[float]] = {}
        lags, unreflected = reflection_lags(rec, accepted, initial, sent["restocked"], len(s.sandboxes), lag_by_channel)
        lag_by_kind: dict[str, list[float]] = collections.defaultdict(list)
        for index, values in lag_by_channel.items():
            lag_by_kind[s.channels[index].kind].extend(values)
        pushes = PushLog.objects.filter(ok=True).count()
        unprocessed = InboundEvent.objects.exclude(status__in=["processed", "ignored"]).count()
        hub_final = _tally.hub_available()
        sampler_age = time.perf_counter() - sampler.stamp
        short_by_kind = collections.Counter()
        slug_kind = {ch.slug: ch.kind for ch in s.channels}
        for channel, qty in short.values_list("order__channel", "quantity"):
            short_by_kind[slug_kind.get(channel, channel)] += qty
        cpu = {k: (cpu1[k] - cpu0[k]) / send_wall for k in cpu0}
        row = {
            "mode": mode, "interval_sim": interval_sim, "attempts": len(results), "accepted": len(accepted),
            "accepted_units": sum(r["qty"] for r in accepted), "refused": len(refused),
            "errors": len(results) - len(accepted) - len(refused), "lost": len(lost),
            "lost_units": sum(r["qty"] for r in lost),
            "lost_true": len(lost_true), "lost_true_units": sum(r["qty"] for r in lost_true),
            "short_units": short_units, "short_orders": short.count(),
            "short_by_kind": dict(short_by_kind),
            "lag_by_kind": {kind: (_tally.percentile(v, 50), _tally.percentile(v, 95))
                            for kind, v in sorted(lag_by_kind.items())},
            "beyond_supply": beyond, "supply": sum(supply.values()),
            "lags": lags, "unreflected": unreflected, "p50": _tally.percentile(lags, 50),
            "p95": _tally.percentile(lags, 95), "p99": _tally.percentile(lags, 99), "send_wall": send_wall,
            "done_wall": done_wall, "converged": converged, "attempts_per_s": len(results) / send_wall,
            "orders_per_s": len(accepted) / done_wall, "pushes": pushes, "polls": counts["polls"],
            "late_p99_ms": sent["late_p99_ms"], "cpu": cpu,
            "unprocessed": unprocessed, "hub_final_units": sum(hub_final.values()), "sampler_age": sampler_age,
        }
    print(f"   {mode}: accepted {row['accepted']} ({row['accepted_units']} u) of supply {row['supply']}, refused "
          f"{row['refused']}, errors {row['errors']}, oversold {short_units} u (sandbox beyond supply {beyond}), "
          f"lost {row['lost']} ({row['lost_units']} u; true stock {row['lost_true_units']} u), "
          f"lag p50/p95/p99 {row['p50']:.0f}/{row['p95']:.0f}/"
          f"{row['p99']:.0f} ms, unreflected {unreflected}, pushes {pushes}, converged {converged} "
          f"(+{done_wall - send_wall:.1f}s), inbox unprocessed {unprocessed}, hub units left {row['hub_final_units']}, "
          f"sampler age {sampler_age:.1f}s, late p99 {row['late_p99_ms']:.0f} ms, "
          f"cpu stack {cpu['web'] + cpu['celery'] + cpu['beat']:.2f}",
          file=sys.stderr, flush=True)
    return row


# --- output -----------------------------------------------------------------------------------------------


def label(row: dict) -> str:
    return "Tally event-driven" if row["interval_sim"] is None else f"polling every {row['interval_sim'] / 60:g} min"


def buffer_for(args, index: int, kind: str) -> int:
    if index == args.last_units_channel:
        return 0
    return args.buffer_for.get(kind, args.safety_buffer)


def buffer_note(args) -> str:
    fence = "".join(f" Ring-fenced: {kind} channels are shown only {n} unit(s) per SKU set aside for them "
                    f"(`allocation_target`), which no other channel shows." for kind, n in args.fence.items())
    if not args.safety_buffer and not args.buffer_for:
        return fence
    units = f"{args.safety_buffer} unit(s)" + "".join(f", {kind} {n}" for kind, n in args.buffer_for.items())
    if args.last_units_channel is None:
        return f" Every channel holds back {units} per SKU (`safety_buffer`), in every mode." + fence
    keeper = f"{KINDS[args.last_units_channel]} channel #{args.last_units_channel + 1}"
    return (f" Every channel but one ({keeper}) holds back {units} per SKU (`safety_buffer`), "
            f"in every mode: the last units of a SKU are sold on that channel only." + fence)


def result_stem(args) -> str:
    stem = "flash_sale" + (f"_buffer{args.safety_buffer}" if args.safety_buffer else "")
    stem += "".join(f"_{kind}{n}" for kind, n in args.buffer_for.items())
    stem += "".join(f"_fence_{kind}{n}" for kind, n in args.fence.items())
    stem += f"_keeper{args.last_units_channel + 1}" if args.last_units_channel is not None else ""
    # A run of some modes only gets its own file: it must not overwrite the three-mode table the README shows.
    return stem + ("" if args.modes == DEFAULT_MODES else "_" + args.modes.replace(",", "_"))


def report(rows: list[dict], sale: dict, args, total: float) -> str:
    n = len(sale["attempts"])
    head = (f"# Flash sale: event-driven vs. polling\n\n{platform.node()} · {os.cpu_count()} cores · PostgreSQL · "
            f"{time.strftime('%Y-%m-%d %H:%M UTC', time.gmtime())}{' · `--quick`' if args.quick else ''} · seed "
            f"{args.seed}\n\n"
            f"8 sandbox channels ({', '.join(f'{KINDS.count(k)} {k}' for k in dict.fromkeys(KINDS))}), 50 SKUs with "
            f"{min(sale['stocks'])}-{max(sale['stocks'])} units ({sum(sale['stocks'])} in all) plus 3 restocks of 10 "
            f"SKUs during the sale "
            f"({sum(r['qty'] for r in sale['restocks'])} units); Zipf(1.0) SKU popularity, uniform channel, 1-2 units. "
            f"{n:,} attempts, the same sequence in each mode, each a `POST /_sandbox/orders` that the channel accepts "
            f"only if it shows enough stock. gunicorn 2x4, {args.celery_workers} Celery worker(s) x{args.concurrency} "
            f"(inbound, default, batch)"
            f"{f' + {args.pushers} push worker(s) x{args.push_threads} {args.push_pool}' if args.pushers else ''}"
            f", beat."
            f"{buffer_note(args)}"
            f"\n\n"
            f"**Time compression**: 1 simulated minute = 1 real second. The attempt rate ramps linearly from "
            f"{args.r0:g} to {args.r1:g} per real second (= {args.r0:g} to {args.r1:g} per simulated minute) over "
            f"{sale['duration']:.0f} real s ({sale['duration'] / 60:.1f} simulated hours); the polling modes push every "
            f"1 s and 15 s real. Tally's own processing is not compressed: its lag in real ms stands for 60x as much "
            f"simulated time. Polling modes: every channel paused, a bench poller pushes the hub's current numbers "
            f"(same claim/rules/adapter path) at the interval only; orders still reach the hub by webhook at once.\n\n")
    lines = ["| mode | accepted orders (units) | oversold units (hub `short`) | orders short | sandbox units beyond "
             "supply | sales lost (units) | lag p50 ms | p95 ms | p99 ms | unreflected | attempts/s | orders/s end "
             "to end | pushes | CPU stack (web+celery+beat) | CPU pg | CPU bench |",
             "|---|---:|---:|---:|---:|---:|---:|---:|---:|---:|---:|---:|---:|---:|---:|---:|"]
    for r in rows:
        c = r["cpu"]
        lines.append(f"| {label(r)} | {r['accepted']} ({r['accepted_units']}) | {r['short_units']} | {r['short_orders']} "
                     f"| {r['beyond_supply']} | {r['lost']} ({r['lost_units']}) | {r['p50']:.0f} | {r['p95']:.0f} | "
                     f"{r['p99']:.0f} | {r['unreflected']} | {r['attempts_per_s']:.1f} | {r['orders_per_s']:.1f} | "
                     f"{r['pushes']} | {c['web'] + c['celery'] + c['beat']:.2f} | {c['postgres']:.2f} | "
                     f"{c['bench']:.2f} |")
    text = head + "\n".join(lines) + "\n\n"
    text += ("Oversold units by the channel kind that sold them: " + "; ".join(
        f"{label(r)}: " + (", ".join(f"{k} {v}" for k, v in sorted(r["short_by_kind"].items())) or "none")
        for r in rows) + ".\n\n")
    text += ("Lag p50/p95 ms until each channel kind reflected a sale it had to (a channel already showing no more "
             "than was left is not counted): " + "; ".join(
                 f"{label(r)}: " + ", ".join(f"{k} {p50:.0f}/{p95:.0f}" for k, (p50, p95) in r["lag_by_kind"].items())
                 for r in rows) + ".\n\n")
    text += ("`oversold` = units of hub order lines recorded `short` (the channel sold what the hub no longer had); "
             "`sandbox units beyond supply` = units the sandboxes accepted per SKU beyond initial stock + restocks "
             "(the same figure seen from the channels); `sales lost` = attempts refused (409) while the hub's "
             "availability of the SKU, sampled every 50 ms in the bench process, covered them (a channel showing too "
             "little); lag = scheduled send → the last other channel showing a number that reflects the sale "
             "(`unreflected`: not before the end of the drain); attempts/s over the send phase; orders/s = accepted "
             "orders / (send + until every webhook was applied and every listing pushed); CPU in cores during the "
             "send phase.\n")
    text += f"\n![oversold, lost sales and lag CDF]({result_stem(args)}.png)\n\nTotal run time {total:.0f} s.\n"
    return text


def chart(rows: list[dict], path: Path) -> None:
    os.environ.setdefault("MPLBACKEND", "Agg")
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    fig, (ax1, ax2) = plt.subplots(1, 2, figsize=(12, 4.5))
    names = [label(r) for r in rows]
    x = range(len(rows))
    ax1.bar([i - 0.2 for i in x], [r["short_units"] for r in rows], 0.4, label="oversold units", color="#c0392b")
    ax1.bar([i + 0.2 for i in x], [r["lost_units"] for r in rows], 0.4, label="units lost (channel showed too little)",
            color="#7f8c8d")
    for i, r in enumerate(rows):
        ax1.text(i - 0.2, r["short_units"], str(r["short_units"]), ha="center", va="bottom", fontsize=9)
        ax1.text(i + 0.2, r["lost_units"], str(r["lost_units"]), ha="center", va="bottom", fontsize=9)
    ax1.set_xticks(list(x), names, fontsize=9)
    ax1.set_title("Flash sale: oversold and lost units")
    ax1.legend(fontsize=8)
    for r in rows:
        lags = sorted(r["lags"])
        if lags:
            ax2.plot([v / 1000 for v in lags], [(i + 1) / len(lags) for i in range(len(lags))], label=label(r))
    ax2.set_xscale("log")
    ax2.set_xlabel("real seconds, order sent → every other channel reflects it (x60 = simulated)")
    ax2.set_ylabel("fraction of accepted orders")
    ax2.set_title("End-to-end lag CDF")
    ax2.grid(True, which="both", alpha=0.3)
    ax2.legend(fontsize=8)
    fig.tight_layout()
    fig.savefig(path, dpi=110)
    plt.close(fig)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--quick", action="store_true", help="smoke run: 300 attempts per mode at 10-40/s, stock / 4")
    parser.add_argument("--drain", type=float, default=90, help="max seconds to wait for convergence after the sale")
    parser.add_argument("--stock-scale", type=float, default=1.0, help="multiply every stock and restock")
    parser.add_argument("--count", type=int, default=20_000)
    parser.add_argument("--r0", type=float, default=20)
    parser.add_argument("--r1", type=float, default=200)
    parser.add_argument("--modes", default=DEFAULT_MODES)
    parser.add_argument("--safety-buffer", type=int, default=0,
                        help="units every channel holds back per SKU (the channel rule), in every mode")
    parser.add_argument("--buffer-for", type=_tally.kind_buffers, default={},
                        help="per channel kind, overriding --safety-buffer: amazon=12,woocommerce=4")
    parser.add_argument("--fence", type=_tally.kind_buffers, default={},
                        help="ring-fence channels of a kind: amazon=4 shows Amazon only 4 units per SKU set aside for it")
    parser.add_argument("--last-units-channel", type=int, default=None, choices=range(len(KINDS)),
                        help="index into the channel list (0 = the first Shopify) of the one channel that holds nothing "
                             "back: with --safety-buffer, it sells the last units of each SKU alone")
    parser.add_argument("--threads", type=int, default=16, help="sender threads (open loop)")
    parser.add_argument("--seed", type=int, default=11)
    parser.add_argument("--celery-workers", type=int, default=1, help="workers for inbound, default and batch work")
    parser.add_argument("--concurrency", type=int, default=2)
    parser.add_argument("--pushers", type=int, default=1,
                        help="push-queue workers (threads pool) as make run has; 0: every worker on every queue")
    parser.add_argument("--push-threads", type=int, default=8, help="push pool concurrency")
    parser.add_argument("--push-pool", default="threads", help="threads (make run) or prefork")
    args = parser.parse_args()
    if args.quick:
        args.count, args.r0, args.r1, args.stock_scale, args.drain = 300, 10, 40, 0.25, 20
    _tally.use_redis(REDIS)
    stack.setup_django(NAME)
    started = time.monotonic()
    sale = build_sale(args.count, 50, args.r0, args.r1, args.seed, args.stock_scale)
    rows = [run_mode(mode, sale, args) for mode in args.modes.split(",")]
    text = report(rows, sale, args, time.monotonic() - started)
    out = Path(__file__).resolve().parent / "results"
    out.mkdir(exist_ok=True)
    (out / f"{result_stem(args)}.md").write_text(text)
    chart(rows, out / f"{result_stem(args)}.png")
    print(text)


if __name__ == "__main__":
    main()
