"""Where Tally may send its outgoing events: a subscriber's URL must not reach inside the machine or its network.

A subscription names a URL that Tally calls and whose error answers it stores and shows in the admin: pointed at
the cloud's metadata service (169.254.169.254) or an internal admin page, a delivery would read it for whoever set
the URL. Link-local, multicast, unspecified and reserved addresses and the clouds' metadata services are never
called; loopback and private ones (an ERP inside the merchant's network) only with ``TALLY_EVENTS_ALLOW_PRIVATE_URLS``.

The host is read as the HTTP client reads it (urllib3), and must be the one a standard parser reads too: with a
backslash, ``http://169.254.169.254\\@example.com/`` named example.com to one and the metadata service to the
other. Checked when the URL is saved and again before every attempt, where a name that does not resolve is refused
(tried again on the schedule). The request resolves the name again itself: a DNS server answering differently within
those milliseconds is not covered.
"""

from __future__ import annotations

import ipaddress
import socket
from urllib.parse import urlsplit

from django.conf import settings
from urllib3.util import parse_url

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
        ip = ipaddress.ip_address(str(info[4][0]).split("%")[0])
        if isinstance(ip, ipaddress.IPv6Address) and ip.ipv4_mapped:
            ip = ip.ipv4_mapped
        if ip in METADATA or ip.is_link_local or ip.is_multicast or ip.is_unspecified or ip.is_reserved:
            return f"{host} is {ip}, an address events are never sent to"
        if not ip.is_global and not settings.TALLY_EVENTS_ALLOW_PRIVATE_URLS:
            return (f"{host} is {ip}, a private address: set TALLY_EVENTS_ALLOW_PRIVATE_URLS=1 to deliver inside "
                    f"your network")
    return None
