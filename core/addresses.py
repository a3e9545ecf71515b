"""The outbound address guard: what the service may request on a user's behalf (webhook deliveries, photos by URL).

http(s) only, no credentials, and only globally routable unicast addresses. The host is resolved once, every
address it resolves to is checked, and the request connects to a checked address (`pinned_request`), so a second
DNS answer cannot send it elsewhere (DNS rebinding). Redirects are the caller's to follow, each hop checked again.
"""

from __future__ import annotations

import ipaddress
import socket
from typing import Any
from urllib.parse import urlsplit, urlunsplit


class UnsafeUrl(ValueError):
    pass


class UnresolvedHost(UnsafeUrl):
    """The host did not resolve: perhaps a passing DNS failure (a webhook delivery retries it)."""


NAT64 = ipaddress.ip_network("64:ff9b::/96")
IPV4_COMPATIBLE = ipaddress.ip_network("::/96")  # deprecated ::a.b.c.d, which some stacks still route to IPv4
# Never globally routable, though Python's tables (3.11) call them global: local-use NAT64 (RFC 8215) and the
# deprecated site-local range (RFC 3879).
NOT_GLOBAL = (ipaddress.ip_network("64:ff9b:1::/48"), ipaddress.ip_network("fec0::/10"))


def is_public(address: str) -> bool:
    """Globally routable unicast, and so is any IPv4 address it wraps (mapped, compatible, 6to4, Teredo, NAT64):
    not loopback, private, link-local, site-local, shared (100.64.0.0/10, cloud metadata), reserved or multicast."""
    ip = ipaddress.ip_address(address.split("%", 1)[0])
    addresses: list[ipaddress.IPv4Address | ipaddress.IPv6Address] = [ip]
    if isinstance(ip, ipaddress.IPv6Address):
        addresses += [a for a in (ip.ipv4_mapped, ip.sixtofour, *(ip.teredo or ())) if a is not None]
        if ip in NAT64 or ip in IPV4_COMPATIBLE:
            addresses.append(ipaddress.IPv4Address(int(ip) & 0xFFFFFFFF))
        if any(ip in network for network in NOT_GLOBAL):
            return False
    return all(a.is_global and not a.is_multicast for a in addresses)


def resolve(host: str, port: int) -> list[str]:
    """Every address `host` resolves to (an IP literal resolves to itself)."""
    try:
        infos = socket.getaddrinfo(host, port, type=socket.SOCK_STREAM)
    except (OSError, UnicodeError, ValueError) as exc:  # socket.gaierror is an OSError
        raise UnresolvedHost(f"host {host!r} does not resolve") from exc
    return [str(info[4][0]) for info in infos]


def check_url(url: str, *, allow_private: bool) -> list[str]:
    """Raise UnsafeUrl unless `url` is http(s) and every address its host resolves to is public; returns those
    addresses (none when private ones are allowed: nothing is resolved), for `pinned_request` to connect to."""
    try:
        parts = urlsplit(url)
        port = parts.port or (443 if parts.scheme == "https" else 80)
    except ValueError as exc:
        raise UnsafeUrl("is not a valid URL") from exc
    if parts.scheme not in ("http", "https") or not parts.hostname:
        raise UnsafeUrl("must be an http or https URL with a host")
    if parts.username or parts.password:
        raise UnsafeUrl("must not carry credentials")
    if allow_private:
        return []
    addresses = resolve(parts.hostname, port)
    if not addresses or not all(is_public(address) for address in addresses):
        raise UnsafeUrl("resolves to a loopback, private, link-local or otherwise non-public address")
    return addresses


def pinned(url: str, address: str) -> tuple[str, str, str]:
    """(`url` with its host replaced by `address`, its Host header, its TLS server name): a request made so
    connects to the address that was checked, not to whatever a second DNS lookup answers (DNS rebinding),
    while the server still sees its name and its certificate is still checked against that name."""
    parts = urlsplit(url)
    name = (parts.hostname or "").encode("idna").decode("ascii")
    ip = address.split("%", 1)[0]
    host = f"[{ip}]" if ":" in ip else ip
    port = f":{parts.port}" if parts.port else ""
    return urlunsplit(parts._replace(netloc=host + port)), name + port, name


def pinned_request(url: str, addresses: list[str]) -> tuple[str, dict[str, str], dict[str, Any]]:
    """(the URL to request, extra headers, httpx request extensions) that connect to the first checked address
    of `addresses` under the URL's name; `url` itself, unchanged, when nothing was resolved (private allowed)."""
    if not addresses:
        return url, {}, {}
    target, host, server_name = pinned(url, addresses[0])
    return target, {"host": host}, {"sni_hostname": server_name}
