"""Whole-stack orchestrator for benchmarks: a dedicated database, real gunicorn + Celery processes, sandboxes.

    import stack
    stack.setup_django("ingest")              # before importing any Django model
    with stack.Stack("ingest", channels=[("shopify", 50), ("amazon", 10)], web_workers=2, web_threads=8,
                     celery_workers=1, concurrency=2) as s:
        s.web_url, s.sandboxes[0].state, s.channels[0], s.skus, s.cpu_seconds(), s.kill_worker(0)

What ``Stack`` does on enter (and undoes on exit, also on Ctrl-C or an exception):

* drops and re-creates PostgreSQL database ``tally_bench_<name>`` and migrates it; empties Redis db 12
  (ours alone) so no Celery message, wake flag or rate-limit bucket survives from an earlier run;
* creates one location and ``skus`` SKUs with ``stock`` units each (a list or callable gives per-SKU stock);
* starts one in-process sandbox per channel (threads in this process, so ``sandbox.state`` is readable
  directly), whose ``hub_url`` is the gunicorn URL, so sandbox orders arrive as real signed webhooks;
* creates the hub Channel, its ChannelLocation and one Listing per SKU (the first ``n_listings`` SKUs),
  already in sync with the sandbox catalog (pushed_version = desired_version);
* starts gunicorn (``hub.wsgi:application``) on a free loopback port, ``celery_workers`` Celery workers on
  every queue, and optionally ``celery beat``; waits for ``/readyz`` and for every worker's ``ready.``.

Every subprocess runs in its own session (process group); teardown sends SIGTERM to each group, then
SIGKILL after a grace period. Logs go to /tmp/tally_bench_<name>/.
"""

from __future__ import annotations

import atexit
import contextlib
import os
import signal
import socket
import subprocess
import sys
import time
from collections.abc import Callable, Sequence
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
if str(ROOT) not in sys.path:
    sys.path.insert(0, str(ROOT))
BIN = ROOT / ".venv" / "bin"
PG_BASE = "postgres://postgres:postgres@127.0.0.1:5432"
REDIS_URL = "redis://127.0.0.1:6379/12"
REDIS_DB = 12
# None: the broker is REDIS_URL. An amqp:// URL runs the stack on RabbitMQ (Redis keeps flags, buckets, beat lock).
BROKER_URL: str | None = None
QUEUES = ("default", "inbound", "push", "batch")
LOCATION = 65_000_001  # the channels' external location id (Shopify / BigCommerce)
CLK_TCK = os.sysconf("SC_CLK_TCK")

_django_db: str | None = None


def db_name(name: str) -> str:
    safe = "".join(c if c.isalnum() else "_" for c in name.lower())
    return f"tally_bench_{safe}"


def stack_env(name: str, **extra: str) -> dict[str, str]:
    env = {**os.environ, "DATABASE_URL": f"{PG_BASE}/{db_name(name)}", "REDIS_URL": REDIS_URL,
           "CELERY_BROKER_URL": BROKER_URL or REDIS_URL, "DJANGO_SETTINGS_MODULE": "hub.settings", "PYTHONUNBUFFERED": "1",
           "LOG_LEVEL": "WARNING"}
    env.update(extra)
    return env


def setup_django(name: str) -> None:
    """Point this process's Django at ``tally_bench_<name>`` and Redis db 12 (call before importing models)."""
    global _django_db
    if _django_db is not None:
        if _django_db != db_name(name):
            raise RuntimeError(f"Django already set up on {_django_db}")
        return
    env = stack_env(name)
    for key in ("DATABASE_URL", "REDIS_URL", "CELERY_BROKER_URL", "DJANGO_SETTINGS_MODULE"):
        os.environ[key] = env[key]
    os.environ.setdefault("LOG_LEVEL", "WARNING")
    import django

    django.setup()
    _django_db = db_name(name)


def free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return sock.getsockname()[1]


# --- /proc helpers --------------------------------------------------------------------------------------


def _children(pid: int) -> list[int]:
    out = []
    with contextlib.suppress(OSError):
        for task in os.listdir(f"/proc/{pid}/task"):
            with contextlib.suppress(OSError):
                out += [int(p) for p in Path(f"/proc/{pid}/task/{task}/children").read_text().split()]
    return out


def descendants(pid: int) -> list[int]:
    """``pid`` and every live process below it."""
    seen, todo = [], [pid]
    while todo and len(seen) < 10_000:
        current = todo.pop()
        seen.append(current)
        todo += _children(current)
    return seen


def proc_cpu(pid: int, *, reaped: bool = False) -> float:
    """utime+stime of one process in seconds (plus its reaped children's with ``reaped``); 0 if gone."""
    try:
        fields = Path(f"/proc/{pid}/stat").read_text().rsplit(")", 1)[1].split()
    except (OSError, IndexError):
        return 0.0
    ticks = int(fields[11]) + int(fields[12])  # utime, stime (fields 14, 15 of stat)
    if reaped:
        ticks += int(fields[13]) + int(fields[14])  # cutime, cstime
    return ticks / CLK_TCK


def tree_cpu(pid: int) -> float:
    return proc_cpu(pid, reaped=True) + sum(proc_cpu(child) for child in descendants(pid)[1:])


def machine_busy_seconds() -> float:
    """CPU seconds every process on the machine spent busy (all cores, /proc/stat), to see noisy neighbours."""
    try:
        fields = [int(x) for x in Path("/proc/stat").read_text().split("\n", 1)[0].split()[1:]]
    except (OSError, ValueError):
        return 0.0
    idle = fields[3] + (fields[4] if len(fields) > 4 else 0)
    return (sum(fields[:8]) - idle) / CLK_TCK


# --- processes -------------------------------------------------------------------------------------------


class Proc:
    """One subprocess in its own process group, logging to a file."""

    def __init__(self, role: str, argv: list[str], env: dict[str, str], log_path: Path):
        self.role = role
        self.argv = argv
        self.log_path = log_path
        self.log = open(log_path, "ab")  # noqa: SIM115 - closed in stop()
        self.proc = subprocess.Popen(argv, cwd=ROOT, env=env, stdout=self.log, stderr=subprocess.STDOUT,
                                     start_new_session=True)

    @property
    def pid(self) -> int:
        return self.proc.pid

    def alive(self) -> bool:
        return self.proc.poll() is None

    def signal(self, sig: int) -> None:
        with contextlib.suppress(ProcessLookupError):
            os.killpg(self.proc.pid, sig)

    def tail(self, chars: int = 3000) -> str:
        with contextlib.suppress(OSError):
            return self.log_path.read_text(errors="replace")[-chars:]
        return ""

    def stop(self, grace: float = 10.0) -> None:
        if self.alive():
            self.signal(signal.SIGTERM)
            try:
                self.proc.wait(timeout=grace)
            except subprocess.TimeoutExpired:
                self.signal(signal.SIGKILL)
                with contextlib.suppress(subprocess.TimeoutExpired):
                    self.proc.wait(timeout=5)
        else:
            self.signal(signal.SIGKILL)  # stray children of a dead leader
        if not self.log.closed:
            self.log.close()


_live: list[Stack] = []


def _stop_all() -> None:
    for stack in list(_live):
        stack.close()


atexit.register(_stop_all)


def _sigterm(signum, frame):  # a SIGTERM to the bench unwinds like Ctrl-C, so every `with` cleans up
    raise KeyboardInterrupt(f"signal {signum}")


# --- the stack -------------------------------------------------------------------------------------------

CREDENTIALS = {
    "shopify": {"access_token": "shpat_bench"},
    "woocommerce": {"consumer_key": "ck_bench", "consumer_secret": "cs_bench"},
    "bigcommerce": {"access_token": "bc_bench", "store_hash": "bench1"},
    "amazon": {"access_token": "Atza|bench", "seller_id": "A1BENCH", "marketplace_id": "ATVPDKIKX0DER"},
}


def standard_secret() -> str:
    import base64

    return "whsec_" + base64.b64encode(b"tally-bench-secret-0123456789abcd").decode()


def secret_for(kind: str) -> str:
    return {"shopify": "shh-bench", "woocommerce": "wc-bench", "amazon": "relay-bench"}.get(kind) or standard_secret()


def credentials_for(kind: str) -> dict:
    if kind == "standard":
        return {"signing_secret": standard_secret()}
    return dict(CREDENTIALS[kind])


class Stack:
    """See the module docstring. ``channels``: [(kind, n_listings) or (kind, n_listings, {options})]; options:
    ``plan`` (sandbox plan dict), ``channel`` (extra Channel fields), ``slug``."""

    def __init__(self, name: str, channels: Sequence[tuple] = (), *, skus: int = 50,
                 stock: int | Sequence[int] | Callable[[int], int] = 1000, web_workers: int = 2, web_threads: int = 4,
                 web_args: Sequence[str] = (), celery_workers: int = 1, concurrency: int = 2, pool: str = "prefork",
                 beat: bool = False, extra_env: dict[str, str] | None = None, webhook_workers: int = 1,
                 quiet: bool = False, pushers: int = 0, push_threads: int = 8, push_pool: str = "threads"):
        self.name = name
        self.db = db_name(name)
        self.channel_specs = [tuple(c) for c in channels]
        self.n_skus = skus
        self.stock_spec = stock
        self.web_workers, self.web_threads, self.web_args = web_workers, web_threads, list(web_args)
        self.n_celery, self.concurrency, self.pool, self.want_beat = celery_workers, concurrency, pool, beat
        # pushers > 0: the production layout (scripts/run.sh): the Celery workers above take inbound, default and
        # batch work, and this many more take the push queue in a thread pool (pushes wait on channel I/O).
        self.n_pushers, self.push_threads, self.push_pool = pushers, push_threads, push_pool
        self.extra_env = dict(extra_env or {})
        self.webhook_workers = webhook_workers
        self.quiet = quiet
        self.log_dir = Path(f"/tmp/{self.db}")
        self.web: Proc | None = None
        self.workers: list[Proc] = []
        self.beat: Proc | None = None
        self.sandboxes: list = []
        self.channels: list = []
        self.skus: list = []
        self.location = None
        self.port = 0
        self.web_url = ""
        self._closed = True
        self._pg_cpu: dict[int, float] = {}
        self._prev_sigterm = None

    # -- lifecycle ------------------------------------------------------------------------------------------

    def __enter__(self) -> Stack:
        self._closed = False
        _live.append(self)
        with contextlib.suppress(ValueError):  # only possible in the main thread
            self._prev_sigterm = signal.signal(signal.SIGTERM, _sigterm)
        try:
            self._start()
        except BaseException:
            self.close()
            raise
        return self

    def __exit__(self, *exc) -> None:
        self.close()

    def say(self, text: str) -> None:
        if not self.quiet:
            print(f"[stack {self.name}] {text}", file=sys.stderr, flush=True)

    def _start(self) -> None:
        t0 = time.monotonic()
        setup_django(self.name)
        self.log_dir.mkdir(parents=True, exist_ok=True)
        for old in self.log_dir.glob("*.log"):
            old.unlink()
        self.prom_dir = self.log_dir / "prometheus"
        self.prom_dir.mkdir(exist_ok=True)
        for old in self.prom_dir.glob("*"):
            old.unlink()
        self._recreate_database()
        self._reset_redis()
        self.port = free_port()
        self.web_url = f"http://127.0.0.1:{self.port}"
        self._seed()
        self.say(f"database {self.db} ready, {len(self.skus)} SKUs, {len(self.channels)} channels "
                 f"({time.monotonic() - t0:.1f}s)")
        self._start_processes()
        self.say(f"stack up: web {self.web_url} ({self.web_workers}x{self.web_threads}), {self.n_celery} celery "
                 f"worker(s) x{self.concurrency}{', beat' if self.beat else ''} ({time.monotonic() - t0:.1f}s)")

    def close(self) -> None:
        if self._closed:
            return
        self._closed = True
        procs = [p for p in [self.beat, *self.workers, self.web] if p is not None]
        for proc in procs:
            if proc.alive():
                proc.signal(signal.SIGTERM)
        deadline = time.monotonic() + 15
        for proc in procs:
            with contextlib.suppress(subprocess.TimeoutExpired):
                proc.proc.wait(timeout=max(0.1, deadline - time.monotonic()))
            proc.stop(grace=0.1)
        for sandbox in self.sandboxes:
            with contextlib.suppress(Exception):
                sandbox.stop()
        with contextlib.suppress(Exception):
            from django.db import connections

            connections.close_all()
        if self in _live:
            _live.remove(self)
        if self._prev_sigterm is not None:
            with contextlib.suppress(ValueError):
                signal.signal(signal.SIGTERM, self._prev_sigterm)
        self.say("stopped")

    # -- database and redis ---------------------------------------------------------------------------------

    def _recreate_database(self) -> None:
        import psycopg
        from django.core.management import call_command
        from django.db import connections

        connections.close_all()
        assert self.db.startswith("tally_bench_")
        with psycopg.connect(f"{PG_BASE}/postgres", autocommit=True) as conn:
            conn.execute(f'DROP DATABASE IF EXISTS "{self.db}" WITH (FORCE)')
            conn.execute(f'CREATE DATABASE "{self.db}"')
        call_command("migrate", verbosity=0)

    def redis(self):
        import redis

        client = redis.Redis.from_url(REDIS_URL)
        assert client.connection_pool.connection_kwargs.get("db") == REDIS_DB
        return client

    def _reset_redis(self) -> None:
        # Redis db 12 belongs to the benchmarks alone: empty it (queues, wake flags, buckets, beat lock).
        self.redis().flushdb()
        if BROKER_URL:
            self.purge_queues()

    def purge_queues(self) -> None:
        from kombu import Connection

        from channels_app.inbound import DRAIN_WAKE_KEY

        with Connection(BROKER_URL or REDIS_URL) as conn:
            for queue in QUEUES:
                with contextlib.suppress(Exception):  # a queue not declared yet holds nothing
                    conn.default_channel.queue_purge(queue)
        # The purged drain's flag would keep the next receipts from waking one until it expires.
        self.redis().delete(DRAIN_WAKE_KEY)

    def queue_lengths(self) -> dict[str, int]:
        from kombu import Connection

        out = {}
        with Connection(BROKER_URL or REDIS_URL) as conn:
            for queue in QUEUES:
                try:
                    out[queue] = conn.default_channel.queue_declare(queue=queue, passive=True).message_count
                except Exception:  # noqa: BLE001 - not declared yet
                    out[queue] = 0
        return out

    def hub_db(self):
        """The Django connection of this process, on the stack's database."""
        from django.db import connection

        return connection

    # -- data -----------------------------------------------------------------------------------------------

    def _stock_for(self, i: int) -> int:
        spec = self.stock_spec
        if callable(spec):
            return int(spec(i))
        if isinstance(spec, int):
            return spec
        return int(spec[i])

    def _seed(self) -> None:
        from channels_app.models import Channel, ChannelLocation, Listing, ListingStatus
        from channels_app.sandbox import start_sandbox
        from inventory_app import stock
        from inventory_app.models import Location, Sku

        self.location = Location.objects.create(code="bench-wh", name="bench warehouse", priority=1)
        self.skus = [Sku.objects.create(code=f"B{i:04d}", name=f"bench sku {i}") for i in range(self.n_skus)]
        self.stock = {}
        for i, sku in enumerate(self.skus):
            qty = self._stock_for(i)
            if qty:
                stock.receive(sku=sku, location=self.location, quantity=qty, source="bench")
            self.stock[sku.code] = qty
        counts: dict[str, int] = {}
        for spec in self.channel_specs:
            kind, n_listings = spec[0], int(spec[1])
            options = dict(spec[2]) if len(spec) > 2 else {}
            counts[kind] = counts.get(kind, 0) + 1
            slug = options.get("slug") or f"{kind}-{counts[kind]}"
            plan = {"webhook_workers": self.webhook_workers, "webhook_queue": 100_000, **options.get("plan", {})}
            located = kind in ("shopify", "bigcommerce")
            sandbox = start_sandbox(kind, hub_url=self.web_url, channel_slug=slug, webhook_secret=secret_for(kind),
                                    credentials=credentials_for(kind), plan=plan)
            self.sandboxes.append(sandbox)
            listed = self.skus[:n_listings]
            rows = [{"sku": sku.code, "quantity": self.stock[sku.code], **({"location_id": LOCATION} if located else {})}
                    for sku in listed]
            catalog = {row["sku"]: row for row in sandbox.state.set_catalog(rows)}
            extra = {}
            if kind == "bigcommerce":
                extra["external_id"] = credentials_for(kind)["store_hash"]
            elif kind == "amazon":
                extra["external_id"] = credentials_for(kind)["seller_id"]
            channel = Channel.objects.create(
                slug=slug, name=slug, kind=kind, api_base_url=sandbox.url, credentials=credentials_for(kind),
                webhook_secret=secret_for(kind), publish_location_id=str(LOCATION) if located else "",
                **extra, **options.get("channel", {}))
            ChannelLocation.objects.create(channel=channel, location=self.location,
                                           external_id=str(LOCATION) if located else "")
            Listing.objects.bulk_create([
                Listing(channel=channel, sku=sku, external_product_id=str(catalog[sku.code].get("product_id") or ""),
                        external_variant_id=(str(catalog[sku.code].get("variant_id") or "")
                                             if kind != "woocommerce" else ""),
                        external_inventory_item_id=str(catalog[sku.code].get("inventory_item_id") or ""),
                        desired_version=1, pushed_version=1, desired_quantity=self.stock[sku.code],
                        pushed_quantity=self.stock[sku.code], remote_quantity=self.stock[sku.code],
                        status=ListingStatus.OK)
                for sku in listed])
            self.channels.append(channel)

    # -- processes ------------------------------------------------------------------------------------------

    def env(self, **extra: str) -> dict[str, str]:
        return stack_env(self.name, PROMETHEUS_MULTIPROC_DIR=str(self.prom_dir), **{**self.extra_env, **extra})

    def _start_processes(self) -> None:
        self.restart_web(wait=False)
        for i in range(self.n_celery):
            self.workers.append(self._worker(i))
        for i in range(self.n_pushers):
            self.workers.append(self._pusher(i))
        if self.want_beat:
            subprocess.run([sys.executable, "manage.py", "sync_schedules"], cwd=ROOT, env=self.env(), check=True,
                           stdout=subprocess.DEVNULL, timeout=120)
            self.beat = Proc("beat", [sys.executable, "-m", "celery", "-A", "hub", "beat", "-l", "INFO", "--pidfile="],
                             self.env(), self.log_dir / "beat.log")
        self._wait_ready()

    def _worker(self, i: int) -> Proc:
        queues = [q for q in QUEUES if q != "push" or not self.n_pushers]
        return Proc(f"worker{i}", [sys.executable, "-m", "celery", "-A", "hub", "worker", "-Q", ",".join(queues),
                                   "-c", str(self.concurrency), "-P", self.pool, "-n", f"bench{i}-{self.name}@%h",
                                   "--without-gossip", "--without-mingle", "--without-heartbeat", "-l", "INFO"],
                    self.env(), self.log_dir / f"worker{i}.log")

    def _pusher(self, i: int) -> Proc:
        return Proc(f"pusher{i}", [sys.executable, "-m", "celery", "-A", "hub", "worker", "-Q", "push",
                                   "-c", str(self.push_threads), "-P", self.push_pool, "-n", f"benchpush{i}-{self.name}@%h",
                                   "--without-gossip", "--without-mingle", "--without-heartbeat", "-l", "INFO"],
                    self.env(), self.log_dir / f"pusher{i}.log")

    def _wait_ready(self, timeout: float = 120) -> None:
        import requests

        deadline = time.monotonic() + timeout
        pending_workers = list(self.workers)
        web_ready = False
        while time.monotonic() < deadline:
            for proc in [self.web, *self.workers, *([self.beat] if self.beat else [])]:
                if not proc.alive():
                    raise RuntimeError(f"{proc.role} exited during start-up:\n{proc.tail()}")
            if not web_ready:
                with contextlib.suppress(requests.RequestException):
                    web_ready = requests.get(f"{self.web_url}/readyz", timeout=2).status_code == 200
            pending_workers = [w for w in pending_workers if b"ready." not in w.log_path.read_bytes()]
            if web_ready and not pending_workers:
                return
            time.sleep(0.2)
        raise RuntimeError(f"stack not ready after {timeout}s (web ready: {web_ready}, workers pending: "
                           f"{[w.role for w in pending_workers]})")

    def restart_web(self, workers: int | None = None, threads: int | None = None, args: Sequence[str] | None = None,
                    wait: bool = True) -> None:
        """Replace gunicorn (same port) with another worker/thread setting."""
        self.web_workers = workers or self.web_workers
        self.web_threads = threads or self.web_threads
        self.web_args = list(args) if args is not None else self.web_args
        if self.web:
            self.web.stop()
        self.web = Proc("web", [sys.executable, "-m", "gunicorn", "-c", "hub/gunicorn.conf.py", "hub.wsgi:application",
                                "--bind", f"127.0.0.1:{self.port}", "--workers", str(self.web_workers),
                                "--threads", str(self.web_threads), *self.web_args],
                        self.env(WEB_BIND=f"127.0.0.1:{self.port}"), self.log_dir / "web.log")
        if wait:
            self._wait_ready()

    def add_worker(self) -> Proc:
        worker = self._worker(len(self.workers))
        self.workers.append(worker)
        self._wait_ready()
        return worker

    def kill_worker(self, i: int, sig: int = signal.SIGKILL, *, children_only: bool = False) -> list[int]:
        """Signal worker ``i``: its whole process group, or (``children_only``) just its pool processes."""
        worker = self.workers[i]
        if children_only:
            pids = descendants(worker.pid)[1:]
            for pid in pids:
                with contextlib.suppress(ProcessLookupError):
                    os.kill(pid, sig)
            return pids
        worker.signal(sig)
        return [worker.pid]

    def respawn_worker(self, i: int) -> Proc:
        """Start a fresh process in worker ``i``'s place, same role (after it died or was killed), without waiting."""
        old = self.workers[i]
        self.workers[i] = self._pusher(int(old.role[6:])) if old.role.startswith("pusher") else self._worker(i)
        return self.workers[i]

    def restart_worker(self, i: int) -> Proc:
        self.workers[i].stop(grace=5)
        self.respawn_worker(i)
        self._wait_ready()
        return self.workers[i]

    # -- measurement ----------------------------------------------------------------------------------------

    def pids(self) -> dict[str, list[int]]:
        """Live pids by role: web (gunicorn master + workers), celery (parents + pool), beat."""
        out: dict[str, list[int]] = {"web": [], "celery": [], "beat": []}
        if self.web:
            out["web"] = descendants(self.web.pid)
        for worker in self.workers:
            out["celery"] += descendants(worker.pid)
        if self.beat:
            out["beat"] = descendants(self.beat.pid)
        return out

    def db_backend_pids(self) -> list[int]:
        from django.db import connection

        with connection.cursor() as cursor:
            cursor.execute("SELECT pid FROM pg_stat_activity WHERE datname = %s AND pid <> pg_backend_pid()", [self.db])
            return [row[0] for row in cursor.fetchall()]

    def cpu_breakdown(self) -> dict[str, float]:
        """CPU seconds so far: web, celery, beat (trees, incl. reaped children), postgres backends of our database
        and this bench process (sandboxes, load generator). A backend that has exited counts with what it had used
        when last seen here: summing live backends only went negative when one exited between two samples."""
        out = {"web": tree_cpu(self.web.pid) if self.web else 0.0,
               "celery": sum(tree_cpu(w.pid) for w in self.workers),
               "beat": tree_cpu(self.beat.pid) if self.beat else 0.0}
        try:
            for pid in self.db_backend_pids():
                # proc_cpu reads 0 for a backend that exited since it was listed: keep what it had.
                self._pg_cpu[pid] = max(self._pg_cpu.get(pid, 0.0), proc_cpu(pid))
        except Exception:  # noqa: BLE001 - measurement only
            pass
        out["postgres"] = sum(self._pg_cpu.values())
        times = os.times()
        out["bench"] = times.user + times.system
        out["machine"] = machine_busy_seconds()
        return out

    def cpu_seconds(self) -> float:
        """utime+stime of the stack's own processes (gunicorn, Celery, beat), from /proc."""
        breakdown = self.cpu_breakdown()
        return breakdown["web"] + breakdown["celery"] + breakdown["beat"]

    def wait_converged(self, timeout: float = 60.0, interval: float = 0.1) -> bool:
        """Every listing pushed (desired_version <= pushed_version) and every webhook delivered."""
        from django.db.models import F

        from channels_app.models import InboundEvent, Listing

        deadline = time.monotonic() + timeout
        while time.monotonic() < deadline:
            if all(s.state.sender.pending() == 0 for s in self.sandboxes):
                if (not Listing.objects.filter(desired_version__gt=F("pushed_version")).exists()
                        and not InboundEvent.objects.filter(status__in=["pending", "retrying"]).exists()):
                    return True
            time.sleep(interval)
        return False
