"""Where Tally may send its outgoing events: a subscriber's URL must not reach inside the machine or its network.

A subscription names a URL that Tally calls and whose error answers it stores and shows in the admin: pointed at
the cloud's metadata service (169.254.169.254) or an internal admin page, a delivery would read it for whoever set
the URL. Link-local, multicast, unspecified and reserved addresses are never called; loopback and private ones
(an ERP inside the merchant's network) only with ``TALLY_EVENTS_ALLOW_PRIVATE_URLS``. Checked when the URL is saved
and again before every attempt (its name may resolve elsewhere by then). The name is resolved again by the request
itself, so a DNS server answering differently within those milliseconds is not covered.
"""

from __future__ import annotations

import ipaddress
import socket
from urllib.parse import urlsplit

from django.conf import settings


def refused_address(url: str) -> str | None:
    """Why ``url`` may not be called, or None. A name that does not resolve is not refused here: the attempt fails
    with its own error, recorded, and is tried again on the schedule."""
    try:
        host = urlsplit(url).hostname
    except ValueError as exc:
        return f"not a URL: {exc}"
    if not host:
        return "the URL names no host"
    try:
        infos = socket.getaddrinfo(host, None, proto=socket.IPPROTO_TCP)
    except (socket.gaierror, UnicodeError):
        return None
    for info in infos:
        ip = ipaddress.ip_address(str(info[4][0]).split("%")[0])
        if isinstance(ip, ipaddress.IPv6Address) and ip.ipv4_mapped:
            ip = ip.ipv4_mapped
        if ip.is_link_local or ip.is_multicast or ip.is_unspecified or ip.is_reserved:
            return f"{host} is {ip}, an address events are never sent to"
        if not ip.is_global and not settings.TALLY_EVENTS_ALLOW_PRIVATE_URLS:
            return (f"{host} is {ip}, a private address: set TALLY_EVENTS_ALLOW_PRIVATE_URLS=1 to deliver inside "
                    f"your network")
    return None
