"""Checking the webhooks the service sends (Standard Webhooks: `webhook-id`, `webhook-timestamp`,
`webhook-signature: v1,<base64 HMAC-SHA256 of "id.timestamp.body">`), signed with the user's `webhook_secret`."""

from __future__ import annotations

import base64
import binascii
import hashlib
import hmac
import json
import time
from collections.abc import Mapping
from typing import Any

from svdiff_client.errors import WebhookVerificationError

DEFAULT_TOLERANCE_S = 300


def _key(secret: str | bytes) -> bytes:
    """A `whsec_` secret is the base64 of the key bytes (as the service signs); any other string is the key."""
    if isinstance(secret, bytes):
        return secret
    if secret.startswith("whsec_"):
        try:
            return base64.b64decode(secret.removeprefix("whsec_"), validate=True)
        except (binascii.Error, ValueError) as exc:
            raise WebhookVerificationError("the webhook secret is not valid base64 after `whsec_`") from exc
    return secret.encode()


def _header(headers: Mapping[str, str], name: str) -> str:
    for key, value in headers.items():
        if key.lower() == name:
            return value
    raise WebhookVerificationError(f"missing header {name}")


def sign(payload: bytes, msg_id: str, timestamp: int, secret: str | bytes) -> str:
    """The `webhook-signature` value the service would send (for tests of a receiver)."""
    signed = f"{msg_id}.{timestamp}.".encode() + payload
    return "v1," + base64.b64encode(hmac.new(_key(secret), signed, hashlib.sha256).digest()).decode()


def verify_webhook(
    payload: bytes | str,
    headers: Mapping[str, str],
    secret: str | bytes,
    *,
    tolerance: float = DEFAULT_TOLERANCE_S,
    now: float | None = None,
) -> dict[str, Any]:
    """The webhook's JSON (`{type, data}`) once its signature and timestamp check out; `payload` is the raw body
    exactly as received. Header names are matched in any case; several signatures (space separated, during a
    secret rotation) pass if one matches. Raises WebhookVerificationError otherwise."""
    body = payload.encode() if isinstance(payload, str) else bytes(payload)
    msg_id = _header(headers, "webhook-id")
    raw_timestamp = _header(headers, "webhook-timestamp")
    signatures = _header(headers, "webhook-signature")
    try:
        timestamp = int(raw_timestamp)
    except ValueError as exc:
        raise WebhookVerificationError("webhook-timestamp is not a number of seconds") from exc
    current = time.time() if now is None else now
    if timestamp < current - tolerance:
        raise WebhookVerificationError("webhook-timestamp is too old")
    if timestamp > current + tolerance:
        raise WebhookVerificationError("webhook-timestamp is in the future")
    expected = sign(body, msg_id, timestamp, secret).encode()
    matched = False
    for candidate in signatures.split():
        version, _, _ = candidate.partition(",")
        if version == "v1" and hmac.compare_digest(expected, candidate.encode()):
            matched = True  # no early exit: every candidate is compared
    if not matched:
        raise WebhookVerificationError("no signature matches")
    try:
        event = json.loads(body)
    except ValueError as exc:
        raise WebhookVerificationError("the payload is not JSON") from exc
    if not isinstance(event, dict):
        raise WebhookVerificationError("the payload is not a JSON object")
    return event
