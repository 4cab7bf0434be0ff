"""The client address a socket is counted under (per-address limits).

A socket's peer is the client unless the peer is a trusted proxy
(``server.trusted_proxies``); then the client is the right-most address of
``X-Forwarded-For`` that is not itself a trusted proxy, since every proxy
appends the address it received from, and only the ones we trust can be
believed about what came before them.
"""

from __future__ import annotations

import ipaddress
from collections.abc import Iterable
from functools import lru_cache
from typing import Any

__all__ = ["client_address"]

_Network = ipaddress.IPv4Network | ipaddress.IPv6Network


def client_address(
    peername: Any, forwarded_for: str | None, trusted: Iterable[str]
) -> str:
    """The address to count; ``peername`` as the transport gives it."""
    peer = peername[0] if isinstance(peername, tuple) and peername else ""
    networks = _networks(tuple(trusted))
    if not networks or forwarded_for is None or not _is_in(peer, networks):
        return str(peer)
    for hop in reversed(forwarded_for.split(",")):
        hop = hop.strip()
        if hop and not _is_in(hop, networks):
            return hop
    # Every hop is a proxy of ours: the first one is as close as we get.
    first = forwarded_for.split(",")[0].strip()
    return first or str(peer)


@lru_cache(maxsize=8)
def _networks(trusted: tuple[str, ...]) -> tuple[_Network, ...]:
    return tuple(ipaddress.ip_network(t, strict=False) for t in trusted)


def _is_in(address: str, networks: tuple[_Network, ...]) -> bool:
    try:
        ip = ipaddress.ip_address(address)
    except ValueError:
        return False
    return any(ip in network for network in networks)
