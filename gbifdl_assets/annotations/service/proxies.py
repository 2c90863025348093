"""Who the client is, and where the service is, when proxies may stand in between (issue 21).

The login throttle counts failures per client address, and the same-origin check compares a browser's
``Origin`` with the service's own. Behind a reverse proxy (TLS termination, a load balancer) the direct
peer is the proxy, and the real client and scheme arrive in ``X-Forwarded-For`` / ``-Proto`` /
``-Host``. Those headers are believed **only from peers listed as trusted proxies** (addresses or
networks; none by default): anyone else could write any address there and get a fresh throttle count
with every request.

From a trusted peer, the client is the right-most ``X-Forwarded-For`` address that is not itself a
trusted proxy (what the client wrote in front is noise); ``X-Forwarded-Proto`` and
``X-Forwarded-Host`` (last value) name the origin the browser saw.
"""

from __future__ import annotations

import ipaddress
from collections.abc import Iterable

from starlette.datastructures import Headers
from starlette.types import Scope

from gbifdl_assets.annotations.service.csrf import normalize_origin, request_origin

__all__ = ["TrustedProxies", "parse_networks"]

Network = ipaddress.IPv4Network | ipaddress.IPv6Network


def parse_networks(values: Iterable[str]) -> tuple[Network, ...]:
    """``127.0.0.1``, ``10.0.0.0/8``, ``::1`` → networks; ValueError names the entry that is not one."""
    out = []
    for value in values:
        for part in str(value).split(","):
            text = part.strip()
            if not text:
                continue
            try:
                out.append(ipaddress.ip_network(text, strict=False))
            except ValueError:
                raise ValueError(
                    f"trusted proxy {text!r} is not an IP address or network (e.g. 127.0.0.1 or 10.0.0.0/8)"
                ) from None
    return tuple(out)


def _ip(text: str) -> ipaddress.IPv4Address | ipaddress.IPv6Address | None:
    text = text.strip()
    if text.startswith("[") and "]" in text:  # [v6]:port
        text = text[1 : text.index("]")]
    elif text.count(":") == 1:  # v4:port
        text = text.split(":", 1)[0]
    try:
        return ipaddress.ip_address(text)
    except ValueError:
        return None


class TrustedProxies:
    """The proxies whose ``X-Forwarded-*`` headers are believed (none: use the direct peer)."""

    def __init__(self, proxies: Iterable[str] = ()) -> None:
        self.networks = parse_networks(proxies)

    def __bool__(self) -> bool:
        return bool(self.networks)

    def trusts(self, address: str | None) -> bool:
        ip = _ip(address) if address else None
        return ip is not None and any(ip in net for net in self.networks)

    @staticmethod
    def _peer(scope: Scope) -> str:
        client = scope.get("client")
        return str(client[0]) if client else "unknown"

    def client(self, scope: Scope) -> str:
        """The client's address: the peer, or (behind a trusted proxy) the address the proxies saw."""
        peer = self._peer(scope)
        if not self.trusts(peer):
            return peer
        forwarded = ",".join(Headers(scope=scope).getlist("x-forwarded-for"))
        hops = [h.strip() for h in forwarded.split(",") if h.strip()]
        for hop in reversed(hops):
            ip = _ip(hop)
            if ip is None:  # junk a proxy passed on: count it as that proxy's client, not as a new one
                return peer
            if not any(ip in net for net in self.networks):
                return str(ip)
        return str(_ip(hops[0])) if hops else peer

    def origin(self, scope: Scope, headers: Headers) -> str | None:
        """This service's origin as the browser saw it (a trusted proxy may say scheme and host)."""
        if not self.trusts(self._peer(scope)):
            return request_origin(scope, headers)
        proto = (headers.get("x-forwarded-proto") or "").split(",")[-1].strip().lower()
        host = (headers.get("x-forwarded-host") or "").split(",")[-1].strip()
        if not proto and not host:
            return request_origin(scope, headers)
        scheme = proto or str(scope.get("scheme", "http"))
        return normalize_origin(f"{scheme}://{host or headers.get('host', '')}")
