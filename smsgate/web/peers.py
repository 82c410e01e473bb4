"""Which address a request comes from, for the limits kept per address (logins, SMS sent)."""

from __future__ import annotations

import ipaddress

from aiohttp import web

from smsgate.config import IpNetwork, trusted_networks

# An address as the limits keep it: anything longer is not an address, and is cut.
MAX_ADDRESS = 64


def client_address(request: web.Request, trusted_proxies: str) -> str:
    """The peer's address; behind trusted proxies, the one the nearest untrusted hop had.

    X-Forwarded-For lists the hops a request passed, each proxy appending the address it got
    the request from, so it is read from the right: entries the trusted proxies wrote are
    skipped, and the first address that is not one of theirs is the client. Entries to its
    left were written by the client itself and count for nothing (else anyone could spread
    their guesses over made-up addresses). A peer that is not a trusted proxy is the client,
    whatever the header says.
    """
    peer = request.remote or "unknown"
    networks = trusted_networks(trusted_proxies)
    if not networks or not _is_trusted(peer, networks):
        return peer
    hops = [hop.strip() for header in request.headers.getall("X-Forwarded-For", [])
            for hop in header.split(",") if hop.strip()]
    for hop in reversed(hops):
        if not _is_trusted(hop, networks):
            return hop[:MAX_ADDRESS]
    return hops[0][:MAX_ADDRESS] if hops else peer


def _is_trusted(address: str, networks: tuple[IpNetwork, ...]) -> bool:
    try:
        parsed = ipaddress.ip_address(address)
    except ValueError:
        return False
    return any(parsed in network for network in networks)
