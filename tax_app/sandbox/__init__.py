"""The imitation TaxJar/Avalara server (``server.SandboxServer``)."""

from tax_app.sandbox.server import SandboxServer

__all__ = ["SandboxServer"]
