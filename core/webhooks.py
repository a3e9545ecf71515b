"""Webhook URLs and signatures (Standard Webhooks), shared by the API (checks at creation) and the CPU worker
(checks again at delivery: DNS may have changed)."""

from __future__ import annotations

import base64
import hashlib
import hmac
import ipaddress
import socket
from urllib.parse import urlsplit


class UnsafeWebhookUrl(ValueError):
    pass


class UnresolvedWebhookHost(UnsafeWebhookUrl):
    """The host did not resolve: refused when a job is created, but at delivery time perhaps a passing DNS
    failure, so a failed attempt to retry rather than a reason to give up."""


def _is_public(address: str) -> bool:
    ip = ipaddress.ip_address(address.split("%", 1)[0])
    if isinstance(ip, ipaddress.IPv6Address) and ip.ipv4_mapped is not None:
        ip = ip.ipv4_mapped
    return not (
        ip.is_loopback or ip.is_private or ip.is_link_local or ip.is_multicast or ip.is_reserved
        or ip.is_unspecified
    )  # fmt: skip


def check_webhook_url(url: str, *, allow_private: bool) -> None:
    """Raise UnsafeWebhookUrl unless `url` is http(s) and every address its host resolves to is public."""
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
        return
    try:
        infos = socket.getaddrinfo(parts.hostname, port, type=socket.SOCK_STREAM)
    except (socket.gaierror, UnicodeError, ValueError) as exc:
        raise UnresolvedWebhookHost(f"host {parts.hostname!r} does not resolve") from exc
    for info in infos:
        if not _is_public(str(info[4][0])):
            raise UnsafeWebhookUrl("resolves to a loopback, private or link-local address")


def sign(secret: str, msg_id: str, timestamp: int, body: bytes) -> str:
    """`v1,<base64 HMAC-SHA256 of "id.timestamp.body">`; a `whsec_` secret is base64 of the key bytes."""
    key = base64.b64decode(secret.removeprefix("whsec_")) if secret.startswith("whsec_") else secret.encode()
    signed = f"{msg_id}.{timestamp}.".encode() + body
    return "v1," + base64.b64encode(hmac.new(key, signed, hashlib.sha256).digest()).decode()


def verify(secret: str, headers: dict[str, str], body: bytes) -> bool:
    expected = sign(secret, headers["webhook-id"], int(headers["webhook-timestamp"]), body)
    return any(hmac.compare_digest(expected, s) for s in headers["webhook-signature"].split())
