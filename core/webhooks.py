"""Webhook signatures (Standard Webhooks). Webhook addresses go through the outbound address guard
(`core.addresses`): checked by the API when a job is created and by the CPU worker at delivery (DNS may have
changed)."""

from __future__ import annotations

import base64
import hashlib
import hmac


def sign(secret: str, msg_id: str, timestamp: int, body: bytes) -> str:
    """`v1,<base64 HMAC-SHA256 of "id.timestamp.body">`; a `whsec_` secret is base64 of the key bytes."""
    key = base64.b64decode(secret.removeprefix("whsec_")) if secret.startswith("whsec_") else secret.encode()
    signed = f"{msg_id}.{timestamp}.".encode() + body
    return "v1," + base64.b64encode(hmac.new(key, signed, hashlib.sha256).digest()).decode()


def verify(secret: str, headers: dict[str, str], body: bytes) -> bool:
    expected = sign(secret, headers["webhook-id"], int(headers["webhook-timestamp"]), body)
    return any(hmac.compare_digest(expected, s) for s in headers["webhook-signature"].split())
