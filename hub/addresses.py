"""Where Tally may send its outgoing events: a subscriber's URL must not reach inside the machine or its network.

A subscription names a URL that Tally calls and whose error answers it stores and shows in the admin: pointed at
the cloud's metadata service (169.254.169.254) or an internal admin page, a delivery would read it for whoever set
the URL. Link-local, multicast, unspecified and reserved addresses and the clouds' metadata services are never
called; loopback and private ones (an ERP inside the merchant's network) only with ``TALLY_EVENTS_ALLOW_PRIVATE_URLS``.

The host is read as the HTTP client reads it (urllib3), and must be the one a standard parser reads too: with a
backslash, ``http://169.254.169.254\\@example.com/`` named example.com to one and the metadata service to the
other. Checked when the URL is saved and again before every attempt, where a name that does not resolve is refused
(tried again on the schedule); and, since a DNS server may answer the check with a public address and the request a
moment later with an inside one (rebinding), the connection itself checks the addresses it connects to
(``GuardedAdapter``): the only check that holds is the one made on the address the socket is opened to. Behind an
HTTP proxy the proxy resolves the name, and only the checks before the request apply.
"""

from __future__ import annotations

import ipaddress
import socket
from urllib.parse import urlsplit

from django.conf import settings
from requests.adapters import HTTPAdapter
from urllib3.connection import HTTPConnection, HTTPSConnection
from urllib3.connectionpool import HTTPConnectionPool, HTTPSConnectionPool
from urllib3.exceptions import ConnectTimeoutError, NameResolutionError, NewConnectionError
from urllib3.util import connection, parse_url

# Metadata services at addresses the general rules let through: AWS's IPv6 one (a unique-local address), Alibaba's
# (shared address space) and Azure's wire server (a public address).
METADATA = {ipaddress.ip_address(a) for a in ("fd00:ec2::254", "100.100.100.200", "168.63.129.16")}


def _host(url: str) -> str:
    try:
        ours, theirs = urlsplit(url).hostname, parse_url(url).host
    except ValueError as exc:
        raise ValueError(f"not a URL: {exc}") from exc
    theirs = (theirs or "").strip("[]").lower() or None
    if "\\" in url or ours != theirs:
        raise ValueError("the URL's host reads differently to different parsers (a backslash, or an odd '@')")
    if not ours:
        raise ValueError("the URL names no host")
    return ours


def refused_address(url: str, *, unresolved_ok: bool = False) -> str | None:
    """Why ``url`` may not be called, or None. A name that does not resolve is refused unless ``unresolved_ok`` (a
    URL saved before its receiver is up)."""
    try:
        host = _host(url)
    except ValueError as exc:
        return str(exc)
    try:
        infos = socket.getaddrinfo(host, None, proto=socket.IPPROTO_TCP)
    except (socket.gaierror, UnicodeError) as exc:
        return None if unresolved_ok else f"{host} does not resolve ({exc})"
    for info in infos:
        refused = refused_ip(host, info[4][0])
        if refused:
            return refused
    return None


def refused_ip(host: str, address: str) -> str | None:
    """Why ``host``, resolved to ``address``, may not be called, or None."""
    ip = ipaddress.ip_address(str(address).split("%")[0])
    if isinstance(ip, ipaddress.IPv6Address) and ip.ipv4_mapped:
        ip = ip.ipv4_mapped
    if ip in METADATA or ip.is_link_local or ip.is_multicast or ip.is_unspecified or ip.is_reserved:
        return f"{host} is {ip}, an address events are never sent to"
    if not ip.is_global and not settings.TALLY_EVENTS_ALLOW_PRIVATE_URLS:
        return (f"{host} is {ip}, a private address: set TALLY_EVENTS_ALLOW_PRIVATE_URLS=1 to deliver inside "
                f"your network")
    return None


class _Checked:
    """A connection that resolves its host once, refuses it if any address it resolves to is refused, and opens
    the socket to one of exactly those addresses (TLS still verifies the certificate against the name)."""

    def _new_conn(self) -> socket.socket:
        try:
            infos = socket.getaddrinfo(self._dns_host, self.port, 0, socket.SOCK_STREAM)
        except socket.gaierror as exc:
            raise NameResolutionError(self.host, self, exc) from exc
        for *_, sockaddr in infos:
            refused = refused_ip(self.host, sockaddr[0])
            if refused:
                raise NewConnectionError(self, f"not sent: {refused}")
        last: OSError | None = None
        for *_, sockaddr in infos:
            try:
                return connection.create_connection((sockaddr[0], self.port), self.timeout,
                                                    source_address=self.source_address,
                                                    socket_options=self.socket_options)
            except TimeoutError as exc:
                raise ConnectTimeoutError(self, f"Connection to {self.host} timed out. "
                                                f"(connect timeout={self.timeout})") from exc
            except OSError as exc:
                last = exc
        raise NewConnectionError(self, f"Failed to establish a new connection: {last}")


class _CheckedHTTPConnection(_Checked, HTTPConnection):
    pass


class _CheckedHTTPSConnection(_Checked, HTTPSConnection):
    pass


class _CheckedHTTPPool(HTTPConnectionPool):
    ConnectionCls = _CheckedHTTPConnection


class _CheckedHTTPSPool(HTTPSConnectionPool):
    ConnectionCls = _CheckedHTTPSConnection


class GuardedAdapter(HTTPAdapter):
    """requests' adapter whose connections check the addresses they open (``_Checked``); mount it for http and
    https on a session that calls URLs someone else chose."""

    def init_poolmanager(self, *args, **kwargs) -> None:
        super().init_poolmanager(*args, **kwargs)
        self.poolmanager.pool_classes_by_scheme = {"http": _CheckedHTTPPool, "https": _CheckedHTTPSPool}
