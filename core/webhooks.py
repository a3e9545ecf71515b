"""Webhook URLs and signatures (Standard Webhooks), shared by the API (checks at creation) and the CPU worker
(checks again at delivery: DNS may have changed)."""

from __future__ import annotations

import base64
import hashlib
import hmac
import ipaddress
import socket
from urllib.parse import urlsplit, urlunsplit


class UnsafeWebhookUrl(ValueError):
    pass


class UnresolvedWebhookHost(UnsafeWebhookUrl):
    """The host did not resolve: refused when a job is created, but at delivery time perhaps a passing DNS
    failure, so a failed attempt to retry rather than a reason to give up."""


NAT64 = ipaddress.ip_network("64:ff9b::/96")
IPV4_COMPATIBLE = ipaddress.ip_network("::/96")  # deprecated ::a.b.c.d, which some stacks still route to IPv4
# Never globally routable, though Python's tables (3.11) call them global: local-use NAT64 (RFC 8215) and the
# deprecated site-local range (RFC 3879).
NOT_GLOBAL = (ipaddress.ip_network("64:ff9b:1::/48"), ipaddress.ip_network("fec0::/10"))


def _is_public(address: str) -> bool:
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


def check_webhook_url(url: str, *, allow_private: bool) -> list[str]:
    """Raise UnsafeWebhookUrl unless `url` is http(s) and every address its host resolves to is public; returns
    those addresses (none when private ones are allowed: nothing is resolved), for `pinned` to connect to."""
    try:
        parts = urlsplit(url)
        port = parts.port or (443 if parts.scheme == "https" else 80)
    except ValueError as exc:
        raise UnsafeWebhookUrl("is not a valid URL") from exc
    if parts.scheme not in ("http", "https") or not parts.hostname:
        raise UnsafeWebhookUrl("must be an http or https URL with a host")
    if parts.username or parts.password:
        raise UnsafeWebhookUrl("must not carry credentials")
    if allow_private:
        return []
    try:
        infos = socket.getaddrinfo(parts.hostname, port, type=socket.SOCK_STREAM)
    except (socket.gaierror, UnicodeError, ValueError) as exc:
        raise UnresolvedWebhookHost(f"host {parts.hostname!r} does not resolve") from exc
    addresses = [str(info[4][0]) for info in infos]
    if not all(_is_public(address) for address in addresses):
        raise UnsafeWebhookUrl("resolves to a loopback, private, link-local or otherwise non-public address")
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


def sign(secret: str, msg_id: str, timestamp: int, body: bytes) -> str:
    """`v1,<base64 HMAC-SHA256 of "id.timestamp.body">`; a `whsec_` secret is base64 of the key bytes."""
    key = base64.b64decode(secret.removeprefix("whsec_")) if secret.startswith("whsec_") else secret.encode()
    signed = f"{msg_id}.{timestamp}.".encode() + body
    return "v1," + base64.b64encode(hmac.new(key, signed, hashlib.sha256).digest()).decode()


def verify(secret: str, headers: dict[str, str], body: bytes) -> bool:
    expected = sign(secret, headers["webhook-id"], int(headers["webhook-timestamp"]), body)
    return any(hmac.compare_digest(expected, s) for s in headers["webhook-signature"].split())
