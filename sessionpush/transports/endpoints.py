"""Where pushes may go: public ``https`` endpoints only.

A Web Push endpoint comes from the browser, so from the client, and the
server POSTs to it: without a check, any client could make the server send
requests into its own network (server-side request forgery). An endpoint is
checked when it is registered and again at every send, and the HTTP client
resolves host names through :class:`PublicResolver`, which drops private
addresses, so a public name that later resolves to ``10.0.0.1`` is refused
too. Redirects are never followed (see ``webpush.py``).
"""

from __future__ import annotations

import ipaddress
import socket
from typing import Any
from urllib.parse import urlsplit

from aiohttp.abc import AbstractResolver, ResolveResult
from aiohttp.resolver import DefaultResolver

from sessionpush.errors import SessionpushError

__all__ = ["EndpointRefused", "PublicResolver", "check_endpoint", "origin_of"]

_MAX_ENDPOINT = 2048


class EndpointRefused(SessionpushError):
    """A push endpoint that the server must not send to."""


def _loopback_name(host: str) -> bool:
    return host == "localhost" or host.endswith(".localhost")


def check_endpoint(url: str, *, allow_loopback: bool = False) -> str:
    """Return ``url`` if pushes may be POSTed to it, else raise.

    Args:
        url: The endpoint of a Web Push subscription.
        allow_loopback: Testing only: also accept ``http`` or ``https`` on
            a loopback address (a local push server in a test).

    Raises:
        EndpointRefused: The URL is not ``https``, carries user info, names
            no host, or names a private, loopback, link-local or otherwise
            non-public address.
    """
    if len(url) > _MAX_ENDPOINT:
        raise EndpointRefused(
            f"endpoint is {len(url)} characters long; at most {_MAX_ENDPOINT} "
            "are accepted"
        )
    try:
        parts = urlsplit(url)
        host = (parts.hostname or "").lower()
        parts.port  # noqa: B018 - raises ValueError on a bad port
    except ValueError as exc:
        raise EndpointRefused(f"endpoint {url!r} is not a URL: {exc}") from exc
    if "@" in parts.netloc:
        raise EndpointRefused(
            "endpoint carries user info ('user@host'); push services never "
            "use it: send the subscription exactly as the browser gave it"
        )
    if not host:
        raise EndpointRefused(f"endpoint {url!r} names no host")
    loopback = _is_loopback(host)
    if allow_loopback and loopback and parts.scheme in ("http", "https"):
        return url
    if parts.scheme != "https":
        raise EndpointRefused(
            f"endpoint scheme is {parts.scheme!r}; RFC 8030 section 8 requires 'https'"
        )
    try:
        address = ipaddress.ip_address(host.strip("[]"))
    except ValueError:
        if _loopback_name(host) or "." not in host:
            raise EndpointRefused(
                f"endpoint host {host!r} is not a public host name"
            ) from None
        return url
    if not address.is_global:
        raise EndpointRefused(
            f"endpoint host {host} is a private, loopback or link-local address; "
            "push services are on public hosts"
        )
    return url


def _is_loopback(host: str) -> bool:
    if _loopback_name(host):
        return True
    try:
        return ipaddress.ip_address(host.strip("[]")).is_loopback
    except ValueError:
        return False


def origin_of(url: str) -> str:
    """``scheme://host[:port]``: the VAPID ``aud`` (RFC 8292 section 2)."""
    parts = urlsplit(url)
    return f"{parts.scheme}://{parts.netloc}"


class PublicResolver(AbstractResolver):
    """Resolves names like aiohttp's default resolver, minus private addresses.

    A name that resolves only to non-public addresses fails as if it did
    not exist, so DNS cannot point a push at the server's own network.
    """

    def __init__(self, *, allow_loopback: bool = False) -> None:
        self._inner = DefaultResolver()
        self._allow_loopback = allow_loopback

    async def resolve(
        self, host: str, port: int = 0, family: socket.AddressFamily = socket.AF_INET
    ) -> list[ResolveResult]:
        found = await self._inner.resolve(host, port, family)
        kept = [entry for entry in found if self._public(entry)]
        if not kept:
            raise OSError(f"{host} resolves to no public address")
        return kept

    def _public(self, entry: dict[str, Any] | ResolveResult) -> bool:
        address = ipaddress.ip_address(str(entry["host"]))
        return address.is_global or (self._allow_loopback and address.is_loopback)

    async def close(self) -> None:
        await self._inner.close()
