"""Sandbox channel servers: real HTTP imitations of the platforms Tally talks to.

    from channels_app.sandbox import start_sandbox

    with start_sandbox("shopify", hub_url="http://127.0.0.1:8000", channel_slug="demo-shopify",
                       webhook_secret="s3cret", credentials={"access_token": "shpat_x"}) as shop:
        shop.state.set_catalog([{"sku": "MUG", "quantity": 5}])
        requests.post(f"{shop.url}/_sandbox/orders", json={"lines": [{"sku": "MUG", "quantity": 1}]})

Each sandbox is a stdlib ``ThreadingHTTPServer`` on its own port, stdlib + ``requests`` +
``standardwebhooks`` only, so tests, the demo and benchmarks can run it without Django.
"""

from __future__ import annotations

import threading
from collections.abc import Iterable

from .amazon import AmazonState
from .base import SandboxHTTPServer, SandboxState
from .bigcommerce import BigCommerceState
from .shopify import ShopifyState
from .standard import StandardState
from .woocommerce import WooCommerceState

KINDS: dict[str, type[SandboxState]] = {
    "shopify": ShopifyState,
    "woocommerce": WooCommerceState,
    "bigcommerce": BigCommerceState,
    "amazon": AmazonState,
    "standard": StandardState,
}


class Sandbox:
    """A running sandbox server: ``url``, ``port``, ``state``; ``stop()`` or use it as a context manager."""

    def __init__(self, kind: str, state: SandboxState, server: SandboxHTTPServer):
        self.kind = kind
        self.state = state
        self._server = server
        host, port = server.server_address[:2]
        self.host = host
        self.port = port
        self.url = f"http://{host}:{port}"
        state.base_url = self.url
        self._thread = threading.Thread(
            target=server.serve_forever, kwargs={"poll_interval": 0.1}, name=f"sandbox-{kind}-{port}", daemon=True
        )
        self._stopped = False

    def start(self) -> Sandbox:
        self._thread.start()
        return self

    def stop(self) -> None:
        if self._stopped:
            return
        self._stopped = True
        self._server.shutdown()
        self._server.server_close()
        self._server.close_connections()
        self.state.close()
        self._thread.join(timeout=5)

    def serve_forever(self) -> None:
        """Run in the calling thread until interrupted (the ``python -m`` entry point)."""
        try:
            self._server.serve_forever(poll_interval=0.1)
        finally:
            self._server.server_close()
            self.state.close()

    def __enter__(self) -> Sandbox:
        return self

    def __exit__(self, *exc) -> None:
        self.stop()

    def __repr__(self) -> str:
        return f"<Sandbox {self.kind} {self.url}>"


def build_sandbox(
    kind: str,
    *,
    host: str = "127.0.0.1",
    port: int = 0,
    hub_url: str | None = None,
    channel_slug: str | None = None,
    webhook_secret: str | None = None,
    credentials: dict | None = None,
    plan: str | dict | None = None,
    catalog: Iterable[dict] | None = None,
    verbose: bool = False,
) -> Sandbox:
    """Bind a sandbox without starting its serving thread."""
    try:
        state_class = KINDS[kind]
    except KeyError:
        raise ValueError(f"unknown sandbox kind {kind!r}; choose one of {sorted(KINDS)}") from None
    state = state_class(
        hub_url=hub_url, channel_slug=channel_slug, webhook_secret=webhook_secret, credentials=credentials, plan=plan
    )
    try:
        server = SandboxHTTPServer((host, port), state, verbose=verbose)
    except OSError:
        state.close()
        raise
    sandbox = Sandbox(kind, state, server)
    if catalog is not None:
        state.set_catalog(catalog)
    return sandbox


def start_sandbox(kind: str, **options) -> Sandbox:
    """Start one sandbox on ``host:port`` (0 picks a free port) serving in a daemon thread; ``options`` as
    ``build_sandbox``."""
    return build_sandbox(kind, **options).start()


class SandboxGroup(list):
    """Several running sandboxes; ``stop()`` or ``with`` stops them all."""

    def stop(self) -> None:
        for sandbox in self:
            sandbox.stop()

    def by_kind(self, kind: str) -> Sandbox:
        return next(sandbox for sandbox in self if sandbox.kind == kind)

    def __enter__(self) -> SandboxGroup:
        return self

    def __exit__(self, *exc) -> None:
        self.stop()


def run_many(specs: Iterable[dict]) -> SandboxGroup:
    """Start one sandbox per spec (``start_sandbox`` keyword arguments plus ``kind``); all or none."""
    group = SandboxGroup()
    try:
        for spec in specs:
            spec = dict(spec)
            group.append(start_sandbox(spec.pop("kind"), **spec))
    except Exception:
        group.stop()
        raise
    return group


__all__ = ["KINDS", "Sandbox", "SandboxGroup", "SandboxState", "build_sandbox", "run_many", "start_sandbox"]
