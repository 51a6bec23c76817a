"""Helpers shared by flash_sale.py, propagation.py, chaos.py and scaling.py (wrapping bench/stack.py, which stays untouched).

* ``use_redis(url)``: point stack.py (and so every process it starts) at another Redis server / db instead of its
  hard-coded ``redis://127.0.0.1:6379/12``; call before ``stack.setup_django``.
* ``PrivateRedis``: a throw-away ``redis-server`` (no persistence) on a free port, restartable, always stopped.
* ``push_now``: one bench-side push of a channel's out-of-date listings *even while it is paused* (the polling
  baselines' poller), through the same claim → rules → adapter → record path the Celery pusher uses.
* ``kind_buffers``, ``settle_rules``: per channel kind options (buffers, fences), and putting them on the channels.
* ``HubSampler``: hub availability per SKU, re-read every few ms in a thread (one 50-row query).
* ``WriteRecorder``: every sandbox stock write with its time (wraps ``Item.touch`` in this process).
"""

from __future__ import annotations

import contextlib
import os
import shutil
import signal
import subprocess
import sys
import threading
import time
import uuid
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent))

import stack  # noqa: E402


def use_redis(url: str) -> None:
    """Make stack.py use ``url`` (server and db) for everything: broker, cache, wake flags, beat lock."""
    from urllib.parse import urlsplit

    db = int((urlsplit(url).path or "/0").lstrip("/") or 0)
    stack.REDIS_URL = url
    stack.REDIS_DB = db


def free_port(host: str = "127.0.0.1") -> int:
    import socket

    with socket.socket() as sock:
        sock.bind((host, 0))
        return sock.getsockname()[1]


class PrivateRedis:
    """A private redis-server for one bench run (never the shared 6379 one)."""

    def __init__(self, bind: str = "127.0.0.1", port: int | None = None, tag: str = "bench"):
        """``bind``: one address or several separated by spaces (the first is the one ``url`` names)."""
        self.bind, self.tag = bind, tag
        self.host = bind.split()[0]
        self.port = port or free_port(self.host)
        self.dir = Path(f"/tmp/tally_bench_redis_{tag}_{self.port}")
        self.proc: subprocess.Popen | None = None

    def url(self, db: int = 8) -> str:
        return f"redis://{self.host}:{self.port}/{db}"

    def start(self) -> PrivateRedis:
        self.dir.mkdir(parents=True, exist_ok=True)
        argv = ["redis-server", "--bind", *self.bind.split(), "--port", str(self.port), "--save", "", "--appendonly", "no",
                "--dir", str(self.dir), "--protected-mode", "no", "--loglevel", "warning"]
        log = open(self.dir / "redis.log", "ab")  # noqa: SIM115 - child owns it
        self.proc = subprocess.Popen(argv, stdout=log, stderr=subprocess.STDOUT, start_new_session=True)
        log.close()
        deadline = time.monotonic() + 10
        import redis

        while time.monotonic() < deadline:
            with contextlib.suppress(Exception):
                if redis.Redis(host=self.host, port=self.port, socket_timeout=0.5).ping():
                    return self
            time.sleep(0.05)
        raise RuntimeError(f"private redis on {self.bind}:{self.port} did not start")

    def stop(self) -> None:
        if self.proc and self.proc.poll() is None:
            with contextlib.suppress(ProcessLookupError):
                os.killpg(self.proc.pid, signal.SIGKILL)
            with contextlib.suppress(subprocess.TimeoutExpired):
                self.proc.wait(timeout=5)
        self.proc = None

    def restart(self, down_seconds: float = 2.0) -> float:
        """Kill (SIGKILL: no save, everything in memory is lost) and start again; returns the outage seconds."""
        t0 = time.monotonic()
        self.stop()
        time.sleep(down_seconds)
        self.start()
        return time.monotonic() - t0

    def close(self) -> None:
        self.stop()
        shutil.rmtree(self.dir, ignore_errors=True)

    def __enter__(self) -> PrivateRedis:
        return self.start()

    def __exit__(self, *exc) -> None:
        self.close()


class Netns:
    """A network namespace ``name`` joined to the root namespace by a veth pair: root side 10.200.<n>.1/24, namespace
    side 10.200.<n>.2/24 (default route via the root side). ``close`` deletes it (the veth pair goes with it)."""

    def __init__(self, name: str, n: int):
        self.name, self.n = name, n
        self.root_ip, self.ns_ip = f"10.200.{n}.1", f"10.200.{n}.2"
        self.veth_root, self.veth_ns = f"tly{n}r", f"tly{n}n"

    @staticmethod
    def ip(*args: str, check: bool = True) -> subprocess.CompletedProcess:
        return subprocess.run(["ip", *args], check=check, capture_output=True, text=True, timeout=20)

    def open(self) -> Netns:
        self.close()  # a leftover of an earlier, killed run of ours (same names)
        self.ip("netns", "add", self.name)
        self.ip("link", "add", self.veth_root, "type", "veth", "peer", "name", self.veth_ns)
        self.ip("link", "set", self.veth_ns, "netns", self.name)
        self.ip("addr", "add", f"{self.root_ip}/24", "dev", self.veth_root)
        self.ip("link", "set", self.veth_root, "up")
        for args in (("link", "set", "lo", "up"), ("addr", "add", f"{self.ns_ip}/24", "dev", self.veth_ns),
                     ("link", "set", self.veth_ns, "up"), ("route", "add", "default", "via", self.root_ip)):
            self.ip("netns", "exec", self.name, "ip", *args)
        return self

    def close(self) -> None:
        self.ip("netns", "del", self.name, check=False)
        self.ip("link", "del", self.veth_root, check=False)

    def prefix(self) -> list[str]:
        return ["ip", "netns", "exec", self.name]


class Forwarder:
    """``socat`` TCP forwarder: listen on ``bind:port`` (root namespace), forward to ``target``."""

    def __init__(self, bind: str, port: int, target: str):
        self.bind, self.port, self.target = bind, port, target
        self.proc = subprocess.Popen(["socat", f"TCP-LISTEN:{port},bind={bind},fork,reuseaddr", f"TCP:{target}"],
                                     stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL, start_new_session=True)

    def close(self) -> None:
        if self.proc.poll() is None:
            with contextlib.suppress(ProcessLookupError):
                os.killpg(self.proc.pid, signal.SIGTERM)
            with contextlib.suppress(subprocess.TimeoutExpired):
                self.proc.wait(timeout=5)


def push_now(channel_id: int, max_rounds: int = 100) -> int:
    """Push the channel's out-of-date listings now, from this process, whether or not the channel is paused.

    The same steps as ``channels_app.outbound.push_channel`` minus its paused check: lease a batch, compute the
    hub's current numbers through the channel's rules, send through the adapter, record the version.
    Returns the number of listings claimed."""
    from channels_app import outbound
    from channels_app.adapters import adapter_for
    from channels_app.models import Channel

    channel = Channel.objects.get(pk=channel_id)
    adapter = adapter_for(channel)
    owner = uuid.uuid4()
    summary = outbound.PushSummary()
    for _ in range(max_rounds):
        claimed = outbound.claim(channel, limit=min(adapter.max_batch * 4, channel.push_batch_size or 100), owner=owner)
        if not claimed:
            break
        summary.claimed += len(claimed)
        outbound._push_claimed(channel, adapter, claimed, owner, summary, "")
        if summary.retry_in is not None:
            time.sleep(min(summary.retry_in, 2.0))
            summary.retry_in = None
    return summary.claimed


# The channel kinds the sandboxes imitate, for the benches' per-kind options.
KINDS = ("shopify", "woocommerce", "bigcommerce", "amazon", "standard")


def kind_buffers(text: str) -> dict[str, int]:
    """``--buffer-for amazon=12,woocommerce=4``: units per channel kind (an argparse type)."""
    import argparse

    out = {}
    for item in filter(None, text.split(",")):
        kind, _, units = item.partition("=")
        if kind not in KINDS or not units.isdigit():
            raise argparse.ArgumentTypeError(f"{item!r}: expected KIND=UNITS with KIND one of {sorted(KINDS)}")
        out[kind] = int(units)
    return out


def settle_rules(s: stack.Stack, *, polled: bool = False) -> None:
    """Before the sale: set the ring fences aside and put every channel's number under its rules on the channel
    (the stack seeds each sandbox with the whole stock as if already pushed). ``polled``: the channels are paused,
    and are pushed once here, as a poller's first tick would."""
    from channels_app import allocation
    from channels_app.sync import mark_channel_dirty

    for channel in s.channels:
        if channel.allocation_target is not None:
            allocation.top_up(channel)
    for channel in s.channels:
        mark_channel_dirty(channel)
        if polled:
            push_now(channel.pk)
    if not s.wait_converged(timeout=60, interval=0.2):
        raise SystemExit("the channels did not take their starting numbers within 60 s")


def hub_available() -> dict[str, int]:
    from django.db import connection

    with connection.cursor() as cursor:
        cursor.execute("SELECT s.code, SUM(l.on_hand - l.reserved) FROM inventory_app_stocklevel l "
                       "JOIN inventory_app_sku s ON s.id = l.sku_id GROUP BY s.code")
        return {code: int(avail) for code, avail in cursor.fetchall()}


class HubSampler:
    """Hub availability per SKU, refreshed every ``interval`` s by a thread with its own DB connection."""

    def __init__(self, interval: float = 0.05):
        self.interval = interval
        self.current: dict[str, int] = {}
        self.stamp = 0.0
        self._stop = threading.Event()
        self._thread = threading.Thread(target=self._run, daemon=True, name="hub-sampler")

    def _run(self) -> None:
        from django.db import connection

        try:
            while not self._stop.is_set():
                with contextlib.suppress(Exception):
                    self.current = hub_available()
                    self.stamp = time.perf_counter()
                self._stop.wait(self.interval)
        finally:
            connection.close()

    def __enter__(self) -> HubSampler:
        self.current = hub_available()
        self._thread.start()
        return self

    def __exit__(self, *exc) -> None:
        self._stop.set()
        self._thread.join(timeout=5)


class WriteRecorder:
    """Every sandbox stock write (this process): (perf_counter, channel index, sku, quantity, tag), where tag is
    the order id while a sandbox's own ``place_order`` runs on that thread, else -1 (a push or a restock)."""

    def __init__(self, sandboxes):
        from channels_app.sandbox.base import Item

        self.on = False
        self.writes: list[tuple[float, int, str, int, int]] = []
        self.item_of: dict[int, int] = {}
        self.local = threading.local()
        for ch, sandbox in enumerate(sandboxes):
            for item in sandbox.state.items:
                self.item_of[id(item)] = ch
        self._original = original = Item.touch
        recorder = self

        def touch(item, quantity):
            original(item, quantity)
            if recorder.on:
                recorder.writes.append((time.perf_counter(), recorder.item_of.get(id(item), -1), item.sku, quantity,
                                        getattr(recorder.local, "oid", -1)))

        Item.touch = touch
        for sandbox in sandboxes:
            self._wrap(sandbox.state)

    def _wrap(self, state) -> None:
        original, recorder = state.place_order, self

        def place_order(lines, **kwargs):
            oid = kwargs.get("order_id")
            recorder.local.oid = oid if isinstance(oid, int) else -1
            try:
                return original(lines, **kwargs)
            finally:
                recorder.local.oid = -1

        state.place_order = place_order

    def close(self) -> None:
        from channels_app.sandbox.base import Item

        Item.touch = self._original


def percentile(values, pct: float) -> float:
    if not values:
        return float("nan")
    ordered = sorted(values)
    return ordered[min(len(ordered) - 1, max(0, round(pct / 100 * (len(ordered) - 1))))]
