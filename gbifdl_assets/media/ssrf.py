"""SSRF guard: which addresses a media URL may make us connect to.

Media URLs come from GBIF records, i.e. from thousands of publishers we do not control. Without a
guard, a record whose image URL is ``http://169.254.169.254/latest/meta-data/…`` or
``http://10.0.0.5:9200/`` makes the downloader (running inside a cluster, next to S3 credentials
and internal services) fetch from the internal network. So:

* only ``http`` and ``https`` URLs with a host are accepted (reason ``bad_url``);
* every address a host resolves to is classified, and only *public* addresses are used:
  loopback, private (RFC 1918, unique-local ``fc00::/7``, carrier-grade NAT ``100.64/10``,
  documentation ranges…), link-local (``169.254/16`` incl. the cloud metadata service,
  ``fe80::/10``), multicast, reserved and unspecified addresses are refused (reason
  ``blocked_address``), also when wrapped in IPv6 (IPv4-mapped ``::ffff:a.b.c.d``,
  IPv4-compatible ``::a.b.c.d``, 6to4 ``2002::/16``);
* ``allow_loopback`` admits loopback (tests serve media on 127.0.0.1); ``loopback_origins`` admits
  it for the listed ``host:port`` only (the offline sandbox's own address),
  ``allow_private`` admits private ranges (an on-premises media mirror). Link-local, multicast,
  reserved and unspecified addresses are never admitted: nothing legitimate serves images there,
  and the metadata service lives there.

The check must run on the address actually connected to, not on a separate look-up (a DNS answer can
change between the two: "DNS rebinding"), so :mod:`.fetch` resolves a host name itself, keeps the
addresses :func:`admitted_addresses` lets through and connects to one of those; IP-literal hosts are
checked with :func:`check_url` before every request, redirects included.
"""

from __future__ import annotations

import ipaddress
import socket
from dataclasses import dataclass, replace
from urllib.parse import urlsplit

from gbifdl_assets.errors import GbifdlError

__all__ = [
    "AddressPolicy",
    "BlockedAddress",
    "BadUrl",
    "admitted_addresses",
    "classify",
    "check_ip",
    "check_url",
    "literal_ip",
    "resolve_checked",
]

IPAddress = ipaddress.IPv4Address | ipaddress.IPv6Address

_CGNAT = ipaddress.ip_network("100.64.0.0/10")  # neither private nor global in Python's tables
_ALLOWED_SCHEMES = ("http", "https")


class BadUrl(GbifdlError, ValueError):
    """A URL that cannot be fetched at all (scheme, missing host, unparsable). Reason ``bad_url``."""

    reason = "bad_url"


class BlockedAddress(GbifdlError, OSError):
    """The host resolves only to addresses the policy refuses. Reason ``blocked_address``.

    An OSError, so connection code that handles connect failures handles it too; :mod:`.fetch`
    reports it as ``blocked_address`` and never retries it.
    """

    reason = "blocked_address"


@dataclass(frozen=True)
class AddressPolicy:
    """What the downloader may connect to. The default is public addresses only."""

    allow_loopback: bool = False
    allow_private: bool = False
    #: ``host[:port]`` keys (as :func:`check_url` returns them) admitted on loopback: the sandbox's own
    loopback_origins: frozenset[str] = frozenset()

    def for_origin(self, host_key: str) -> AddressPolicy:
        """The policy for one origin: loopback is admitted when the origin is listed."""
        if self.allow_loopback or host_key not in self.loopback_origins:
            return self
        return replace(self, allow_loopback=True)


def _embedded_v4(ip: ipaddress.IPv6Address) -> ipaddress.IPv4Address | None:
    """The IPv4 address an IPv6 address carries (mapped, compatible or 6to4), if any."""
    if ip.ipv4_mapped is not None:
        return ip.ipv4_mapped
    if ip.sixtofour is not None:
        return ip.sixtofour
    packed = ip.packed
    if packed[:12] == bytes(12) and packed[12:] not in (bytes(4), b"\x00\x00\x00\x01"):
        return ipaddress.IPv4Address(packed[12:])  # deprecated IPv4-compatible ::a.b.c.d
    return None


def classify(ip: IPAddress) -> str:
    """``public``, ``loopback``, ``private``, ``link_local``, ``multicast``, ``reserved`` or ``unspecified``."""
    if isinstance(ip, ipaddress.IPv6Address):
        inner = _embedded_v4(ip)
        if inner is not None:
            return classify(inner)
        if ip.scope_id:  # fe80::1%eth0
            return "link_local"
    if ip.is_unspecified:
        return "unspecified"
    if ip.is_loopback:
        return "loopback"
    if ip.is_link_local:
        return "link_local"
    if ip.is_multicast:
        return "multicast"
    if ip.is_reserved:
        return "reserved"
    if ip.is_private or (isinstance(ip, ipaddress.IPv4Address) and ip in _CGNAT):
        return "private"
    if not ip.is_global:  # anything else special-purpose (e.g. 192.0.0.0/24)
        return "reserved"
    return "public"


def check_ip(ip: IPAddress | str, policy: AddressPolicy) -> str | None:
    """None if ``policy`` admits ``ip``, else a short explanation (for the ledger's error column)."""
    if isinstance(ip, str):
        ip = ipaddress.ip_address(ip)
    kind = classify(ip)
    if kind == "public":
        return None
    if kind == "loopback" and policy.allow_loopback:
        return None
    if kind == "private" and policy.allow_private:
        return None
    hint = {
        "loopback": " (allow_loopback / --allow-loopback admits it)",
        "private": " (allow_private admits it)",
    }.get(kind, "")
    return f"{ip} is a {kind.replace('_', '-')} address{hint}"


def literal_ip(host: str) -> IPAddress | None:
    """The IP address when ``host`` is an IP literal (``[::1]`` included), else None."""
    try:
        return ipaddress.ip_address(host.strip("[]"))
    except ValueError:
        return None


def check_url(url: str, policy: AddressPolicy) -> str:
    """Validate scheme and host of ``url``; return the lower-cased ``host[:port]`` (the per-host key).

    Raises :class:`BadUrl` for non-http(s) or host-less URLs and :class:`BlockedAddress` when the
    host is an IP literal the policy refuses. Host *names* are checked when they are resolved
    (:func:`admitted_addresses`), so the check covers the address actually used.
    """
    try:
        parts = urlsplit(url)
        port = parts.port
    except ValueError as exc:
        raise BadUrl(f"cannot parse URL {url!r}: {exc}") from None
    scheme = parts.scheme.lower()
    if scheme not in _ALLOWED_SCHEMES:
        raise BadUrl(f"URL scheme {parts.scheme or '(none)'!r} is not fetched; only http and https are")
    host = (parts.hostname or "").lower()
    if not host:
        raise BadUrl(f"URL {url!r} has no host")
    key = f"{host}:{port}" if port else host
    ip = literal_ip(host)
    if ip is not None:
        problem = check_ip(ip, policy.for_origin(key))
        if problem:
            raise BlockedAddress(f"refused {url!r}: {problem}")
    return key


def resolve_checked(host: str, port: int, policy: AddressPolicy) -> list[str]:
    """Blocking resolution (getaddrinfo) keeping only admitted addresses; BlockedAddress if none."""
    infos = socket.getaddrinfo(host, port, type=socket.SOCK_STREAM)
    return admitted_addresses([info[4][0] for info in infos], host, policy)


def admitted_addresses(addresses: list[str], host: str, policy: AddressPolicy) -> list[str]:
    """The addresses of ``host`` the policy admits, in their order; BlockedAddress if none is left."""
    admitted, refused = [], []
    for address in addresses:
        problem = check_ip(address, policy)
        (refused if problem else admitted).append(problem or address)
    if not admitted:
        detail = "; ".join(dict.fromkeys(refused)) or "no address"
        raise BlockedAddress(f"refused host {host!r}: {detail}")
    return admitted
