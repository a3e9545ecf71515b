"""Webhook signatures (Standard Webhooks), and the names of the outbound address guard (`core.addresses`) as
webhooks use them: checked by the API when a job is created and by the CPU worker at delivery (DNS may have
changed)."""

from __future__ import annotations

import base64
import hashlib
import hmac

from core.addresses import UnresolvedHost, UnsafeUrl, check_url, pinned

__all__ = ["UnresolvedWebhookHost", "UnsafeWebhookUrl", "check_webhook_url", "pinned", "sign", "verify"]

UnsafeWebhookUrl = UnsafeUrl
UnresolvedWebhookHost = UnresolvedHost  # refused when a job is created, retried at delivery
check_webhook_url = check_url


def sign(secret: str, msg_id: str, timestamp: int, body: bytes) -> str:
    """`v1,<base64 HMAC-SHA256 of "id.timestamp.body">`; a `whsec_` secret is base64 of the key bytes."""
    key = base64.b64decode(secret.removeprefix("whsec_")) if secret.startswith("whsec_") else secret.encode()
    signed = f"{msg_id}.{timestamp}.".encode() + body
    return "v1," + base64.b64encode(hmac.new(key, signed, hashlib.sha256).digest()).decode()


def verify(secret: str, headers: dict[str, str], body: bytes) -> bool:
    expected = sign(secret, headers["webhook-id"], int(headers["webhook-timestamp"]), body)
    return any(hmac.compare_digest(expected, s) for s in headers["webhook-signature"].split())
