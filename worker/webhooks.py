"""Webhook delivery: signed as Standard Webhooks do, the same `webhook-id` on every attempt, exponential backoff
for at least a day, and the address checked again at delivery time."""

from __future__ import annotations

import logging
import threading
import time
from dataclasses import dataclass
from datetime import timedelta
from typing import Any

import httpx

from core.addresses import UnresolvedHost, UnsafeUrl, check_url, pinned_request
from core.db import session_scope
from core.runtime import Runtime
from core.settings import Settings
from core.webhooks import sign
from models import User, WebhookDelivery, utcnow
from models.webhook import ABANDONED, DELIVERED, PENDING

log = logging.getLogger(__name__)
LEASE_MARGIN_S = 30.0  # past the deadline, before another worker may try the same delivery


def backoff_seconds(settings: Settings, attempt: int) -> float:
    """Delay before attempt `attempt + 1`: base * 2^(attempt-1), capped."""
    return float(min(settings.webhook_backoff_base_seconds * 2 ** (attempt - 1), settings.webhook_backoff_max_seconds))


ANSWER_BYTES = 4096  # of a receiver's answer read at most: its status is what counts


def post(
    url: str, headers: dict[str, str], body: bytes, deadline: float, address: str | None = None
) -> tuple[int | None, str | None]:
    """POST `body` within `deadline` seconds of wall-clock time, reading at most ANSWER_BYTES of the answer;
    given the `address` the URL's host was checked to resolve to, connect to it (see `pinned`). A receiver that
    trickles its answer or never ends it costs this delivery its deadline, nothing more."""
    url, pinned_headers, extensions = pinned_request(url, [address] if address is not None else [])
    headers = {**headers, **pinned_headers}
    end = time.monotonic() + deadline
    client = httpx.Client(timeout=deadline, follow_redirects=False)
    outcome: dict[str, Any] = {}

    def attempt() -> None:
        try:
            with client.stream("POST", url, content=body, headers=headers, extensions=extensions) as response:
                outcome["status"] = response.status_code
                read = 0
                for chunk in response.iter_raw(1024):
                    read += len(chunk)
                    if read >= ANSWER_BYTES or time.monotonic() > end:
                        break
        except httpx.HTTPError as exc:
            outcome["error"] = f"{type(exc).__name__}: {exc}"[:500]
        except Exception as exc:  # the client closed under it at the deadline
            outcome["error"] = f"{type(exc).__name__}: {exc}"[:500]

    worker = threading.Thread(target=attempt, name="webhook-post", daemon=True)
    worker.start()
    worker.join(max(0.0, end - time.monotonic()))
    if worker.is_alive():  # headers still trickling in: give up, and close the connection without waiting
        threading.Thread(target=client.close, daemon=True).start()
        return None, f"no complete answer within {deadline:g} s"
    client.close()
    status = outcome.get("status")
    if status is None:
        return None, outcome.get("error", "no answer")
    return status, None if 200 <= status < 300 else f"HTTP {status}"


@dataclass(frozen=True)
class Attempt:
    """What one delivery attempt needs, read in a short transaction so no lock is held across the network."""

    url: str
    payload: bytes
    secret: str


def _claim(runtime: Runtime, delivery_id: str) -> Attempt | None:
    """Lease the delivery for this attempt (its next attempt moved past the deadline), or None when there is
    nothing to send: delivered, abandoned, its user gone, or another worker's attempt under way."""
    settings = runtime.settings
    with session_scope(runtime.sessions) as session:
        delivery = session.get(WebhookDelivery, delivery_id, with_for_update=True)
        if delivery is None or delivery.status != PENDING:
            return None
        if delivery.leased_until is not None and delivery.leased_until > utcnow():
            return None
        user = session.get(User, delivery.user_id)
        if user is None:
            delivery.status = ABANDONED
            return None
        delivery.leased_until = utcnow() + timedelta(seconds=settings.webhook_timeout_seconds + LEASE_MARGIN_S)
        return Attempt(delivery.url, delivery.payload.encode(), user.webhook_secret)


def _send(runtime: Runtime, delivery_id: str, attempt: Attempt) -> tuple[int | None, str | None, bool]:
    """(status, error, give_up), with no database session open."""
    settings = runtime.settings
    try:
        addresses = check_url(attempt.url, allow_private=settings.allow_private_webhooks)
    except UnresolvedHost as exc:  # perhaps the resolver is down for a while: retried like a 5xx
        return None, str(exc), False
    except UnsafeUrl as exc:  # resolves to a non-public address: never
        return None, f"refused: {exc}", True
    timestamp = int(time.time())
    headers = {
        "content-type": "application/json",
        "user-agent": "svdiff-webhooks/1",
        "webhook-id": delivery_id,
        "webhook-timestamp": str(timestamp),
        "webhook-signature": sign(attempt.secret, delivery_id, timestamp, attempt.payload),
    }
    address = addresses[0] if addresses else None
    status, error = post(attempt.url, headers, attempt.payload, settings.webhook_timeout_seconds, address)
    return status, error, False


def deliver(runtime: Runtime, delivery_id: str) -> float | None:
    """One attempt. Returns the seconds to wait before the next one, or None when done (delivered or given up)."""
    settings = runtime.settings
    attempt = _claim(runtime, delivery_id)
    if attempt is None:
        return None
    status, error, give_up = _send(runtime, delivery_id, attempt)
    with session_scope(runtime.sessions) as session:
        delivery = session.get(WebhookDelivery, delivery_id, with_for_update=True)
        if delivery is None or delivery.status != PENDING:
            return None
        delivery.leased_until = None
        if give_up:
            delivery.status, delivery.last_error = ABANDONED, error
            return None
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
