"""Webhook delivery: signed as Standard Webhooks do, the same `webhook-id` on every attempt, exponential backoff
for at least a day, and the address checked again at delivery time."""

from __future__ import annotations

import logging
import time
from datetime import timedelta

import httpx

from core.db import session_scope
from core.runtime import Runtime
from core.settings import Settings
from core.webhooks import UnresolvedWebhookHost, UnsafeWebhookUrl, check_webhook_url, pinned, sign
from models import User, WebhookDelivery, utcnow
from models.webhook import ABANDONED, DELIVERED, PENDING

log = logging.getLogger(__name__)


def backoff_seconds(settings: Settings, attempt: int) -> float:
    """Delay before attempt `attempt + 1`: base * 2^(attempt-1), capped."""
    return float(min(settings.webhook_backoff_base_seconds * 2 ** (attempt - 1), settings.webhook_backoff_max_seconds))


def post(
    url: str, headers: dict[str, str], body: bytes, timeout: float, address: str | None = None
) -> tuple[int | None, str | None]:
    """POST `body`; given the `address` the URL's host was checked to resolve to, connect to it (see `pinned`)."""
    extensions = {}
    if address is not None:
        url, host, server_name = pinned(url, address)
        headers = {**headers, "host": host}
        extensions["sni_hostname"] = server_name
    try:
        with httpx.Client(timeout=timeout, follow_redirects=False) as client:
            response = client.post(url, content=body, headers=headers, extensions=extensions)
    except httpx.HTTPError as exc:
        return None, f"{type(exc).__name__}: {exc}"[:500]
    return response.status_code, None if response.is_success else f"HTTP {response.status_code}"


def deliver(runtime: Runtime, delivery_id: str) -> float | None:
    """One attempt. Returns the seconds to wait before the next one, or None when done (delivered or given up)."""
    settings = runtime.settings
    with session_scope(runtime.sessions) as session:
        delivery = session.get(WebhookDelivery, delivery_id, with_for_update=True)
        if delivery is None or delivery.status != PENDING:
            return None
        user = session.get(User, delivery.user_id)
        if user is None:
            delivery.status = ABANDONED
            return None
        status: int | None
        error: str | None
        try:
            addresses = check_webhook_url(delivery.url, allow_private=settings.allow_private_webhooks)
        except UnresolvedWebhookHost as exc:  # perhaps the resolver is down for a while: retried like a 5xx
            status, error = None, str(exc)
        except UnsafeWebhookUrl as exc:  # resolves to a non-public address: never
            delivery.status, delivery.last_error = ABANDONED, f"refused: {exc}"
            return None
        else:
            body = delivery.payload.encode()
            timestamp = int(time.time())
            headers = {
                "content-type": "application/json",
                "user-agent": "svdiff-webhooks/1",
                "webhook-id": delivery.id,
                "webhook-timestamp": str(timestamp),
                "webhook-signature": sign(user.webhook_secret, delivery.id, timestamp, body),
            }
            address = addresses[0] if addresses else None
            status, error = post(delivery.url, headers, body, settings.webhook_timeout_seconds, address)
        delivery.attempts += 1
        delivery.last_status_code, delivery.last_error = status, error
        if error is None:
            delivery.status, delivery.delivered_at = DELIVERED, utcnow()
            return None
        if delivery.attempts >= settings.webhook_max_attempts:
            delivery.status = ABANDONED
            log.warning("webhook %s abandoned after %d attempts: %s", delivery.id, delivery.attempts, error)
            return None
        wait = backoff_seconds(settings, delivery.attempts)
        delivery.next_attempt_at = utcnow() + timedelta(seconds=wait)
        return wait
